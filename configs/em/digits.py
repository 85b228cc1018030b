"""EM on corrupted digits (docs/methods.md F): random pixel masking at 75% (default) or 50%.

    .venv/bin/python -m diffssl_jax.evaluation.digit_classifier --workdir=runs/digit_classifier
    .venv/bin/python -m launch.em --config=configs/em/digits.py:rate75 --workdir=runs/em_digits75
    .venv/bin/python -m launch.em --config=configs/em/digits.py:rate50 --workdir=runs/em_digits50

All 1347 training digits (16x16 in [-1, 1]) are observed once, each through its own random
mask (exactly `round(rate * 256)` pixels removed), with noise 0.01 on the observed pixels.
The prior is a small U-Net with the EDM preconditioning; lap 0 is the moment-matching
Gaussian (256-d, closed form). Per lap: the PSNR of the posterior samples against the clean
digits and the Fréchet distance of prior samples to the 450 test digits in the features of
`evaluation.digit_classifier` (trained once by the first command). The clean-data prior
(the ceiling) and the zero-filled observations (the floor) are measured in the same units.
Variants: `rate75` (default), `rate50`, `tiny` (tests: seconds).
"""

from diffssl_jax.configs.base import parse_variants
from diffssl_jax.configs.em.defaults import get_em_base_config, shrink_em_for_tests, use_grey_unet


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("rate50", "rate75", "tiny"))
    if {"rate50", "rate75"} <= variants:
        raise ValueError("choose one masking rate: rate50 or rate75, not both.")
    config = get_em_base_config()
    config.em.task = "digits"
    config.data.name = "digits"  # informational: the M-step reads the posterior samples
    config.data.image_shape = (16, 16, 1)
    use_grey_unet(config, channels=8, channel_mult=(1, 2, 4), num_groups=4)
    config.em.mask_rate = 0.5 if "rate50" in variants else 0.75
    config.em.noise_std = 0.01
    config.em.num_observations = 1347  # every training digit
    config.em.num_laps = 4
    config.em.chunk_size = 256
    config.em.gaussian_iterations = 16
    config.em.num_eval_samples = 512
    config.em.sample_bound = 0.0  # keep every finite sample: the per-lap PSNR needs them all
    config.em.clean_baseline = True
    config.optim.lr_peak = 1e-3
    config.optim.warmup_steps = 100
    config.optim.decay = "constant"
    config.optim.ema_decay = 0.999
    config.train.num_steps = 800
    config.train.batch_size = 64
    config.train.log_every_steps = 100
    config.train.checkpoint_every_steps = 500
    config.sampling.num_steps = 32
    config.posterior.cg_maxiter = 1
    if "tiny" in variants:
        config.model.channel_mult = (1, 2)
        shrink_em_for_tests(config, num_observations=32, num_eval_samples=8)
    return config
