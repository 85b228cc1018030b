"""Digit inpainting under the digits DDPM prior: a missing 8x8 centre box, or random pixels.

    .venv/bin/python -m launch.sample --workdir=runs/ddpm_digits \
        --problem=configs/posterior/digits_inpaint.py

Variants (`--problem=configs/posterior/digits_inpaint.py:pixels,tiny`): `pixels` removes
50% of the pixels at random instead of the box; `tiny` runs in seconds (tests). Any key can
be overridden, e.g. `--problem.method.name=dps --problem.method.dps.zeta=0.5`.
"""

from diffssl_jax.configs.base import parse_variants
from diffssl_jax.configs.posterior.common import get_problem_config, shrink_for_tests


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("pixels", "tiny"))
    config = get_problem_config()
    config.name = "digits_inpaint"
    config.data.dataset = "digits"
    config.operator.kind = "box"
    if "pixels" in variants:
        config.name = "digits_pixels"
        config.operator.kind = "pixels"
    if "tiny" in variants:
        shrink_for_tests(config)
    return config
