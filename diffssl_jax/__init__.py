"""diffssl_jax: diffusion-style self-supervised learning and diffusion priors, in JAX/Flax.

`load_params(workdir, which="ema")` is the one way to get trained parameters.
"""

import os

# TensorFlow (pulled in by some tfds code paths) must never grab GPU/TPU memory from JAX.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402

# Random numbers that do not depend on how arrays are sharded (same on 1 or 8 devices).
jax.config.update("jax_threefry_partitionable", True)

from diffssl_jax.training.checkpoint import load_config, load_params  # noqa: E402

__all__ = ["load_config", "load_params"]
