"""Trained priors as denoisers: ``load_denoiser(workdir)``.

The counterpart of ``load_features`` for sampling: a trained DDPM workdir becomes the denoiser
contract ``denoiser(x, sigma) -> x0_hat`` (one example, ``x = x0 + sigma * eps``) that every
sampler, posterior method and EM lap consumes (docs/architecture.md).
"""

import jax
import jax.numpy as jnp

from diffssl_jax.methods import ddpm
from diffssl_jax.training.checkpoint import load_config, load_params


def load_denoiser(workdir, which="ema", step=None):
    """The denoiser ``D(x, sigma) -> x0_hat`` of a trained DDPM workdir, and its config.

    ``methods.ddpm.make_denoiser`` (the U-Net in VP form, through
    ``sampling.denoisers.make_vp_denoiser``) with the workdir's EMA (or raw) parameters.

    Args:
      workdir: a DDPM training workdir (``config.json`` and ``checkpoints/``).
      which: ``"ema"`` (what sampling and evaluation use) or ``"params"``.
      step: the checkpoint step; None for the latest.

    Returns:
      ``(denoiser, config)``: a ``VPDenoiser`` pytree acting on one example of shape
      ``config.data.image_shape``, and the workdir's config.

    Raises:
      ValueError: if the workdir's method is not a Gaussian denoiser (``ddpm``).
      FileNotFoundError: if ``workdir`` is not a workdir.
    """
    config = load_config(workdir)
    if config.method != "ddpm":
        raise ValueError(
            f"posterior sampling needs a DDPM prior (a denoiser); {workdir!r} trained "
            f"{config.method!r}."
        )
    params = jax.tree.map(jnp.asarray, load_params(workdir, step=step, which=which))
    return ddpm.make_denoiser(config, params), config
