"""Builds a manually downloaded dataset as array_record files; no TensorFlow needed.

    .venv/bin/python scripts/prepare_dataset.py glas --manual_dir=DIR --data_dir=DATA_DIR
    .venv/bin/python scripts/prepare_dataset.py monuseg --manual_dir=DIR --data_dir=DATA_DIR

`DIR` holds the extracted download (the layout each builder's MANUAL_DOWNLOAD_INSTRUCTIONS
gives, printed when files are missing); `DATA_DIR` is the tfds data_dir to write to
(default ~/tensorflow_datasets). Afterwards the data opens by name, e.g. with
`--config.data.name=glas --config.data.data_dir=DATA_DIR`. To try the plumbing without the
real download, write a fixture first (`diffssl_jax.data.builders.fixtures`).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow_datasets as tfds  # noqa: E402
from absl import app, flags  # noqa: E402

from diffssl_jax.data import builders  # noqa: E402

flags.DEFINE_string("manual_dir", None, "Directory holding the extracted manual download.")
flags.DEFINE_string("data_dir", None, "tfds data_dir to write to; None = ~/tensorflow_datasets.")
flags.DEFINE_bool("overwrite", False, "Rebuild even if the dataset is already prepared.")
flags.mark_flag_as_required("manual_dir")


def prepare(name: str, manual_dir: str, data_dir: str | None = None, overwrite: bool = False):
    """Builds dataset `name` from `manual_dir` into `data_dir` and returns its builder.

    Raises:
      ValueError: `name` is not one of `builders.BUILDERS`.
      FileNotFoundError: `manual_dir` lacks files; the message lists them and says where
        to download them.
    """
    if name not in builders.BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(builders.BUILDERS)}.")
    builder = builders.BUILDERS[name](data_dir=data_dir, file_format="array_record")
    mode = tfds.download.GenerateMode
    config = tfds.download.DownloadConfig(
        manual_dir=manual_dir,
        download_mode=mode.FORCE_REDOWNLOAD if overwrite else mode.REUSE_DATASET_IF_EXISTS,
    )
    builder.download_and_prepare(download_config=config)
    return builder


def main(argv):
    if len(argv) != 2:
        raise app.UsageError(f"give one dataset name, one of {sorted(builders.BUILDERS)}.")
    name, args = argv[1], flags.FLAGS
    builder = prepare(name, args.manual_dir, args.data_dir, args.overwrite)
    sizes = ", ".join(f"{s} {info.num_examples}" for s, info in builder.info.splits.items())
    data_dir = args.data_dir or str(tfds.core.constants.DATA_DIR)
    print(f"{name}: {sizes} examples in {builder.data_dir}")
    print(f"use it with --config.data.name={name} --config.data.data_dir={data_dir}")


if __name__ == "__main__":
    app.run(main)
