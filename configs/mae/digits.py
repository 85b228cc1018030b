"""MAE on scikit-learn's bundled digits (16x16x1), the MAE baseline of the digits comparison.

    .venv/bin/python -m launch.train --config=configs/mae/digits.py --workdir=runs/mae_digits

ViT with 4x4 patches (16 tokens, the patch size the digits MDM masks with), width 64, 6
blocks of which the first 4 are the "encoder" read by the probe (MAE's encoder is deeper
than its decoder), 4 heads; 0.30M parameters; masking ratio 0.75 (12 of 16 patches).
Speed: STEPS_PER_SEC below, measured with this command at batch 64 on 2 CPU cores (load ~2;
16.5 steps/s with a second training job on the same cores): 2500 steps took 111 s of wall
time including start-up and compilation, so the 3000 steps take about 2.2 minutes.

Variants (`--config=configs/mae/digits.py:tiny`): `tiny` trains a few steps of a small
network in seconds (tests, CI); `all_pixels` puts the loss on every pixel instead of the
masked ones.
"""

from diffssl_jax.configs.base import parse_variants, shrink_for_tests
from diffssl_jax.configs.mae import get_mae_base_config, shrink_vit_for_tests

STEPS_PER_SEC = 24.5  # measured: see the module docstring


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("tiny", "all_pixels"))
    config = get_mae_base_config()
    config.data.name = "digits"
    config.data.image_shape = (16, 16, 1)
    config.corruption.patch_size = 4
    config.model.patch_size = 4
    config.model.hidden_size = 64
    config.model.depth = 6
    config.model.encoder_depth = 4
    config.model.num_heads = 4
    config.model.mlp_ratio = 4.0
    config.optim.lr_peak = 1e-3
    config.optim.warmup_steps = 100
    config.optim.grad_clip_norm = 1.0
    config.optim.ema_decay = 0.999
    config.train.num_steps = 3000
    config.train.batch_size = 64
    config.train.log_every_steps = 100
    config.train.checkpoint_every_steps = 1000
    if "all_pixels" in variants:
        config.objective.loss_on = "all"
    if "tiny" in variants:
        shrink_for_tests(config)
        shrink_vit_for_tests(config)
        config.train.sample_every_steps = 0
    return config
