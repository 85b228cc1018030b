"""DiTi configs: the keys every DiTi config shares, at the reference settings (docs/methods.md B).

`get_diti_base_config()` is `configs.base.get_base_config()` with `method = "diti"`, the
`diti` group (documented below with its units), the reference CelebA-64 encoder of B.2 in
`model`, and the optimiser of B.5. The frozen prior's network and schedule are read from its
own workdir (`diti.prior_workdir`), so the DDPM keys `corruption.schedule` and `objective.*`
are removed: overriding them on a DiTi run fails by name instead of doing nothing.
The `diti` group lives here, not in `configs/base.py`, so that the workdirs of the other
methods keep their config.json and resume unchanged.
"""

import ml_collections

from diffssl_jax.configs.base import get_base_config

# docs/methods.md B.4: the reference non-uniform split of 512 dims over 64 subsets.
REFERENCE_STAGES = (50, 100, 300, 500, 1000)
REFERENCE_DIMS_PER_STAGE = (10, 25, 327, 100, 50)


def get_diti_base_config():
    """The DiTi reference settings; dataset files override the data and what differs."""
    config = get_base_config()
    config.method = "diti"
    del config.corruption.schedule
    del config.objective.prediction
    del config.objective.weighting

    config.diti = ml_collections.ConfigDict()
    config.diti.prior_workdir = ""  # a trained eps-prediction DDPM workdir (frozen; required)
    config.diti.num_steps = 1000  # T: integer steps n in {0..T-1}; the prior sees t = (n+1)/T
    config.diti.num_subsets = 64  # k: subset of step n is floor(n k / T); 1 = PDAE
    config.diti.partition = "nonuniform"  # nonuniform (reference diti64) | uniform (balanced)
    config.diti.stages = REFERENCE_STAGES  # nonuniform: stage ends, in steps (last = T)
    config.diti.dims_per_stage = REFERENCE_DIMS_PER_STAGE  # nonuniform: dims per stage (sum D)
    config.diti.mode = "base"  # base (cumulative mask) | stop_grad | dual (both losses)
    config.diti.gamma = 0.1  # exponent of the weighting w = SNR^gamma / (1 + SNR)

    config.model.latent_dim = 512  # D, the width of z
    config.model.channels = (64, 128, 128, 128)  # stride-2 conv widths (64 -> 4x4 map)
    config.model.attention_levels = (1,)  # levels followed by self-attention
    config.model.num_heads = 4
    config.model.num_groups = 32

    config.optim.lr_peak = 1e-4  # Adam, lr 1e-4 x (per-GPU batch / 32) at 4 x 32 (B.5)
    config.optim.warmup_steps = 0
    config.optim.decay = "constant"
    config.optim.weight_decay = 0.0
    config.optim.grad_clip_norm = 0.0
    config.optim.ema_decay = 0.9999
    config.train.batch_size = 128
    config.train.sample_every_steps = 0  # DiTi does not sample without a feature

    config.eval.segmentation = False  # z is one vector: no per-pixel features
    # Named subset ranges (first, last), inclusive, whose dims the attribute probes also read
    # alone and whose values the counterfactual strips interpolate (B.4 stages: subsets 0-6
    # cover steps 0-109, 7-31 steps 110-499, 32-63 steps 500-999).
    config.eval.subset_groups = ml_collections.ConfigDict(
        {"early": (0, 6), "middle": (7, 31), "late": (32, 63)}
    )
    config.eval.counterfactual_steps = 50  # DDIM steps of the inversion and of the generation
    config.eval.counterfactual_pairs = 4  # image pairs measured (the figure shows <= 4)
    config.eval.counterfactual_alphas = (0.0, 0.25, 0.5, 0.75, 1.0)  # interpolation weights
    return config


def shrink_diti_for_tests(config) -> None:
    """A tiny encoder for `tiny` variants (16-px images)."""
    config.model.channels = (8, 8)
    config.model.attention_levels = ()
    config.model.num_groups = 4
    config.model.latent_dim = 64
    config.diti.num_subsets = 8
    config.diti.partition = "uniform"
    config.eval.subset_groups = ml_collections.ConfigDict({"early": (0, 1), "late": (6, 7)})
    config.eval.counterfactual_steps = 4
    config.eval.counterfactual_pairs = 2
