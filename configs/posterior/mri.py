"""Accelerated MRI on held-out ellipse phantoms (32x32, test split) with a phantoms prior.

    .venv/bin/python -m launch.train --config=configs/ddpm/phantoms.py --workdir=runs/ddpm_phantoms
    .venv/bin/python -m launch.sample --workdir=runs/ddpm_phantoms \
        --problem=configs/posterior/mri.py:x4

Column masks with a fully sampled centre (8% of the columns) and `W / acceleration` columns
in all; complex noise 0.01 per part. Variants: `x4` (default), `x8`, `shepp_logan` (score on
scikit-image's Shepp-Logan phantom resized to the prior's size, instead of the test split),
`tiny` (tests).
"""

from configs.base import parse_variants
from configs.posterior import get_problem_base, shrink_problem_for_tests


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("x4", "x8", "shepp_logan", "tiny"))
    p = get_problem_base()
    p.kind = "mri"
    p.acceleration = 8.0 if "x8" in variants else 4.0
    p.ground_truth = "shepp_logan" if "shepp_logan" in variants else "test"
    if "tiny" in variants:
        shrink_problem_for_tests(p)
    return p
