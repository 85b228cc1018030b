"""DDPM on 16x16 natural-image patches (`data.patches.PatchSource`): the learned prior of the
natural-patch posterior benchmark (configs/posterior/patches.py).

    .venv/bin/python -m launch.train --config=configs/ddpm/patches.py --workdir=runs/ddpm_patches

The data are the 5676 patches of the seven training photographs (the validation and test
photographs are never seen). Everything but the data and the step count is
`configs/ddpm/digits.py`: the U-Net is the digits one (32 channels, mult (1, 2, 2), one
residual block per level, no attention; 1.14M parameters). One jitted train step at batch 64
cost 0.49 s of process CPU (`benchmarks/train_step.py --config=configs/ddpm/patches.py
--batch_size=64 --no_torch`; wall 0.93 s median on 2 cores shared with other jobs, load 6-9),
about half the quiet-machine digits step at batch 128 (0.48 s, benchmarks/README.md), so the
2000 steps (22 epochs) take about 8-10 minutes on 2 quiet cores. On a machine loaded 13-16 by
other jobs the first 600 steps ran at 0.3-0.6 steps/s (loss 0.039 at step 600). No
flips: the DDPM sees exactly the patches the Gaussian baseline
(`evaluation.priors.gaussian_prior`) is fitted to.
Variants (`--config=configs/ddpm/patches.py:tiny`): `tiny` trains a few steps of a small
network in seconds and checkpoints more than once (tests, CI).
"""

from diffssl_jax.configs.base import parse_variants
from diffssl_jax.configs.ddpm import digits


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("tiny",))
    config = digits.get_config(",".join(sorted(variants)))  # the same U-Net and optimiser
    config.data.name = "patches"
    if "tiny" not in variants:
        config.train.num_steps = 2000
        config.train.sample_every_steps = 1000
    config.eval.segmentation = False  # patches have no segmentation labels
    return config
