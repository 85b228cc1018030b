"""l-DAE on scikit-learn's bundled digits (16x16x1), the l-DAE entry of the digits comparison.

    .venv/bin/python -m launch.train --config=configs/ldae/digits.py --workdir=runs/ldae_digits

PCA on 4x4 patches (D = 16) with d = 4 latent components. Choice of d: on a 256-px natural
image proxy (skimage astronaut, chelsea, coffee, rocket) the paper's d = 32 of D = 768 keeps
97.7% of the patch variance; on the digits' 4x4 patches the top 1/2/3/4/8 components keep
71.6/89.4/95.4/98.7/99.8%. d = 4 keeps a similar share, so the corruption again removes a
few percent of residual and puts the noise in the dominant directions; d = 8 would leave
almost no residual (the digits are 8x8 scans upsampled 2x, so their patches are smooth).
The basis is fitted from 16384 of the 21552 train patches (seed `config.seed`).

The ViT matches the digits MAE (width 64, 4 heads, 4x4 tokens) with adaLN time
conditioning, 6 blocks split symmetrically, 3 + 3 (the paper's best split, C.5); 0.37M
parameters. Speed: STEPS_PER_SEC below, measured with this command at batch 64 on 2 CPU
cores (load ~2; 15.6 steps/s with a second training job on the same cores): 2500 steps took
125 s of wall time including start-up, the PCA fit and compilation, so the 3000 steps take
about 2.5 minutes.

Variants (`--config=configs/ldae/digits.py:tiny`): `tiny` trains a few steps of a small
network in seconds (tests, CI).
"""

from diffssl_jax.configs.base import parse_variants, shrink_for_tests
from diffssl_jax.configs.ldae import get_ldae_base_config
from diffssl_jax.configs.mae import shrink_vit_for_tests

STEPS_PER_SEC = 22.1  # measured: see the module docstring


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("tiny",))
    config = get_ldae_base_config()
    config.data.name = "digits"
    config.data.image_shape = (16, 16, 1)
    config.corruption.patch_size = 4
    config.corruption.latent_dim = 4
    config.corruption.pca_num_patches = 16384
    config.model.patch_size = 4
    config.model.hidden_size = 64
    config.model.depth = 6
    config.model.encoder_depth = 3
    config.model.num_heads = 4
    config.model.dtype = "float32"  # bfloat16 is slower on CPUs
    config.optim.lr_peak = 1e-3
    config.optim.warmup_steps = 100
    config.optim.grad_clip_norm = 1.0
    config.optim.ema_decay = 0.999
    config.train.num_steps = 3000
    config.train.batch_size = 64
    config.train.log_every_steps = 100
    config.train.checkpoint_every_steps = 1000
    if "tiny" in variants:
        shrink_for_tests(config)
        shrink_vit_for_tests(config)
        config.corruption.pca_num_patches = 2048
        config.train.sample_every_steps = 0
    return config
