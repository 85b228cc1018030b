"""Inverse problems on the held-out digits (16x16, test split) with a digits DDPM prior.

    .venv/bin/python -m launch.sample --workdir=runs/ddpm_digits \
        --problem=configs/posterior/digits.py:inpaint_box --problem.method=mmps

Variants: `inpaint_box` (the default: a centred 6x6 square missing), `inpaint_random` (half
the pixels missing), `superres` (2x box averaging), `tiny` (3 steps, 2 images: tests).
"""

from configs.base import parse_variants
from configs.posterior import get_problem_base, shrink_problem_for_tests


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("inpaint_box", "inpaint_random", "superres", "tiny"))
    p = get_problem_base()
    kinds = variants & {"inpaint_box", "inpaint_random", "superres"}
    if len(kinds) > 1:
        raise ValueError(f"choose one problem kind, got {sorted(kinds)}")
    p.kind = kinds.pop() if kinds else "inpaint_box"
    if "tiny" in variants:
        shrink_problem_for_tests(p)
    return p
