"""l-DAE configs: the keys every l-DAE config shares (Chen et al. 2024; docs/methods.md C.2-C.6).

`get_ldae_base_config()` is `configs.base.get_base_config()` with `method = "ldae"`, the
PCA-latent corruption and weighted-loss keys (documented below with their units), and the
paper's DiT-L-shaped ViT (24 blocks of width 1024, the first 12 the "ViT-1/2L" encoder,
patch 16, adaLN with a quarter-width MLP) with its optimiser. The DDPM-only keys
`corruption.schedule`, `objective.prediction` and `objective.weighting` are removed so that
overriding them fails by name.
"""

import math

from diffssl_jax.configs.base import get_base_config


def get_ldae_base_config():
    """The l-DAE paper settings (ImageNet 256x256); dataset files override what differs."""
    config = get_base_config()
    config.method = "ldae"
    del config.corruption.schedule
    del config.objective.prediction
    del config.objective.weighting
    config.corruption.patch_size = 16  # side P of the PCA patches, in pixels (D = P P C)
    config.corruption.latent_dim = 32  # d: PCA components that carry the noise (paper: 32)
    config.corruption.pca_center = True  # subtract the patch mean before the PCA (unstated)
    config.corruption.pca_whiten = False  # noise in whitened latent units (unstated; C.3)
    config.corruption.pca_num_patches = 200_000  # random training patches the PCA is fit on
    config.corruption.sigma_max = math.sqrt(2.0)  # sigma_t = sigma_max t, in latent units
    # The roadmap's stages (C.4, C.5; methods/ldae.py), defaults = the final l-DAE:
    config.corruption.tokenizer = "pca"  # pca | pixel (identity basis: noise on pixels, d = D)
    config.corruption.gamma_scaling = False  # True: z_t = gamma_t z0 + sigma_t eps, gamma^2 = 1-t
    config.corruption.noise_levels = "schedule"  # schedule (t ~ U[0, 1)) | single (single_sigma)
    config.corruption.single_sigma = 1.0 / 3.0  # sigma of the single level (paper: 1/3)
    # Input of `features`: projected (noise-free latent, inverse PCA) | raw (the image) |
    # noisy (latent noise at eval.feature_t); the paper's "clean input" is ambiguous.
    config.corruption.feature_input = "projected"
    config.objective.residual_weight = 0.1  # loss weight of PCA components d+1..D (Eq. 4)
    config.objective.target = "image"  # image (x0, Eq. 4) | eps (the latent noise, unweighted)

    config.model.patch_size = 16  # ViT token side, in pixels
    config.model.hidden_size = 1024
    config.model.depth = 24
    config.model.encoder_depth = 12
    config.model.num_heads = 16
    config.model.mlp_ratio = 4.0
    config.model.time_conditioning = True  # adaLN-Zero on t (DiT)
    config.model.dtype = "bfloat16"

    config.optim.lr_peak = 1e-4 * 2048 / 256  # base lr 1e-4 x batch / 256 (C.2)
    config.optim.warmup_steps = 100 * 625  # 100 epochs of ImageNet at batch 2048
    config.optim.decay = "cosine"
    config.optim.weight_decay = 0.0
    config.optim.grad_clip_norm = 0.0
    config.optim.ema_decay = 0.9999
    config.train.num_steps = 400 * 625  # 400 epochs
    config.train.batch_size = 2048
    config.train.sample_every_steps = 0  # l-DAE is not sampled from here

    config.eval.feature_t = 0.01  # step 10 of ~1000, the paper's probe time (C.2)
    config.eval.feature_blocks = ("encoder",)
    return config
