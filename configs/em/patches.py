"""EM on masked natural-image patches (docs/em.md; docs/methods.md F): 75% (default) or 50%.

    .venv/bin/python -m launch.em --config=configs/em/patches.py:rate75 --workdir=runs/em_patches75
    .venv/bin/python -m launch.em --config=configs/em/patches.py:rate50 --workdir=runs/em_patches50

The first 2048 of the 5676 training patches (`data.patches.PatchSource("train")`, 16x16 grey
in [-1, 1], the source's fixed random order mixes the seven training photographs) are each
observed once through their own random mask (exactly `round(rate * 256)` pixels removed),
with noise 0.01 on the observed pixels. The prior is a small U-Net with the EDM
preconditioning; lap 0 is the moment-matching Gaussian (256-d, closed form). Per lap: the
PSNR of the posterior samples against the clean patches, and two distances of 1024 prior
samples to the 739 test patches (photographs never trained on): the kurtosis gap of
horizontal differences and the pixel-space Sinkhorn divergence (the curve; `em.patches`
says why these and their scale: real training patches score 18.2-19.0, the fitted Gaussian
19.9-20.8). The clean-data prior (the ceiling) and the zero-filled observations (the floor)
are measured in the same units. Variants: `rate75` (default), `rate50`, `tiny` (tests).

Cost, measured at 75 % with `--config.em.num_laps=1 --config.em.clean_baseline=False`
(2026-12-07, 2 CPU cores shared with other jobs, load 8-9; 13 min in all): the start (the
patches, the lap-0 Gaussian fit: 16 iterations on 2048 observations) 5.3 min, the lap-0
E-step 73 s; lap 1 took 6.3 min: M-step 230 s (800 steps at 4.4 steps/s, 287k parameters),
E-step 116 s, the 1024 prior samples and both measures 31 s. The U-Net (16 channels, mult
(1, 2, 2)) is the widest of those timed whose lap fits about 5 minutes on 2 quiet cores (a
train step at batch 64, load 4-5: 0.13 s for the digits U-Net, 8 channels, mult (1, 2, 4);
0.22 s at 16 and 0.55 s at 32 channels, mult (1, 2, 2)). A full run (4 laps, then the
ceiling: 3200 steps on the clean patches and its E-step) takes about 45-50 min at that load.
"""

from diffssl_jax.configs.base import parse_variants
from diffssl_jax.configs.em import digits
from diffssl_jax.configs.em.defaults import shrink_em_for_tests, use_grey_unet


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("rate50", "rate75", "tiny"))
    # the masking, noise, laps, optimiser and sampler of the digits EM
    config = digits.get_config(",".join(sorted(variants - {"tiny"})))
    config.em.task = "patches"
    config.data.name = "patches"  # informational: the M-step reads the posterior samples
    use_grey_unet(config, channels=16, channel_mult=(1, 2, 2), num_groups=8)
    config.em.num_observations = 2048  # of the 5676 training patches: a lap in ~5 CPU-min
    config.em.num_eval_samples = 1024  # the measures' scale depends on it (em.patches)
    if "tiny" in variants:
        config.model.model_channels = 8
        config.model.num_head_channels = 8
        config.model.channel_mult = (1, 2)
        config.model.num_groups = 4
        shrink_em_for_tests(config, num_observations=32, num_eval_samples=8)
    return config
