"""DDPM on random ellipse phantoms (32x32x1): the MRI prior of docs/methods.md part F.

    .venv/bin/python -m launch.train --config=configs/ddpm/phantoms.py --workdir=runs/ddpm_phantoms

The data are `data.phantoms.PhantomSource('train')`: 4096 Shepp-Logan-style phantoms drawn
with seed 0 (the 'test' split, seed 1, holds 256 others). The U-Net (16 channels, mult
(1, 2, 4), one residual block per level, attention at 8x8; 0.72M parameters) is sized for
a few CPU minutes: a jitted train step at batch 32 measured 4.5 steps/s (0.22 s/step, timed
with `block_until_ready` after compilation) on 2 CPU cores shared with other jobs (load
average about 3-6); the full 2000 steps took 16 min of wall time there, compilation,
checkpoints and two 64-image sample grids included (final loss about 0.029; the samples
have the skull ring and blob-like inner ellipses with soft edges).
Variants (`--config=configs/ddpm/phantoms.py:tiny`): `tiny` trains a few steps of a small
network in seconds and checkpoints more than once (tests, CI).
"""

from diffssl_jax.configs.base import get_base_config, parse_variants, shrink_for_tests


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("tiny",))
    config = get_base_config()
    config.method = "ddpm"
    config.data.name = "phantoms"
    config.data.image_size = 32
    config.data.image_shape = (32, 32, 1)
    config.model.out_channels = 1
    config.model.model_channels = 16
    config.model.channel_mult = (1, 2, 4)
    config.model.num_res_blocks = 1
    config.model.attention_resolutions = (4,)
    config.model.num_head_channels = 32
    config.model.dropout = 0.0
    config.model.num_groups = 8
    config.objective.prediction = "eps"
    config.optim.lr_peak = 1e-3
    config.optim.warmup_steps = 200
    config.optim.decay = "cosine"
    config.optim.ema_decay = 0.999
    config.train.num_steps = 2000
    config.train.batch_size = 32
    config.train.log_every_steps = 100
    config.train.checkpoint_every_steps = 500
    config.train.sample_every_steps = 1000
    config.sampling.sampler = "ddpm_ancestral"
    config.sampling.num_steps = 100
    config.eval.segmentation = False  # phantoms have no segmentation labels
    if "tiny" in variants:
        shrink_for_tests(config)
        config.model.model_channels = 8
        config.model.channel_mult = (1, 2)
        config.model.attention_resolutions = (2,)
        config.model.num_head_channels = 8
        config.model.num_groups = 4
    return config
