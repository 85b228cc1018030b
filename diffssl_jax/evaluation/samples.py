"""Unconditional samples: from a trained workdir (`launch/sample.py`), and the training
loop's sample grids (`sample_grid_drawer`, passed to `training.train` by the launchers)."""

import jax
import numpy as np

from diffssl_jax import plotting, recipe_inputs, storage
from diffssl_jax.training.checkpoint import load_config, load_params


def sample_grid_drawer(method: str):
    """The `training.train(draw_samples=...)` of the launchers: a titled PNG grid of the EMA
    samples at `path` (`plotting.save_image_grid`) and the grid image for TensorBoard."""

    def draw(images, path, step):
        title = f"{method} samples (EMA parameters)"
        plotting.save_image_grid(images, path, title=title, step=step)
        return plotting.image_grid(images)

    return draw


def write_samples(
    workdir: str,
    *,
    num_samples: int,
    seed: int = 0,
    sampler: str | None = None,
    num_steps: int | None = None,
    batch_size: int = 256,
) -> dict:
    """Draws samples with the EMA parameters; writes `eval/samples.npz` and a grid figure.

    The files are written by process 0 only (`storage.is_primary`); `workdir` may be a
    `gs://` URI.

    Args:
        workdir: a trained workdir.
        num_samples: how many images.
        seed: sampling seed (batches use `fold_in(key(seed), batch_index)`).
        sampler, num_steps: override the workdir's `config.sampling` when given.
        batch_size: images per jitted sampler call (bounds memory).

    Returns:
        {"samples": path of the .npz, "figure": path of the PNG}.
    """
    config = load_config(workdir)
    if sampler:
        config.sampling.sampler = sampler
    if num_steps:
        config.sampling.num_steps = num_steps
    recipe = recipe_inputs.load_recipe(workdir, config)
    if recipe.sample is None:
        raise ValueError(f"method {config.method!r} is not generative: it has no sampler")
    params = load_params(workdir, which="ema")
    sample_batch = jax.jit(recipe.sample, static_argnums=2)
    chunks, done = [], 0
    while done < num_samples:
        num = min(batch_size, num_samples - done)
        rng = jax.random.fold_in(jax.random.key(seed), len(chunks))
        chunks.append(np.asarray(sample_batch(params, rng, num)))
        done += num
    images = np.concatenate(chunks)
    path = storage.path(workdir) / "eval" / "samples.npz"
    figure = storage.path(workdir) / "figures" / "samples_final.png"
    if storage.is_primary():
        storage.save_npz(path, images=images)
        plotting.save_image_grid(
            images[:100],
            figure,
            title=f"{config.method} samples: {config.sampling.sampler} sampler, "
            f"{config.sampling.num_steps} steps, EMA parameters",
        )
    return {"samples": str(path), "figure": str(figure)}
