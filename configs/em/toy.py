"""EM on the toy manifold (Rozet et al. 2024, E.4; docs/methods.md F), at CPU scale by default.

    .venv/bin/python -m launch.em --config=configs/em/toy.py --workdir=runs/em_toy
    .venv/bin/python -m launch.em --config=configs/em/toy.py:noclip --workdir=runs/em_toy_noclip

Latents in R^5 on a random 1-d manifold scaled to [-2, 2]; each observation a random 2x5
projection with unit-norm rows and noise 0.01. The MLP (256, 256, 256) prior trains on x / 2
(network units in [-1, 1]) with the EDM preconditioning of s_d = 0.5, i.e. E.1's s_d = 1
in the toy's units; noise from 1e-3 to 10 toy units (5e-4 to 5 network units), t ~ Beta(3, 3).
Samples: the E-step drops non-finite samples and those with an entry beyond
`em.sample_bound = 3` (the reference drops those outside (-3, 3) too); the M-step then trains
on `x / em.data_scale` clipped into the pipeline's [-1, 1] (`em.laps.m_step`), i.e. it clips
the kept samples to [-2, 2] here, which the reference does not (the sample clip).

Variants: `paper` (E.4's sizes, for accelerators: 65,536 observations, 64 laps of 65,536
steps, batch 1024, lr 1e-3 decaying linearly to 0 (E.4: to 1e-6), 4096 sampler steps),
`noclip` (no sample clip, as the reference: `em.data_scale = em.sample_bound = 3`, so every
kept sample lies in the network's [-1, 1]; the network ranges and s_d are divided by 3 to
stay the same in toy units, which leaves the EDM network, its inputs and its loss unchanged:
only the clip differs), `tiny` (tests: seconds).
"""

from diffssl_jax.configs.base import parse_variants
from diffssl_jax.configs.em.defaults import get_em_base_config, shrink_em_for_tests


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("tiny", "paper", "noclip"))
    config = get_em_base_config()
    config.em.task = "toy"
    config.data.name = "em_toy"  # informational: the M-step reads the posterior samples
    config.data.image_shape = (1, 1, 5)  # one latent as a 1x1 "image" with 5 channels
    config.model_name = "mlp"
    config.model.features = (256, 256, 256)
    config.model.emb_features = 64
    config.model.normalize = True
    config.model.t_scale = 1000.0
    config.corruption.sigma_min = 5e-4  # network units (x / 2)
    config.corruption.sigma_max = 5.0
    config.objective.sigma_data = 0.5
    config.objective.time_distribution = "beta33"
    config.em.data_scale = 2.0
    config.em.sample_bound = 3.0  # the reference drops samples outside (-3, 3)
    config.em.num_laps = 8
    config.em.num_observations = 8192
    config.em.chunk_size = 2048
    config.em.gaussian_iterations = 64
    config.em.num_eval_samples = 1024
    config.optim.lr_peak = 1e-3
    config.optim.warmup_steps = 50
    config.optim.decay = "cosine"
    config.optim.ema_decay = 0.99
    config.optim.grad_clip_norm = 1.0
    config.train.num_steps = 2000
    config.train.batch_size = 256
    config.train.log_every_steps = 250
    config.train.checkpoint_every_steps = 1000
    config.sampling.grid = "loglinear"
    config.sampling.num_steps = 64
    config.sampling.sigma_min = 1e-3  # EM units: corruption.sigma_* * em.data_scale
    config.sampling.sigma_max = 10.0
    config.posterior.cg_maxiter = 1
    if "paper" in variants:
        config.em.num_laps = 64
        config.em.num_observations = 65536
        config.em.num_eval_samples = 16384
        config.em.chunk_size = 8192
        config.train.num_steps = 65536
        config.train.batch_size = 1024
        config.train.log_every_steps = 1024
        config.train.checkpoint_every_steps = 8192
        config.optim.warmup_steps = 0
        config.optim.decay = "linear"
        config.sampling.num_steps = 4096
    if "noclip" in variants:  # the kept samples (|x| <= 3) fill the network's [-1, 1]: no clip
        scale = config.em.sample_bound
        config.em.data_scale = scale
        config.corruption.sigma_min = config.sampling.sigma_min / scale
        config.corruption.sigma_max = config.sampling.sigma_max / scale
        config.objective.sigma_data = 1.0 / scale  # s_d = 1 toy unit, as the default's 0.5 x 2
    if "tiny" in variants:
        config.model.features = (32, 32)
        config.model.emb_features = 16
        shrink_em_for_tests(config, num_observations=256, num_eval_samples=128, num_laps=2)
        config.em.chunk_size = 128
        config.em.gaussian_iterations = 8
        config.train.num_steps = 6
        config.train.batch_size = 32
        config.sampling.num_steps = 8
    return config
