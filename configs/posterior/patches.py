"""Inverse problems on 16x16 natural-image patches (`data.patches.PatchSource`) under the
patches DDPM prior (configs/ddpm/patches.py) or the Gaussian fitted to the same training
patches (`--prior=gaussian`).

    .venv/bin/python -m launch.train --config=configs/ddpm/patches.py --workdir=runs/ddpm_patches
    .venv/bin/python -m launch.sample --workdir=runs/ddpm_patches \
        --problem=configs/posterior/patches.py:box
    .venv/bin/python -m launch.sample --workdir=runs/ddpm_patches --prior=gaussian \
        --problem=configs/posterior/patches.py:box

Held-out patches of the validation photographs by default (settings are chosen there); `test`
switches to the test photographs (the reported numbers). Variants, one task each:
`box` (a missing 8x8 centre box, the default), `pixels` (50% of the pixels removed at random),
`superres` (2x super-resolution with blur: a 5x5 Gaussian blur of std 1 pixel, then 2x2
average pooling, 16x16 -> 8x8); and `test`, `tiny` (tests). Any key can be overridden, e.g.
`--problem.method.name=dps`.
"""

from diffssl_jax.configs.base import parse_variants
from diffssl_jax.configs.posterior.common import get_problem_config, shrink_for_tests

TASKS = ("box", "pixels", "superres")


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=(*TASKS, "test", "tiny"))
    tasks = [task for task in TASKS if task in variants] or ["box"]
    if len(tasks) > 1:
        raise ValueError(f"choose one task of {TASKS}; got {tasks}.")
    config = get_problem_config()
    config.data.dataset = "patches"
    config.data.split = "test" if "test" in variants else "validation"
    config.operator.kind = tasks[0]
    config.operator.box = (4, 4, 8, 8)
    config.operator.rate = 0.5
    config.operator.factor = 2
    config.operator.blur_sigma = 1.0  # super-resolution with blur (operators.BlurDownsample)
    config.name = f"patches_{tasks[0]}" + ("_test" if "test" in variants else "")
    if "tiny" in variants:
        shrink_for_tests(config)
    return config
