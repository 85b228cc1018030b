"""MDM configs: the keys every MDM config shares, at the paper's settings (docs/methods.md A.2-A.5).

`get_mdm_base_config()` is `configs.base.get_base_config()` with `method = "mdm"`, the MDM
corruption and objective keys (documented below with their units), the 256-px U-Net of
docs/methods.md A.4, and the pre-training optimiser of A.5. The DDPM-only keys
`corruption.schedule`, `objective.prediction` and `objective.weighting` are removed, so that
overriding them on an MDM run fails by name instead of doing nothing.
"""

from diffssl_jax.configs.base import get_base_config

# docs/methods.md A.4: the medical feature blocks (1728-d) and the natural-image ones (3264-d) of
# the 18-block decoder of the 256-px U-Net.
MEDICAL_BLOCKS = tuple(f"dec_{i}" for i in range(8, 13))
NATURAL_BLOCKS = tuple(f"dec_{i}" for i in range(5, 13))


def get_mdm_base_config():
    """The MDM paper settings; dataset files override the data and what differs."""
    config = get_base_config()
    config.method = "mdm"
    del config.corruption.schedule
    del config.objective.prediction
    del config.objective.weighting
    config.corruption.patch_size = 8  # side P of the square mask patches, in pixels (MDM: 8)
    config.corruption.num_steps = 1000  # T: steps s in {0..T-1}; time t = s / T
    # "code": ratio s / T, keep floor(L (1 - s / T)) patches (official code, the default);
    # "paper": ratio s / (T + 1), s in {1..T} (arXiv v4); see corruptions/masking.py.
    config.corruption.mask_convention = "code"
    config.corruption.fill = 0.0  # value of masked pixels, in [-1, 1] image units (0 = grey)
    # -1: a time per example, s ~ U{0..T-1} (MDM). A time in [0, 1]: that one time, i.e. one
    # mask ratio, for every example (the "MDM at a fixed t" ablation).
    config.corruption.fixed_t = -1.0
    config.objective.loss = "ssim"  # ssim (MDM, Eq. 4) | mse (the "MDM with MSE" ablation)
    # SSIM constants: "reference" (max_val 1 on [-1, 1] data, as MDM) | "data_range" (max_val 2)
    config.objective.ssim_data_range = "reference"

    config.model.out_channels = 3
    config.model.model_channels = 192
    config.model.channel_mult = (1, 1, 2, 2, 4, 4)
    config.model.num_res_blocks = 2
    config.model.attention_resolutions = (8, 16, 32)  # downsample factors = sizes 32, 16, 8
    config.model.num_head_channels = 64
    config.model.resblock_updown = True
    config.model.use_scale_shift_norm = True
    config.model.dropout = 0.0
    config.model.dtype = "bfloat16"  # replaces guided-diffusion's fp16 (docs/methods.md A.8.4)

    config.optim.lr_peak = 1e-4  # AdamW, no warm-up, no anneal, no clipping (A.5)
    config.optim.warmup_steps = 0
    config.optim.decay = "constant"
    config.optim.weight_decay = 0.0
    config.optim.grad_clip_norm = 0.0
    config.optim.ema_decay = 0.9999
    config.train.batch_size = 128
    config.train.log_every_steps = 100
    config.train.checkpoint_every_steps = 5000
    config.train.sample_every_steps = 0  # MDM is not sampled from

    config.eval.feature_t = 0.05  # t = 50 / 1000: features of the 5%-masked image (A.4)
    config.eval.feature_blocks = MEDICAL_BLOCKS
    return config


def shrink_unet_for_tests(config) -> None:
    """A U-Net of a few thousand parameters for `tiny` variants (16-px images and up)."""
    config.model.model_channels = 8
    config.model.channel_mult = (1, 2)
    config.model.num_res_blocks = 1
    config.model.attention_resolutions = ()
    config.model.num_head_channels = 8
    config.model.num_groups = 4
    config.model.resblock_updown = False
    config.model.dtype = "float32"
    config.eval.feature_blocks = ()  # the recipe's default blocks of the small U-Net
