"""Test-wide settings: fast CPU compilation and absl flags marked as parsed (grain needs it);
helpers several test files share: loading a script of `scripts/`, training a tiny DiTi."""

import functools
import importlib.util
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
from absl import flags  # noqa: E402

jax.config.update("jax_disable_most_optimizations", True)
jax.config.update("jax_threefry_partitionable", True)

if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(REPO_ROOT, "scripts")


@functools.cache  # once per script: scripts define absl flags
def load_script(name: str):
    """`scripts/<name>.py` as a module (scripts/ on sys.path for its sibling imports)."""
    if SCRIPTS not in sys.path:
        sys.path.insert(0, SCRIPTS)
    spec = importlib.util.spec_from_file_location(name, os.path.join(SCRIPTS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_tiny_diti(root, num_steps: int) -> str:
    """A tiny DDPM prior (2 steps, `root/prior`) and a tiny DiTi on it trained for
    `num_steps` steps (`root/diti`); returns the DiTi workdir."""
    from diffssl_jax import methods, recipe_inputs, training
    from diffssl_jax.configs.ddpm.digits import get_config as get_ddpm_config
    from diffssl_jax.configs.diti.digits import get_config as get_diti_config

    prior = get_ddpm_config("tiny")
    prior.train.num_steps, prior.train.sample_every_steps = 2, 0
    training.train(prior, os.path.join(root, "prior"), methods.make_recipe(prior))
    config = get_diti_config("tiny")
    config.diti.prior_workdir = os.path.join(root, "prior")
    config.train.num_steps = num_steps
    workdir = os.path.join(root, "diti")
    inputs = recipe_inputs.prepare(config, workdir)
    training.train(config, workdir, methods.make_recipe(config, inputs))
    return workdir
