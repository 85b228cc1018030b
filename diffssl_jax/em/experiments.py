"""The EM experiments of docs/methods.md F as objects, and the one function that runs them.

An experiment (`Experiment`) names its parts: the clean data behind the observations, how
they are observed (an `InverseProblem`), the per-lap metric and figure, the floor (the
zero-filled observations, for images), how the clean-data prior is scored (the ceiling), and
the curve's key, label and title. `EXPERIMENTS` maps `em.task` to one: `toy.ToyExperiment`
(the manifold of E.4), `images.DigitsExperiment` (masked digits), `images.MRIExperiment`
(undersampled MRI) and `patches.PatchesExperiment` (masked natural patches);
`make_experiment(config)` is the only place that reads `em.task`. A new experiment is one
class with these parts and one entry here.

`run_experiment(config, workdir)` observes the clean data, runs the laps (`laps.run`, with
the recipe of `config.method`, `methods.edm` in every shipped config), then measures the
floor and (if `em.clean_baseline`) the ceiling (`report.clean_ceiling`) and draws
`figures/em_curve.png`.
"""

from typing import Any, Callable, Protocol

import numpy as np

from diffssl_jax import methods, storage
from diffssl_jax.em import laps, options, report
from diffssl_jax.em.images import DigitsExperiment, MRIExperiment
from diffssl_jax.em.patches import PatchesExperiment
from diffssl_jax.em.toy import ToyExperiment
from diffssl_jax.posterior.problems import InverseProblem
from diffssl_jax.training import validation, workdir_lock

EXPERIMENTS = {
    "toy": ToyExperiment,
    "digits": DigitsExperiment,
    "mri": MRIExperiment,
    "patches": PatchesExperiment,
}


class Experiment(Protocol):
    """What EM needs from an experiment; built as `cls(em=, sampling=, image_shape=)` from
    the config's `em` and `sampling` groups and `data.image_shape`.

    Attributes:
      name: the task (`em.task`).
      title: the task as figure titles name it.
      curve_key: the per-lap metric of `figures/em_curve.png`.
      curve_label: its axis label.
      curve_log_y: whether the curve's axis is logarithmic.
    """

    name: str
    title: str
    curve_key: str
    curve_label: str
    curve_log_y: bool

    def clean_data(self) -> np.ndarray:
        """`[N, *shape]` clean examples behind the observations, in EM units."""

    def observe(self, x) -> InverseProblem:
        """The observations of the clean `x`."""

    def evaluator(self, workdir: str, x_clean: np.ndarray) -> Callable:
        """`(lap, prior, samples, rng) -> {name: float}`: the per-lap metric and figure."""

    def floor(self, workdir: str, x_clean, problem: InverseProblem) -> dict | None:
        """The floor in the per-lap units (written by process 0), or None."""

    def ceiling(self, prior, x_clean, evaluate, rng, posterior_samples) -> dict:
        """The clean-data `prior` scored like a lap; `posterior_samples(key) -> (kept,
        counts)` runs an E-step under it."""


def make_experiment(config) -> Any:
    """The experiment of `config.em.task`, built from the groups it reads.

    Raises:
      validation.ConfigError: an unknown task (before anything is written).
    """
    task = config.em.task
    if task not in EXPERIMENTS:
        raise validation.ConfigError(
            f"em.task must be one of {tuple(EXPERIMENTS)}, got {task!r}; set --config.em.task."
        )
    return EXPERIMENTS[task](
        em=config.em, sampling=config.sampling, image_shape=tuple(config.data.image_shape)
    )


def run_experiment(config, workdir: str) -> dict:
    """Runs (or resumes) the EM experiment of `config.em.task` into `workdir`.

    Returns:
      `{"laps": [lap.json dicts], "clean": ceiling or None, "zero_filled": floor or None}`.

    Raises:
      ValueError: a bad option (before anything is written; see `options`).
      training.Preempted: after a SIGTERM (rerun to resume; nothing unfinished is marked done).
    """
    experiment = make_experiment(config)
    options.check_em_options(config)
    with workdir_lock.hold(workdir):  # the laps, the baselines and the figures: one writer
        return _run_experiment(config, workdir, experiment)


def _run_experiment(config, workdir: str, experiment) -> dict:
    """`run_experiment` under the workdir's lock: the laps, the floor and ceiling, the curve."""
    x_clean = experiment.clean_data()
    problem = experiment.observe(x_clean)
    recipe = methods.make_recipe(config)
    evaluate = experiment.evaluator(workdir, x_clean)
    lap_infos = laps.run(config, workdir, problem, recipe=recipe, evaluate=evaluate)
    floor = experiment.floor(workdir, x_clean, problem)
    baseline = None
    if config.em.clean_baseline:
        baseline = report.clean_ceiling(
            config, workdir, experiment, x_clean, problem, evaluate, recipe
        )
    if storage.is_primary():
        report.save_em_curve(experiment, workdir, lap_infos, baseline, floor)
    return {"laps": lap_infos, "clean": baseline, "zero_filled": floor}
