"""Learning a diffusion prior from corrupted observations by EM (Rozet et al. 2024; docs/em.md).

Modules: `laps` (the lap loop: resumable laps, M-step = `training.train(..., source=)`),
`estep` (the chunked, resumable MMPS E-step), `options` (every check before the workdir is
written, the units among them), `gaussian` (the closed-form Gaussian EM of lap 0),
`experiments` (the `Experiment` interface, `make_experiment`, `run_experiment`), `toy`,
`images` and `patches` (the experiments of docs/methods.md F, and masked natural patches),
`report` (the clean-data ceiling and the curve). The prior is the recipe `methods.edm`; its
units adapter is `sampling.denoisers.ScaledDenoiser`.
"""

from diffssl_jax.em.estep import e_step, filter_samples, prior_samples
from diffssl_jax.em.experiments import EXPERIMENTS, Experiment, make_experiment, run_experiment
from diffssl_jax.em.gaussian import fit_gaussian, fit_problem
from diffssl_jax.em.laps import (
    EMError,
    completed_laps,
    lap_dir,
    lap_key,
    lap_seed,
    load_lap,
    m_step,
    run,
    run_lap,
)
from diffssl_jax.em.options import check_em_config, check_em_options

__all__ = [
    "EMError",
    "EXPERIMENTS",
    "Experiment",
    "check_em_config",
    "check_em_options",
    "completed_laps",
    "e_step",
    "filter_samples",
    "fit_gaussian",
    "fit_problem",
    "lap_dir",
    "lap_key",
    "lap_seed",
    "load_lap",
    "m_step",
    "make_experiment",
    "prior_samples",
    "run",
    "run_experiment",
    "run_lap",
]
