"""Trained priors as denoisers: ``load_denoiser(workdir)``.

The counterpart of ``load_features`` for sampling: a trained workdir whose recipe has a
``denoiser`` (DDPM, EDM) becomes the denoiser contract ``denoiser(x, sigma) -> x0_hat`` (one
example, ``x = x0 + sigma * eps``) that every sampler, posterior method and EM lap consumes
(docs/architecture.md).
"""

import jax
import jax.numpy as jnp

from diffssl_jax import recipe_inputs
from diffssl_jax.training.checkpoint import load_config, load_params


def load_denoiser(workdir, which="ema", step=None):
    """The denoiser ``D(x, sigma) -> x0_hat`` of a trained workdir, and its config.

    The recipe's ``denoiser(params)`` (``Recipe.denoiser``; DDPM: the U-Net in VP form, through
    ``sampling.denoisers.make_vp_denoiser``) with the workdir's EMA (or raw) parameters.

    Args:
      workdir: a training workdir (``config.json`` and ``checkpoints/``) of a method whose
        recipe has a denoiser.
      which: ``"ema"`` (what sampling and evaluation use) or ``"params"``.
      step: the checkpoint step; None for the latest.

    Returns:
      ``(denoiser, config)``: a denoiser pytree acting on one example of shape
      ``config.data.image_shape``, and the workdir's config.

    Raises:
      ValueError: if the workdir's recipe has no denoiser (it is not a Gaussian denoiser).
      FileNotFoundError: if ``workdir`` is not a workdir.
    """
    config = load_config(workdir)
    recipe = recipe_inputs.load_recipe(workdir, config)
    if recipe.denoiser is None:
        raise ValueError(
            f"posterior sampling needs a Gaussian-denoiser prior (a recipe with a denoiser, e.g. "
            f"a DDPM prior); {workdir!r} trained {config.method!r}, whose recipe has none."
        )
    params = jax.tree.map(jnp.asarray, load_params(workdir, step=step, which=which))
    return recipe.denoiser(params), config
