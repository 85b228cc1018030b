"""MDM pre-training on MoNuSeg 2018 (docs/methods.md A.4-A.5), from the TFDS builder `monuseg`.

    python -m launch.train --config=configs/mdm/monuseg.py --workdir=runs/mdm_monuseg \
        --config.data.data_dir=$HOME/tensorflow_datasets

Prepare the data once: `python scripts/prepare_dataset.py monuseg --manual_dir=<dir>
--data_dir=<data_dir>` (see `diffssl_jax/data/builders/monuseg.py`). Pre-training uses the
train AND test images without labels (`split="train+test"`, 44 images of 1000x1000).

Paper settings as `configs/mdm/glas.py`: the A.4 U-Net, SSIM, patch 8, T = 1000, AdamW 1e-4,
EMA 0.9999, batch 128, flips, features from decoder blocks 8-12 at t = 50.
DEPARTURE: MDM takes random 256x256 crops; the pipeline has no random crop, so the
1000x1000 tiles are RESIZED to 256x256 (about 4x coarser nuclei). The step count is
UNVERIFIED (A.5): 5k is what the leftover first-commit MoNuSeg configs point to.

Variants (`:tiny`): a few steps of a small U-Net on 32x32 resized images (smoke tests).
"""

from diffssl_jax.configs.base import parse_variants, shrink_for_tests
from diffssl_jax.configs.mdm import get_mdm_base_config, shrink_unet_for_tests


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("tiny",))
    config = get_mdm_base_config()
    config.data.name = "monuseg"
    config.data.label_key = ""  # no class labels
    config.data.split = "train+test"
    config.data.image_size = 256
    config.data.image_shape = (256, 256, 3)
    config.pipeline.random_flip = True
    config.train.num_steps = 5_000
    config.eval.split = "test"
    if "tiny" in variants:
        shrink_for_tests(config)
        shrink_unet_for_tests(config)
        config.data.image_size = 32
        config.data.image_shape = (32, 32, 3)
        config.train.sample_every_steps = 0
    return config
