"""The EM groups shared by `configs/em/{toy,digits,mri}.py` (keys, meanings and units).

`get_em_base_config()` adds `em`, `posterior` and the keys of the EDM recipe
(`methods/edm.py`: `model_name`, `corruption.sigma_min/max`,
`objective.sigma_data/time_distribution`) to the base config.

Units: `sampling.sigma_min/max` (the E-step's and the prior samples' grid) are in EM (data)
units, those of the operators; `corruption.sigma_min/max` (the network's training range) are
in network units = EM units / `em.data_scale`. The two ranges must correspond
(`corruption.sigma_* * em.data_scale == sampling.sigma_*`, checked by `em/options.py`).
"""

import ml_collections

from diffssl_jax.configs.base import get_base_config


def get_em_base_config() -> ml_collections.ConfigDict:
    """The base config plus every key `launch/em.py` reads."""
    config = get_base_config()
    config.method = "edm"  # the prior's recipe: the EDM-preconditioned VE denoiser
    config.model_name = "mlp"  # network of the prior: mlp (flat vectors) | unet (images)
    config.corruption.schedule = "loglinear_ve"
    config.corruption.sigma_min = 1e-3  # smallest training noise level, network units
    config.corruption.sigma_max = 100.0  # largest training noise level, network units
    config.objective.prediction = "x0"  # the EDM denoiser predicts x0 (informational)
    config.objective.sigma_data = 0.5  # s_d of the EDM preconditioning, network units
    config.objective.time_distribution = "uniform"  # training times: beta33 | uniform
    config.train.sample_every_steps = 0  # the loop's sample grids are off; EM draws its own
    config.train.progress_bar = False
    config.train.keep_checkpoints = 1
    config.sampling.grid = "loglinear"
    config.sampling.sigma_min = 1e-3  # EM units: corruption.sigma_min * em.data_scale
    config.sampling.sigma_max = 100.0  # EM units: corruption.sigma_max * em.data_scale
    config.sampling.sampler = "ddpm_ancestral"

    config.posterior = ml_collections.ConfigDict()
    config.posterior.cg_maxiter = 1  # CG iterations of MMPS (the paper's default)
    # CG keeps a step whose residual grew at most this much (posterior.cg; 1: docs/methods.md E.6)
    config.posterior.cg_max_residual_growth = 10.0
    # what CG returns on a non-SPD system: residual_cap | trust_region | none (posterior.mmps).
    # The cap (not the library's default trust region): the runs of docs/em.md were drawn with
    # it, and at 1 CG iteration the two agree on validation images (docs/posterior_study.md).
    config.posterior.safeguard = "residual_cap"
    config.posterior.trust_radius = 3.0  # the correction's bound (trust_region)
    config.posterior.symmetrise = False  # (J + J^T) / 2 in CG's matvec (one jvp + one vjp)

    config.em = ml_collections.ConfigDict()
    config.em.task = "toy"  # toy | digits | mri | patches (what launch/em.py builds)
    config.em.num_laps = 8  # EM laps after the Gaussian lap 0
    config.em.num_observations = 8192  # observations (and posterior samples per lap)
    config.em.data_seed = 0  # seed of the clean data and of the observations
    config.em.noise_std = 0.01  # observation noise standard deviation (per real part)
    config.em.obs_dim = 2  # toy: rows of each random projection
    config.em.mask_rate = 0.75  # digits: fraction of pixels removed
    config.em.acceleration = 4.0  # mri: undersampling factor
    config.em.center_fraction = 0.08  # mri: fully sampled central columns
    config.em.gaussian_iterations = 32  # moment-matching EM iterations of the lap-0 prior
    config.em.chunk_size = 1024  # observations per E-step chunk (memory; resume granularity)
    config.em.data_scale = 1.0  # network units = EM units / data_scale (data within [-1, 1])
    config.em.sample_bound = 0.0  # drop samples with any |x| > bound (EM units); 0: no bound
    config.em.warm_start = True  # M-step starts from the previous lap's EMA params (E.4)
    config.em.num_eval_samples = 2048  # prior samples (and true points) per lap metric
    config.em.clean_baseline = True  # also train the prior on clean data (the ceiling)
    config.em.classifier_workdir = "runs/digit_classifier"  # digits: Fréchet features
    return config


def use_grey_unet(config, *, channels: int, channel_mult: tuple, num_groups: int) -> None:
    """The prior of the image tasks (digits, MRI): a small U-Net on one grey channel (one
    residual block per level, no attention, no dropout), sampled over the training range
    (EM units = network units: `em.data_scale = 1`)."""
    config.model_name = "unet"
    config.model.out_channels = 1
    config.model.model_channels = channels
    config.model.channel_mult = tuple(channel_mult)
    config.model.num_res_blocks = 1
    config.model.attention_resolutions = ()
    config.model.num_head_channels = channels
    config.model.dropout = 0.0
    config.model.num_groups = num_groups
    config.sampling.sigma_min = config.corruption.sigma_min
    config.sampling.sigma_max = config.corruption.sigma_max


def shrink_em_for_tests(
    config, *, num_observations: int, num_eval_samples: int, num_laps: int = 1
) -> None:
    """The `tiny` variants: a few observations (one E-step chunk), 2 Gaussian iterations,
    4 optimiser steps checkpointed every 2, 4 sampler steps, no clean baseline."""
    config.em.num_observations = num_observations
    config.em.chunk_size = num_observations
    config.em.num_laps = num_laps
    config.em.gaussian_iterations = 2
    config.em.num_eval_samples = num_eval_samples
    config.em.clean_baseline = False
    config.train.num_steps = 4
    config.train.batch_size = 8
    config.train.log_every_steps = 2
    config.train.checkpoint_every_steps = 2
    config.optim.warmup_steps = 2
    config.sampling.num_steps = 4
