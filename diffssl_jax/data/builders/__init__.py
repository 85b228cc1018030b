"""TFDS builders for datasets that need a manual download; importing this package registers them.

`tfds.builder(name)` and `tfds.data_source(name)` find a builder by name once its module is
imported, so anything that opens these datasets by name imports `diffssl_jax.data.builders`
first. Each builder writes array_record files and needs no TensorFlow:

    python scripts/prepare_dataset.py glas --manual_dir=<dir> --data_dir=<data_dir>
    python scripts/prepare_dataset.py monuseg --manual_dir=<dir> --data_dir=<data_dir>

`fixtures` writes tiny files in each download's real layout and formats, for tests and for
smoke-testing a set-up before the real download is in place.
"""

from diffssl_jax.data.builders.glas import Glas
from diffssl_jax.data.builders.monuseg import Monuseg

BUILDERS = {"glas": Glas, "monuseg": Monuseg}

__all__ = ["BUILDERS", "Glas", "Monuseg"]
