"""DiTi on scikit-learn's digits (16x16x1), on the frozen digits DDPM of the README.

    .venv/bin/python -m launch.train --config=configs/diti/digits.py \
        --config.diti.prior_workdir=runs/ddpm_digits --workdir=runs/diti_digits
    .venv/bin/python -m launch.evaluate --workdir=runs/diti_digits \
        --tasks=attributes,counterfactuals

The prior is `configs/ddpm/digits.py` (trained first). The feature keeps the reference width
(512) and the reference non-uniform split of B.4, so the subset tables are the paper's; the
encoder is smaller than CelebA's: three stride-2 convs 16 -> 8 -> 4 -> 2 (32, 64, 64
channels, attention at 4x4), then Dense(256 -> 512). The shift branch mirrors the prior's
decoder.

Variants (`--config=configs/diti/digits.py:pdae,tiny`):
  `tiny`: a few steps of a tiny encoder (tests, CI; the prior may be any tiny DDPM).
  `pdae`: one subset (k = 1): PDAE, every step sees the whole feature.
  `uniform`: k = 64 with the uniform split (8 dims per subset).
  `stop_grad`, `dual`: the other optimisation modes of B.3.
"""

import ml_collections

from diffssl_jax.configs.base import parse_variants, shrink_for_tests
from diffssl_jax.configs.diti import get_diti_base_config, shrink_diti_for_tests


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("tiny", "pdae", "uniform", "stop_grad", "dual"))
    config = get_diti_base_config()
    config.data.name = "digits"
    config.data.image_shape = (16, 16, 1)
    config.model.channels = (32, 64, 64)
    config.model.attention_levels = (1,)
    config.model.num_groups = 8
    config.optim.lr_peak = 5e-4
    config.optim.warmup_steps = 100
    config.optim.decay = "cosine"
    config.optim.grad_clip_norm = 1.0
    config.optim.ema_decay = 0.999
    config.train.num_steps = 600
    config.train.batch_size = 64
    config.train.log_every_steps = 100
    config.train.checkpoint_every_steps = 300
    if "pdae" in variants:
        config.diti.num_subsets = 1
        config.diti.partition = "uniform"
        config.eval.subset_groups = ml_collections.ConfigDict()
    if "uniform" in variants:
        config.diti.partition = "uniform"
    for mode in ("stop_grad", "dual"):
        if mode in variants:
            config.diti.mode = mode
    if "tiny" in variants:
        shrink_for_tests(config)
        shrink_diti_for_tests(config)
        config.train.sample_every_steps = 0
        if "pdae" in variants:
            config.diti.num_subsets = 1
            config.eval.subset_groups = ml_collections.ConfigDict()
    return config
