"""DDPM on scikit-learn's bundled digits (16x16): the default job of the README.

    .venv/bin/python -m launch.train --config=configs/ddpm/digits.py --workdir=runs/ddpm_digits

Variants (`--config=configs/ddpm/digits.py:tiny`): `tiny` trains a few steps in seconds and
checkpoints more than once (tests, CI).
"""

from diffssl_jax.configs.base import get_base_config, parse_variants, shrink_for_tests


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("tiny",))
    config = get_base_config()
    config.method = "ddpm"
    config.data.name = "digits"
    config.data.image_shape = (16, 16, 1)
    config.model.out_channels = 1
    config.model.model_channels = 32
    config.model.channel_mult = (1, 2, 2)
    config.model.num_res_blocks = 1
    # Attention at 8x8 doubled the step time on 2 CPU cores for no visible gain on 16x16 digits.
    config.model.attention_resolutions = ()
    config.model.num_head_channels = 32
    config.model.dropout = 0.0
    config.model.num_groups = 8
    config.objective.prediction = "eps"
    config.optim.lr_peak = 1e-3
    config.optim.warmup_steps = 200
    config.optim.decay = "cosine"
    config.optim.ema_decay = 0.999
    config.train.num_steps = 1500
    config.train.batch_size = 64
    config.train.log_every_steps = 100
    config.train.checkpoint_every_steps = 500
    config.train.sample_every_steps = 500
    config.sampling.sampler = "ddpm_ancestral"
    config.sampling.num_steps = 100
    if "tiny" in variants:
        shrink_for_tests(config)
        config.model.model_channels = 8
        config.model.channel_mult = (1, 2)
        config.model.num_head_channels = 8
        config.model.num_groups = 4
    return config
