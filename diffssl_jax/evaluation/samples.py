"""Unconditional samples from a trained workdir (`launch/sample.py`)."""

import os

import jax
import numpy as np

from diffssl_jax import methods, plotting
from diffssl_jax.training.checkpoint import load_config, load_params


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
    recipe = methods.make_recipe(config)
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
    out = os.path.join(workdir, "eval")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "samples.npz")
    np.savez_compressed(path, images=images)
    figure = plotting.save_image_grid(
        images[:100],
        os.path.join(workdir, "figures", "samples_final.png"),
        title=f"{config.method} {config.sampling.sampler} {config.sampling.num_steps} steps",
    )
    return {"samples": path, "figure": figure}
