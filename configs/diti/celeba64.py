"""DiTi on CelebA 64x64 (methods.md B): the reference diti64 settings.

    .venv/bin/python -m launch.train --config=configs/diti/celeba64.py \
        --config.diti.prior_workdir=PRIOR --workdir=runs/diti_celeba64

PRIOR is an eps-prediction DDPM workdir trained on the same images (the reference uses
PDAE's pre-trained CelebA-64 DPM, which needs a PyTorch-to-Flax weight converter; B.9.4).
Encoder, partition (k = 64, non-uniform, mode base), Adam at 1e-4, batch 128, EMA 0.9999
and 297k steps (38M images, B.5) are the reference's.

Data: TFDS `celeb_a`, resized to 64. The reference first crops (top 57, left 25, 128x128)
and flips; the TFDS source here resizes the whole 178x218 image (no crop yet), and the
40 attributes are not yet read by the source, so the attribute probes run on the digits only.
"""

from configs.base import parse_variants
from configs.diti import get_diti_base_config


def get_config(arg: str | None = None):
    parse_variants(arg, known=())
    config = get_diti_base_config()
    config.data.name = "celeb_a"
    config.data.image_size = 64
    config.data.label_key = ""
    config.data.image_shape = (64, 64, 3)
    config.pipeline.random_flip = True
    config.train.num_steps = 297_000
    config.train.checkpoint_every_steps = 5000
    config.train.log_every_steps = 100
    return config
