"""DDPM on CIFAR-10 through tensorflow-datasets (for users with the dataset prepared).

    python -m launch.train --config=configs/ddpm/cifar10.py --workdir=runs/ddpm_cifar10 \
        --config.data.data_dir=$HOME/tensorflow_datasets

The data must be prepared once as array_record (see the README, "Datasets"). The model is
the 35.7M-parameter DDPM CIFAR-10 U-Net of Ho et al. (2020, App. B): 128 channels, mult
(1, 2, 2, 2), 2 residual blocks, attention at 16x16, dropout 0.1.
Variants: `tiny` (a few steps of a small network; tests with mocked tfds data).
"""

from diffssl_jax.configs.base import get_base_config, parse_variants, shrink_for_tests


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("tiny",))
    config = get_base_config()
    config.method = "ddpm"
    config.data.name = "cifar10"
    config.data.image_shape = (32, 32, 3)
    config.pipeline.random_flip = True
    config.model.out_channels = 3
    config.model.model_channels = 128
    config.model.channel_mult = (1, 2, 2, 2)
    config.model.num_res_blocks = 2
    config.model.attention_resolutions = (2,)
    config.model.dropout = 0.1
    config.model.resblock_updown = False
    config.model.use_scale_shift_norm = False
    config.optim.lr_peak = 2e-4
    config.optim.warmup_steps = 5000
    config.optim.ema_decay = 0.9999
    config.train.num_steps = 800_000
    config.train.batch_size = 128
    config.train.log_every_steps = 100
    config.train.checkpoint_every_steps = 10_000
    config.train.sample_every_steps = 50_000
    if "tiny" in variants:
        shrink_for_tests(config)
        config.model.model_channels = 8
        config.model.channel_mult = (1, 2)
        config.model.num_res_blocks = 1
        config.model.num_groups = 4
    return config
