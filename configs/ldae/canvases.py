"""l-DAE on the 32x32 canvases of 2-4 bundled digits (`data.canvases`): the segmentation
task that needs spatial features (docs/methods.md F).

    .venv/bin/python -m launch.train --config=configs/ldae/canvases.py --workdir=runs/ldae_canvases

Everything else is `configs/ldae/digits.py` (the same network, optimiser and step count).
The variant is the digits file's (`tiny`); the PCA basis (4x4 patches, d = 4) is fitted from
`corruption.pca_num_patches` patches of the training canvases, most of them background. The
evaluation is the canvas segmentation only (no linear probe: a canvas has no single class),
with `eval.seg_num_labelled` = 10 labelled train canvases
(`--config.eval.seg_num_labelled=50` for the other budget), scored on the `eval.split`
canvases ('test'; 'validation' for choices made on validation).
"""

from diffssl_jax.configs.base import on_canvases
from diffssl_jax.configs.ldae import digits


def get_config(arg: str | None = None):
    return on_canvases(digits, arg, known=("tiny",))
