"""diffssl_jax: diffusion-style self-supervised learning and diffusion priors, in JAX/Flax.

The public API (docs/api.md lists every name with its signature):

* workdirs: ``load_config``, ``load_params`` (the one way to get trained parameters),
  ``load_features`` (frozen features), ``load_denoiser`` (a trained DDPM as a denoiser);
* training: ``make_recipe``, ``train``;
* denoisers and samplers: ``GaussianDenoiser``, ``make_vp_denoiser``, ``sigma_grid``,
  ``sample``, ``make_sampler``, ``ddpm_ancestral``, ``ddim``, ``edm_heun``, ``euler_maruyama``;
* posterior sampling: ``mmps``, ``dps``, ``pigdm``, ``tmpd``, ``diffpir``, the linear
  operators, the one problem type ``InverseProblem`` (``observe`` builds one,
  ``check_problem`` validates it), ``posterior_method`` / ``make_posterior`` (a method by
  name), ``sample_posterior``.

Names and subpackages load on first use (``lazy_loader``), so ``import diffssl_jax`` costs
little more than importing JAX.
"""

import os

import lazy_loader

__version__ = "0.1.0"

# TensorFlow (pulled in by some tfds code paths) must never grab GPU/TPU memory from JAX.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402

# Random numbers that do not depend on how arrays are sharded (same on 1 or 8 devices).
jax.config.update("jax_threefry_partitionable", True)

# The exported names, by the module that defines them (docs/api.md follows this order).
API = {
    "training.checkpoint": ["load_config", "load_params"],
    "evaluation.features": ["load_features"],
    "evaluation.priors": ["load_denoiser"],
    "methods": ["make_recipe"],
    "training.loop": ["train"],
    "sampling.denoisers": ["GaussianDenoiser", "make_vp_denoiser", "EDMDenoiser", "ScaledDenoiser"],
    "sampling.samplers": [
        "sigma_grid",
        "sigmas_from_config",
        "sample",
        "make_sampler",
        "ddpm_ancestral",
        "ddim",
        "edm_heun",
        "euler_maruyama",
    ],
    "posterior.mmps": ["mmps"],
    "posterior.baselines": ["dps", "pigdm", "tmpd", "diffpir"],
    "posterior.operators": [
        "Identity",
        "PixelMask",
        "BoxDownsample",
        "Blur",
        "DenseMatrix",
        "UndersampledFourier",
        "box_mask",
        "random_pixel_mask",
        "mri_column_mask",
        "gaussian_kernel",
        "motion_kernel",
        "check_operator",
    ],
    "posterior.problems": ["InverseProblem", "check_problem"],
    "posterior.observations": ["observe"],
    "posterior.methods": ["posterior_method", "make_posterior"],
    "posterior.sampling": ["sample_posterior"],
}

# Submodules reachable as attributes without an explicit import (``diffssl_jax.training``).
SUBMODULES = [
    "corruptions",
    "data",
    "em",
    "evaluation",
    "methods",
    "models",
    "objectives",
    "plotting",
    "posterior",
    "recipe_inputs",
    "sampling",
    "training",
]

__getattr__, _dir, _ = lazy_loader.attach(__name__, SUBMODULES, API)
__all__ = sorted(name for names in API.values() for name in names)


def __dir__():
    """The exported names, the subpackages and the module's own attributes."""
    return sorted(set(_dir()) | set(globals()))
