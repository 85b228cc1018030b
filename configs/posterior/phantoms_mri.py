"""Accelerated MRI (column-masked 2-D Fourier, complex noise) under the phantoms DDPM prior.

    .venv/bin/python -m launch.train --config=configs/ddpm/phantoms.py --workdir=runs/ddpm_phantoms
    .venv/bin/python -m launch.sample --workdir=runs/ddpm_phantoms \
        --problem=configs/posterior/phantoms_mri.py:8x

Held-out phantoms (the 'test' split, seed 1, never seen in training) at 4x acceleration by
default. Variants: `8x` (acceleration 8), `shepp_logan` (scikit-image's Shepp-Logan phantom
resized to the prior's size, one image observed with 8 different masks), `tiny` (tests).
"""

from diffssl_jax.configs.base import parse_variants
from diffssl_jax.configs.posterior.common import get_problem_config, shrink_for_tests


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("8x", "shepp_logan", "tiny"))
    config = get_problem_config()
    config.data.dataset = "phantoms"
    config.operator.kind = "mri"
    config.operator.acceleration = 8.0 if "8x" in variants else 4.0
    config.operator.center_fraction = 0.08  # 3 of 32 central columns; 8 (4x) or 4 (8x) in all
    if "shepp_logan" in variants:
        config.data.dataset = "shepp_logan"
    dataset = "sl" if "shepp_logan" in variants else "phantoms"
    config.name = f"mri_{dataset}_{int(config.operator.acceleration)}x"
    if "tiny" in variants:
        shrink_for_tests(config)
    return config
