"""The training loop's sample grids, drawn by a function the caller passes (`DrawSamples`).

`training` imports no plotting: the launchers pass `evaluation.samples.sample_grid_drawer`,
which writes `figures/samples_<step>.png` and returns the grid TensorBoard shows.
"""

import contextlib
from collections.abc import Callable

import jax
import numpy as np
from absl import logging
from etils import epath

from diffssl_jax import storage
from diffssl_jax.training import metric_writers

# `(images [N, H, W, C] in [-1, 1], path, step) -> grid [h, w, c]`: writes the sample figure
# of `step` to `path` (called on process 0 only) and returns the image TensorBoard shows.
DrawSamples = Callable[[np.ndarray, epath.Path, int], np.ndarray]


def samples_path(workdir, step: int) -> epath.Path:
    """Where the sample grid of `step` goes: `workdir/figures/samples_<step, 7 digits>.png`."""
    return storage.path(workdir) / "figures" / f"samples_{step:07d}.png"


def save_samples(draw_samples, sample_fn, state, config, workdir, step, writer):
    """Every process samples (one computation over the global mesh); process 0 draws."""
    rng = jax.random.fold_in(jax.random.key(config.seed + 1), step)
    images = jax.device_get(sample_fn(state.ema_params, rng))
    if not storage.is_primary():
        return
    path = samples_path(workdir, step)
    grid = draw_samples(np.asarray(images), path, step)
    writer.write_images(step, {"samples": grid})
    logging.info("step %d: wrote %s", step, path)


def draw_missing_final_grid(draw_samples, sample_fn, state, config, workdir, step) -> None:
    """The final sample grid of a finished run, if a kill after its last checkpoint lost it."""
    figure = samples_path(workdir, step)
    if sample_fn is None or not config.train.sample_every_steps or figure.exists():
        return
    # No purge_step: this adds the step's image to the finished run's TensorBoard events.
    writer = (
        metric_writers.TensorBoardWriter(storage.path(workdir)) if storage.is_primary() else None
    )
    with contextlib.closing(writer or metric_writers.MultiWriter([])):
        save_samples(draw_samples, sample_fn, state, config, workdir, step, writer)
