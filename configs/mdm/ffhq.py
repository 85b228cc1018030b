"""MDM on 256x256 faces (docs/methods.md A.4-A.5): CelebA-HQ 256 from TFDS, FFHQ's stand-in.

    python -m launch.train --config=configs/mdm/ffhq.py --workdir=runs/mdm_faces \
        --config.data.data_dir=$HOME/tensorflow_datasets

MDM's natural-image model is trained on FFHQ resized to 256 (100k steps, EMA weights of the
released checkpoint). FFHQ is NOT in the TFDS catalog (tensorflow-datasets 4.9.10 lists
`celeb_a`, `celeb_a_hq`, no `ffhq`), so this config trains on `celeb_a_hq/256`: 30,000
aligned 256x256 faces (split `train`), the image source of the CelebA-19 benchmark MDM also
reports (A.7). It needs the manual download of the Progressive-GAN tar files and is prepared
once with `tfds build celeb_a_hq/256 --manual_dir=... --file_format=array_record` on a
machine with TensorFlow. A user with FFHQ can write a builder and set `data.name`.

Paper settings: the A.4 U-Net, SSIM, patch 8, T = 1000, AdamW 1e-4, EMA 0.9999, batch 128,
flips, 100k steps; features: decoder blocks 5-12 (3264-d) at t = 50.

Variants (`:tiny`): a few steps of a small U-Net on 32x32 resized images (smoke tests).
"""

from diffssl_jax.configs.base import parse_variants, shrink_for_tests
from diffssl_jax.configs.mdm import NATURAL_BLOCKS, get_mdm_base_config, shrink_unet_for_tests


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("tiny",))
    config = get_mdm_base_config()
    config.data.name = "celeb_a_hq/256"
    config.data.label_key = ""  # no class labels
    config.data.split = "train"
    config.data.image_shape = (256, 256, 3)
    config.pipeline.random_flip = True
    config.train.num_steps = 100_000
    config.eval.split = "train"  # celeb_a_hq has one split; segmentation labels come elsewhere
    config.eval.feature_blocks = NATURAL_BLOCKS
    if "tiny" in variants:
        shrink_for_tests(config)
        shrink_unet_for_tests(config)
        config.data.image_size = 32
        config.data.image_shape = (32, 32, 3)
        config.train.sample_every_steps = 0
    return config
