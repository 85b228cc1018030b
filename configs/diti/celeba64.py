"""DiTi on CelebA 64x64 (docs/methods.md B): the reference diti64 settings.

    .venv/bin/python -m launch.train --config=configs/diti/celeba64.py \
        --config.diti.prior_workdir=PRIOR --workdir=runs/diti_celeba64
    .venv/bin/python -m launch.evaluate --workdir=runs/diti_celeba64 --tasks=attributes

PRIOR is an eps-prediction DDPM workdir trained on the same images (the reference uses
PDAE's pre-trained CelebA-64 DPM, which needs a PyTorch-to-Flax weight converter; B.9.4).
Encoder, partition (k = 64, non-uniform, mode base), Adam at 1e-4, batch 128, EMA 0.9999
and 297k steps (38M images, B.5) are the reference's.

Data: TFDS `celeb_a` (array_record; without TensorFlow, `data.builders.celeb_a.
prepare_from_files` builds it from the five release files), the reference crop (rows 57-184,
columns 25-152: `data.celeba.CROP`), resized to 64, flipped. Every example also carries its
40 binary attributes (`data.celeba.ATTRIBUTES`, in the release's order) as `attributes [40]`;
the attribute task probes them (test mean AP, B.6) on train -> test.

Variants: `tiny`: 16x16 images and a tiny encoder, for tests (the prior must be a 16x16x3
DDPM).
"""

from diffssl_jax.configs.base import parse_variants, shrink_for_tests
from diffssl_jax.configs.diti import get_diti_base_config, shrink_diti_for_tests
from diffssl_jax.data import celeba


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("tiny",))
    config = get_diti_base_config()
    config.data.name = "celeb_a"
    config.data.image_size = 64
    config.data.label_key = ""
    config.data.image_shape = (64, 64, 3)
    config.data.crop = celeba.CROP  # (top, left, height, width) cut before the resize
    config.data.attribute_keys = celeba.ATTRIBUTES  # -> example["attributes"] [40] in 0/1
    config.pipeline.random_flip = True  # no attribute depends on left/right
    config.train.num_steps = 297_000
    config.train.checkpoint_every_steps = 5000
    config.train.log_every_steps = 100
    if "tiny" in variants:
        shrink_for_tests(config)
        shrink_diti_for_tests(config)
        config.data.image_size = 16
        config.data.image_shape = (16, 16, 3)
        config.train.sample_every_steps = 0
    return config
