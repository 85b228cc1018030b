"""Digit super-resolution (2x average pooling, 16x16 -> 8x8) under the digits DDPM prior.

    .venv/bin/python -m launch.sample --workdir=runs/ddpm_digits \
        --problem=configs/posterior/digits_superres.py

Variants: `x4` (4x pooling, 16x16 -> 4x4); `tiny` runs in seconds (tests).
"""

from diffssl_jax.configs.base import parse_variants
from diffssl_jax.configs.posterior.common import get_problem_config, shrink_for_tests


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("x4", "tiny"))
    config = get_problem_config()
    config.name = "digits_superres"
    config.data.dataset = "digits"
    config.operator.kind = "superres"
    config.operator.factor = 2
    config.operator.blur_sigma = 0.0  # plain average pooling
    if "x4" in variants:
        config.name = "digits_superres_x4"
        config.operator.factor = 4
    if "tiny" in variants:
        shrink_for_tests(config)
    return config
