"""MDM pre-training on GlaS (docs/methods.md A.4-A.5), from the TFDS builder `glas`.

    python -m launch.train --config=configs/mdm/glas.py --workdir=runs/mdm_glas \
        --config.data.data_dir=$HOME/tensorflow_datasets

Prepare the data once: `python scripts/prepare_dataset.py glas --manual_dir=<dir>
--data_dir=<data_dir>` (see `diffssl_jax/data/builders/glas.py`). Pre-training uses the
train AND test images without labels (`split="train+test"`, 165 images, as MDM does).

Paper settings: the 256-px U-Net of A.4 (192 channels, mult (1, 1, 2, 2, 4, 4), attention at
32/16/8, ResBlock up/down, scale-shift norm), SSIM loss, patch 8, T = 1000, AdamW 1e-4 with
no decay, EMA 0.9999, batch 128, horizontal flips; features: decoder blocks 8-12 at t = 50.
DEPARTURE: MDM takes random 256x256 crops of the full-size images (most are 775x522); the
data pipeline has no random crop, so images are RESIZED to 256x256 (`data.image_size`),
which changes their scale and aspect. The step count is UNVERIFIED (A.5): 10k is what the
leftover first-commit GlaS configs point to.

Variants (`:tiny`): a few steps of a small U-Net on 32x32 resized images (smoke tests).
"""

from diffssl_jax.configs.base import parse_variants, shrink_for_tests
from diffssl_jax.configs.mdm import get_mdm_base_config, shrink_unet_for_tests


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("tiny",))
    config = get_mdm_base_config()
    config.data.name = "glas"
    config.data.split = "train+test"
    config.data.image_size = 256
    config.data.image_shape = (256, 256, 3)
    config.pipeline.random_flip = True
    config.train.num_steps = 10_000
    config.eval.split = "test"
    if "tiny" in variants:
        shrink_for_tests(config)
        shrink_unet_for_tests(config)
        config.data.image_size = 32
        config.data.image_shape = (32, 32, 3)
        config.train.sample_every_steps = 0
    return config
