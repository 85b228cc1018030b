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

The roadmap's flags (keys of `configs/ldae/__init__.py`, defaults = the final l-DAE;
docs/methods.md C.4, C.5; formulas in `corruptions/pca_noise.py`):
  corruption.latent_dim     d, PCA components that carry the noise, 1..D (D = 16 here)
  corruption.tokenizer      "pca" | "pixel" (identity basis, noise on pixels; needs d = D)
  corruption.gamma_scaling  False: z_t = z0 + sigma_max t eps | True: sqrt(1-t) z0 + sqrt(t) eps
  corruption.noise_levels   "schedule" (t ~ U[0, 1)) | "single" (sigma_t = single_sigma always)
  corruption.single_sigma   the single level, 1/3 (the paper's), in latent units
  objective.target          "image" (x0, Eq. 4) | "eps" (the latent noise, unweighted)
  objective.residual_weight Eq. 4's weight of components d+1..D (0: the clean-latent loss)

Variants (`--config=configs/ldae/digits.py:tiny,eps`; comma-separated, any order):
  `tiny`: a few steps of a small network in seconds (tests, CI).
  Roadmap stages, in the paper's order (`ROADMAP`; at most one):
  `eps`: gamma_t^2 = 1 - t, the network predicts the noise (Table 1's "patch-wise PCA", 65.1);
  `clean_latent`: the same noise, target x0 with residual_weight 0, lambda_t = gamma_t^2
    ("predict clean data", 62.4);
  `no_scaling`: gamma_t = 1, sigma_t = sqrt(2) t, lambda_t = 1 / (1 + sigma_t^2),
    residual_weight 0 ("remove input scaling", 63.6; "image input" and "image output via
    inverse PCA", 63.6 and 63.9, are the same run here: this ViT always reads and writes
    images);
  `ldae`: the defaults, named for tables (Eq. 4 weights, 64.5).
  Ablations (`ABLATIONS`; combine with a stage, the paper's d and tokenizer studies ran at
  stage `eps`): `single`: one noise level sigma = 1/3 (61.5 vs 64.5), with `eval.feature_t`
  set to its time (the only time the network saw); `pixel`: the pixel tokenizer, d = D = 16;
  `d1`, `d2`, `d4` (the default), `d8`, `d16` (d = D, the full PCA basis): latent dim.
"""

from diffssl_jax.configs.base import parse_variants, shrink_for_tests
from diffssl_jax.configs.ldae import get_ldae_base_config
from diffssl_jax.configs.mae import shrink_vit_for_tests
from diffssl_jax.corruptions.pca_noise import time_of_sigma

STEPS_PER_SEC = 22.1  # measured: see the module docstring
ROADMAP = ("eps", "clean_latent", "no_scaling", "ldae")  # the paper's order
LATENT_DIMS = {"d1": 1, "d2": 2, "d4": 4, "d8": 8, "d16": 16}
ABLATIONS = ("single", "pixel", *LATENT_DIMS)


def _one_of(variants: set, group, what: str) -> str | None:
    chosen = sorted(variants & set(group))
    if len(chosen) > 1:
        raise ValueError(f"choose at most one {what} variant, got {chosen}")
    return chosen[0] if chosen else None


def apply_roadmap(config, variants: set) -> None:
    """Sets the keys of the roadmap variants in `variants` (module docstring)."""
    stage = _one_of(variants, ROADMAP, "roadmap stage")
    if stage in ("eps", "clean_latent"):
        config.corruption.gamma_scaling = True
    if stage == "eps":
        config.objective.target = "eps"
    if stage in ("clean_latent", "no_scaling"):
        config.objective.residual_weight = 0.0
    dim = _one_of(variants, LATENT_DIMS, "latent dim (d1, d2, ...)")
    if dim and "pixel" in variants:
        raise ValueError(f"`pixel` fixes d = D = 16; drop {dim!r}")
    if dim:
        config.corruption.latent_dim = LATENT_DIMS[dim]
    if "pixel" in variants:
        config.corruption.tokenizer = "pixel"
        config.corruption.latent_dim = 16
    if "single" in variants:
        c = config.corruption
        c.noise_levels = "single"
        config.eval.feature_t = time_of_sigma(
            c.single_sigma, gamma_scaling=c.gamma_scaling, sigma_max=c.sigma_max
        )


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("tiny", *ROADMAP, *ABLATIONS))
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
    apply_roadmap(config, variants)
    return config
