"""MAE configs: the keys every MAE config shares (He et al. 2022; docs/methods.md A.7 baseline).

`get_mae_base_config()` is `configs.base.get_base_config()` with `method = "mae"`, the MAE
corruption and objective keys (documented below with their units) and a ViT without time
conditioning. The DDPM-only keys `corruption.schedule`, `objective.prediction` and
`objective.weighting` are removed so that overriding them fails by name.
"""

from diffssl_jax.configs.base import get_base_config


def get_mae_base_config():
    """MAE's settings (He et al. 2022, App. A.1); dataset files set data, model and schedule."""
    config = get_base_config()
    config.method = "mae"
    del config.corruption.schedule
    del config.objective.prediction
    del config.objective.weighting
    config.corruption.patch_size = 16  # side of the square mask patches, in pixels; a multiple
    # of model.patch_size (equal in MAE: one mask decision per token)
    config.corruption.mask_ratio = 0.75  # fraction of the patches masked (MAE: 0.75)
    config.corruption.fill = 0.0  # value of masked pixels, in [-1, 1] image units (0 = grey)
    config.objective.loss_on = "masked"  # MSE over: masked (MAE) | all pixels

    config.model.patch_size = 16  # ViT token side, in pixels
    config.model.time_conditioning = False  # MAE has no time input
    config.optim.lr_peak = 1.5e-4 * 4096 / 256  # MAE: base lr 1.5e-4 x batch / 256
    config.optim.warmup_steps = 40 * 312  # 40 epochs of ImageNet at batch 4096
    config.optim.decay = "cosine"
    config.optim.weight_decay = 0.05
    config.optim.grad_clip_norm = 0.0
    # MAE keeps no EMA; the loop always does and evaluation reads it (which="params" for raw)
    config.optim.ema_decay = 0.9999
    config.train.batch_size = 4096
    config.train.num_steps = 800 * 312  # 800 epochs
    config.train.sample_every_steps = 0  # MAE is not sampled from

    config.eval.feature_t = 0.0  # ignored: the ViT has no time input
    config.eval.feature_blocks = ("encoder",)
    return config


def shrink_vit_for_tests(config) -> None:
    """A ViT of a few thousand parameters for `tiny` variants."""
    config.model.hidden_size = 16
    config.model.depth = 2
    config.model.num_heads = 2
    config.model.mlp_ratio = 2.0
    config.model.encoder_depth = 1
    config.model.frequency_dim = 16
