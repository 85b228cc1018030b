"""MDM on scikit-learn's bundled digits (16x16x1): the default job of the README.

    .venv/bin/python -m launch.train --config=configs/mdm/digits.py --workdir=runs/mdm_digits

The U-Net is the digits DDPM's (32 channels, mult (1, 2, 2), one residual block per level,
no attention; 1.14M parameters), predicting x0. Speed: STEPS_PER_SEC below, measured with
this command at batch 64 on 2 CPU cores (load ~2; 2.3 steps/s with a second training job
on the same cores): 800 steps took 200 s of wall time including start-up and compilation,
so the 700 steps take about 3 minutes.

Patch size 4, i.e. 16 patches (MDM uses 8 at 256x256: 1024 patches). The digits are 8x8
scans upsampled 2x, so a 4x4 patch hides a 2x2 block of original pixels, a piece of a
stroke that the network must infer from the digit's shape. Patch 8 would leave only 4
patches (mask ratios in quarters, each masking a quarter of the digit); patch 2 would mask
single original pixels, which bilinear interpolation from the neighbours nearly recovers.
With L = 16 the code convention keeps floor(16 (1 - s / T)) patches: only s = 0 masks
nothing, every s >= 1 masks at least one patch, t = 50 / 1000 (the feature time) masks 1 of
16 and s = 999 masks all 16.

Feature blocks: `FEATURE_BLOCKS`, the decoder blocks below full resolution (the 4x4 `dec_0`
and the 8x8 `dec_1`, `dec_2`), docs/methods.md A.4's rule (MDM never reads full-resolution
decoder blocks, close to a copy of its x0 prediction). The validation sweep of
docs/results.md agrees: with 10 labels per class the best probe reads `dec_0` at t = 0.05
(92.5 % on validation), and each full-resolution block is worse (`dec_5`: 89.6 %).
The probe pools each block on a `PROBE_POOL_GRID` x `PROBE_POOL_GRID` grid: the sweep's best
grid for every network on the digits, whose layout carries most of the class (global pooling
costs MDM 9.4 points at 10 labels per class on validation).

Variants (`--config=configs/mdm/digits.py:mse,tiny`):
  `tiny`: a few steps of a small network in seconds (tests, CI).
  `mse`: "MDM with MSE": the same masking, objective.loss = "mse" (docs/methods.md A.7 ablation).
  `fixed_t`: "MDM at a fixed t": every example masked at t = 0.75 (step 750, 12 of 16
    patches masked). 0.75 is MAE's ratio, making this "MAE with SSIM" as the MDM paper
    describes the ablation, and the t of the leftover `t_750_only` checkpoints (A.5).
"""

from diffssl_jax.configs.base import parse_variants, shrink_for_tests
from diffssl_jax.configs.mdm import get_mdm_base_config, shrink_unet_for_tests

STEPS_PER_SEC = 4.3  # measured: see the module docstring
FEATURE_BLOCKS = ("dec_0", "dec_1", "dec_2")  # below full resolution (module docstring)
PROBE_POOL_GRID = 4  # cells per side of the probe's average pooling (module docstring)
FIXED_T = 0.75


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("tiny", "mse", "fixed_t"))
    config = get_mdm_base_config()
    config.data.name = "digits"
    config.data.image_shape = (16, 16, 1)
    config.corruption.patch_size = 4
    config.model.out_channels = 1
    config.model.model_channels = 32
    config.model.channel_mult = (1, 2, 2)
    config.model.num_res_blocks = 1
    config.model.attention_resolutions = ()
    config.model.num_head_channels = 32
    config.model.num_groups = 8
    config.model.resblock_updown = False
    config.model.dtype = "float32"  # bfloat16 is slower on CPUs
    config.optim.lr_peak = 1e-3
    config.optim.warmup_steps = 100
    config.optim.decay = "cosine"
    config.optim.grad_clip_norm = 1.0
    config.optim.ema_decay = 0.999
    config.train.num_steps = 700
    config.train.batch_size = 64
    config.train.log_every_steps = 100
    config.train.checkpoint_every_steps = 350
    config.eval.feature_blocks = FEATURE_BLOCKS
    config.eval.probe_pool_grid = PROBE_POOL_GRID
    if "mse" in variants:
        config.objective.loss = "mse"
    if "fixed_t" in variants:
        config.corruption.fixed_t = FIXED_T
    if "tiny" in variants:
        shrink_for_tests(config)
        shrink_unet_for_tests(config)
        config.eval.feature_blocks = ()  # the small test U-Net's own default
        config.train.sample_every_steps = 0
    return config
