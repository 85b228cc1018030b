"""EM options are checked before the workdir is written (`em.options`), with the key to fix."""

import os

import jax
import pytest

from diffssl_jax import em, methods
from diffssl_jax.configs.em.toy import get_config
from diffssl_jax.posterior.observations import random_projections


def _toy_observations(n=64):
    x = jax.random.normal(jax.random.key(0), (n, 5))
    return random_projections(1, x, obs_dim=2, noise_std=0.01).replace(noise_var=1e-4)


def _run(config, workdir):
    em.run(config, str(workdir), _toy_observations(), recipe=methods.make_recipe(config))


BAD_OPTIONS = [
    ("em.chunk_size", 0, "em.chunk_size must be an integer >= 1"),
    ("em.num_laps", -1, "em.num_laps must be an integer >= 0"),
    ("em.gaussian_iterations", 0, "em.gaussian_iterations must be an integer >= 1"),
    ("em.num_eval_samples", 0, "em.num_eval_samples must be an integer >= 1"),
    ("em.data_scale", 0.0, "em.data_scale must be a number > 0"),
    ("em.sample_bound", -1.0, "em.sample_bound must be a number >= 0"),
    ("data.image_shape", (1, 1, 4), "data.image_shape=.* make them agree"),
    ("sampling.num_steps", 0, "num_steps"),
    ("sampling.sampler", "heun", "Unknown sampler"),
    ("train.batch_size", 0, r"train.batch_size .* must be an integer >= 1"),
    ("seed", -1, r"seed must be an integer in \[0, 2\*\*32 - 1\)"),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD_OPTIONS)
def test_bad_em_options_fail_before_the_workdir_is_written(tmp_path, key, value, message):
    config = get_config("tiny")
    config.train.batch_size = 32
    if "." in key:
        group, name = key.split(".")
        config[group][name] = value
    else:
        config[key] = value
    with pytest.raises(ValueError, match=message):
        _run(config, tmp_path / "w")
    assert not os.path.exists(tmp_path / "w")


def test_a_network_that_does_not_build_fails_before_the_workdir_is_written(tmp_path):
    config = get_config("tiny")
    config.model.features = (32, -4)  # a negative layer width
    with pytest.raises((ValueError, TypeError)):
        _run(config, tmp_path / "w")
    assert not os.path.exists(tmp_path / "w")


def test_an_unknown_task_fails_before_the_workdir_is_written(tmp_path):
    config = get_config("tiny")
    config.em.task = "cifar"
    with pytest.raises(ValueError, match="em.task must be one of"):
        em.run_experiment(config, str(tmp_path / "w"))
    assert not os.path.exists(tmp_path / "w")


@pytest.mark.parametrize("name", ["sigma_min", "sigma_max"])
def test_sampling_and_training_ranges_must_correspond_in_units(tmp_path, name):
    """sampling.sigma_* (EM units) = corruption.sigma_* (network units) * em.data_scale."""
    config = get_config("tiny")
    config.train.batch_size = 32
    config.sampling[name] = config.corruption[name]  # network units given as EM units
    want = repr(config.corruption[name] * 2.0)
    with pytest.raises(ValueError, match=f"sampling.{name}=.*corruption.{name}=.*data_scale"):
        _run(config, tmp_path / "w")
    with pytest.raises(ValueError, match=f"--config.sampling.{name}={want}"):
        _run(config, tmp_path / "w")
    assert not os.path.exists(tmp_path / "w")


def test_shipped_em_configs_state_their_sigmas_in_corresponding_units():
    from diffssl_jax.configs.em import digits, mri, toy
    from diffssl_jax.em import options

    for module, variants in ((toy, ("", "tiny", "paper")), (digits, ("", "tiny", "rate50")),
                             (mri, ("", "tiny", "x8"))):  # fmt: skip
        for variant in variants:
            options.check_units(module.get_config(variant or None))
