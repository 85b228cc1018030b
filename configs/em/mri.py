"""EM on accelerated MRI of ellipse phantoms (docs/methods.md F): 4x column-undersampled k-space.

    .venv/bin/python -m launch.em --config=configs/em/mri.py --workdir=runs/em_mri

Phantoms 32x32 (training split), orthonormal 2-D FFT with column masks (8% fully sampled
centre, `W / 4` columns in all), complex noise 0.01 per part. The prior is a small U-Net
with the EDM preconditioning; lap 0 is the moment-matching Gaussian (1024-d, closed form).
The per-lap metric is the PSNR of the posterior samples against the phantoms; the zero-filled
inverse FFT is the floor. Variants: `x8` (8x), `tiny` (tests).
"""

from diffssl_jax.configs.base import parse_variants
from diffssl_jax.configs.em.defaults import get_em_base_config, shrink_em_for_tests, use_grey_unet


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("tiny", "x8"))
    config = get_em_base_config()
    config.em.task = "mri"
    config.data.name = "phantoms"
    config.data.image_shape = (32, 32, 1)
    use_grey_unet(config, channels=32, channel_mult=(1, 2, 2), num_groups=8)
    config.em.acceleration = 8.0 if "x8" in variants else 4.0
    config.em.num_observations = 512
    config.em.num_laps = 3
    config.em.chunk_size = 64
    config.em.gaussian_iterations = 8
    config.em.num_eval_samples = 64
    config.em.clean_baseline = False
    config.optim.lr_peak = 1e-3
    config.optim.warmup_steps = 100
    config.optim.ema_decay = 0.999
    config.train.num_steps = 1000
    config.train.batch_size = 32
    config.train.log_every_steps = 100
    config.train.checkpoint_every_steps = 500
    config.sampling.num_steps = 64
    if "tiny" in variants:
        config.data.image_shape = (16, 16, 1)
        config.model.model_channels = 8
        config.model.channel_mult = (1, 2)
        config.model.num_head_channels = 8
        config.model.num_groups = 4
        shrink_em_for_tests(config, num_observations=16, num_eval_samples=4)
    return config
