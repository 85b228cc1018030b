"""Test-wide settings: fast CPU compilation and absl flags marked as parsed (grain needs it)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
from absl import flags  # noqa: E402

jax.config.update("jax_disable_most_optimizations", True)
jax.config.update("jax_threefry_partitionable", True)

if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
