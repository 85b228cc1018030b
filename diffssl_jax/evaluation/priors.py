"""Priors as denoisers: ``load_denoiser(workdir)`` (a trained prior), ``fit_gaussian_prior``
(a Gaussian fitted to clean training images) and ``load_prior`` (either, by name).

The counterpart of ``load_features`` for sampling: a trained workdir whose recipe has a
``denoiser`` (DDPM, EDM) becomes the denoiser contract ``denoiser(x, sigma) -> x0_hat`` (one
example, ``x = x0 + sigma * eps``) that every sampler, posterior method and EM lap consumes
(docs/architecture.md). The Gaussian prior has the same contract and the same units (images
in ``[-1, 1]``, ``sigma`` in those units), so the posterior runner takes either.
"""

import jax
import jax.numpy as jnp
import numpy as np

from diffssl_jax import recipe_inputs
from diffssl_jax.data.sources import make_source
from diffssl_jax.sampling.denoisers import GaussianDenoiser, ScaledDenoiser
from diffssl_jax.training.checkpoint import load_config, load_params

PRIORS = ("trained", "gaussian")
# Added to the fitted covariance's diagonal (data units squared): below the variance
# (2/255)^2 / 12 = 5.1e-6 of 8-bit quantisation in [-1, 1] units, so it changes no direction
# the data resolve, and it makes the covariance of rank-deficient data (the 16x16 digits span
# 64 dimensions) positive definite.
GAUSSIAN_RIDGE = 1e-6
# A problem's dataset -> the dataset whose train split its prior learns from (default: itself).
TRAINING_DATASET = {"shepp_logan": "phantoms"}


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


def fit_gaussian_prior(images, ridge=GAUSSIAN_RIDGE):
    """The Gaussian ``N(mu, Sigma + ridge I)`` fitted to ``images`` as a denoiser on one image.

    Maths: ``mu`` and ``Sigma`` are the empirical mean and unbiased covariance of the flattened
    images (``GaussianDenoiser.fit``); the denoiser is the exact posterior mean
    ``D(x, sigma) = x - sigma^2 (Sigma + ridge I + sigma^2 I)^-1 (x - mu)`` of that Gaussian
    (docs/methods.md E.1), applied to ``x`` reshaped to a vector and reshaped back.

    Args:
      images: ``[N, H, W, C]`` clean images in data units (``[-1, 1]``, as a trained prior's),
        ``N >= 2``.
      ridge: added to the covariance's diagonal, ``>= 0`` (``GAUSSIAN_RIDGE``: why its size).

    Returns:
      A ``ScaledDenoiser`` (scale 1) around the ``GaussianDenoiser``, acting on ``[H, W, C]``.
    """
    images = np.asarray(images)
    if images.ndim != 4 or len(images) < 2:
        raise ValueError(f"fit_gaussian_prior needs images [N >= 2, H, W, C]; got {images.shape}.")
    flat = images.reshape(len(images), -1)
    return ScaledDenoiser(GaussianDenoiser.fit(flat, ridge=ridge), (flat.shape[1],), 1.0)


def gaussian_prior(dataset, ridge=GAUSSIAN_RIDGE):
    """``fit_gaussian_prior`` of the train split of ``dataset``'s training data.

    Args:
      dataset: a problem config's ``data.dataset`` (``digits``, ``phantoms``, ``patches``;
        ``shepp_logan`` is fitted to the phantoms, the data of its trained prior), at the
        dataset's own image size.
      ridge: see ``fit_gaussian_prior``.

    Returns:
      ``(denoiser, image_shape, record)``; ``record`` says what was fitted, for the outputs.
    """
    name = TRAINING_DATASET.get(dataset, dataset)
    images = make_source(name, "train").images
    record = {
        "kind": "gaussian",
        "fitted_to": f"{name}/train",
        "num_images": len(images),
        "ridge": ridge,
    }
    return fit_gaussian_prior(images, ridge), tuple(images.shape[1:]), record


def load_prior(kind, workdir, dataset):
    """The prior of a posterior run: ``(denoiser, image_shape, record)``, in data units.

    Args:
      kind: ``"trained"`` (``load_denoiser(workdir)``'s EMA parameters) or ``"gaussian"``
        (``gaussian_prior(dataset)``; ``workdir`` is not read).
      workdir: the trained workdir (``kind="trained"``).
      dataset: the problem's ``data.dataset`` (``kind="gaussian"``).

    Returns:
      The denoiser on one image, the image shape it acts on, and a JSON-ready record of the
      prior (``{"kind": ..., ...}``).
    """
    if kind not in PRIORS:
        raise ValueError(f"unknown prior {kind!r}; valid priors: {PRIORS}.")
    if kind == "gaussian":
        return gaussian_prior(dataset)
    denoiser, config = load_denoiser(workdir)
    record = {"kind": "trained", "workdir": str(workdir), "method": config.method}
    return denoiser, tuple(config.data.image_shape), record
