"""MAE on CIFAR-10 (32x32x3) through tensorflow-datasets.

    python -m launch.train --config=configs/mae/cifar10.py --workdir=runs/mae_cifar10 \
        --config.data.data_dir=$HOME/tensorflow_datasets

The data must be prepared once as array_record (README, "Datasets"). A ViT-S-width network
on 4x4 patches (64 tokens): width 384, 6 heads, 12 blocks of which the first 8 are the
probed "encoder" (MAE's encoder is deeper than its decoder; here both share one width).
Mask ratio 0.75 on the 4x4 token grid, loss on masked pixels, AdamW with MAE's base lr
1.5e-4 x batch / 256, weight decay 0.05, 20 warm-up epochs, cosine, 400 epochs at batch
256, horizontal flips.

Variants (`:tiny`): a few steps of a small network (tests with mocked tfds data).
"""

from diffssl_jax.configs.base import parse_variants, shrink_for_tests
from diffssl_jax.configs.mae import get_mae_base_config, shrink_vit_for_tests

STEPS_PER_EPOCH = 50_000 // 256


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("tiny",))
    config = get_mae_base_config()
    config.data.name = "cifar10"
    config.data.image_shape = (32, 32, 3)
    config.pipeline.random_flip = True
    config.corruption.patch_size = 4
    config.model.patch_size = 4
    config.model.hidden_size = 384
    config.model.depth = 12
    config.model.encoder_depth = 8
    config.model.num_heads = 6
    config.model.mlp_ratio = 4.0
    config.train.batch_size = 256
    config.optim.lr_peak = 1.5e-4 * 256 / 256
    config.optim.warmup_steps = 20 * STEPS_PER_EPOCH
    config.train.num_steps = 400 * STEPS_PER_EPOCH
    config.train.log_every_steps = 100
    config.train.checkpoint_every_steps = 5000
    if "tiny" in variants:
        shrink_for_tests(config)
        shrink_vit_for_tests(config)
        config.train.sample_every_steps = 0
    return config
