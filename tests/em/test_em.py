"""The EM loop: resume after SIGKILL, bad input, sample filtering, lap seeds."""

import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO_ROOT

from diffssl_jax import em
from diffssl_jax.configs.em.toy import get_config
from diffssl_jax.posterior.observations import random_projections
from diffssl_jax.posterior.problems import check_problem
from diffssl_jax.sampling.denoisers import GaussianDenoiser, ScaledDenoiser

# One lap after the Gaussian one, 4 sampler steps, 6 M-step steps checkpointed every 2.
TINY = [
    "--config=configs/em/toy.py:tiny",
    "--config.em.num_laps=1",
    "--config.sampling.num_steps=4",
    "--config.em.num_eval_samples=64",
]


def _launch(workdir):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
    command = [sys.executable, "-m", "launch.em", f"--workdir={workdir}", *TINY]
    return subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _finish(process):
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()[-3000:]


@pytest.mark.slow
def test_killed_run_resumes_with_the_same_samples(tmp_path):
    """SIGKILL inside lap 1 (after its M-step's first checkpoint), rerun: same samples."""
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    first, victim = _launch(reference), _launch(killed)
    marker = killed / "em" / "lap_001" / "train" / "checkpoints" / "2"
    deadline = time.time() + 240
    while not marker.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the run never reached lap 1's first checkpoint"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert em.completed_laps(str(killed)) == [0]
    _finish(first)
    _finish(_launch(killed))
    for lap in (0, 1):
        expected, _ = em.load_lap(str(reference), lap)
        resumed, info = em.load_lap(str(killed), lap)
        np.testing.assert_array_equal(resumed, expected)
        assert info["num_kept"] == len(resumed)


def _toy_observations(n=64):
    x = jax.random.normal(jax.random.key(0), (n, 5))
    return random_projections(1, x, obs_dim=2, noise_std=0.01).replace(noise_var=1e-4)


def test_operators_and_y_that_disagree_are_rejected():
    obs = _toy_observations()
    with pytest.raises(ValueError, match="disagree"):
        check_problem(obs.replace(y=obs.y[:10]))
    with pytest.raises(ValueError, match=r"maps \[5\] to \[2\] but y has shape \[3\]"):
        check_problem(obs.replace(y=jnp.zeros((64, 3))))
    with pytest.raises(ValueError, match="non-empty"):
        check_problem(obs.replace(y=jnp.zeros((0, 2))))
    with pytest.raises(ValueError, match="NaN"):
        check_problem(obs.replace(y=obs.y.at[3, 0].set(jnp.nan)))


def _nan_denoiser(x, sigma):
    return x * jnp.nan


def _config(workdir_batch=32):
    config = get_config("tiny")
    config.sampling.num_steps = 4
    config.em.chunk_size = 64
    config.train.batch_size = workdir_batch
    return config


def test_all_nan_lap_fails_clearly_and_keeps_the_last_good_lap(tmp_path):
    obs, config, workdir = _toy_observations(), _config(), str(tmp_path)
    good = ScaledDenoiser(GaussianDenoiser(jnp.zeros(5), jnp.eye(5)), (5,), 1.0)
    em.run_lap(0, good, obs, config, workdir, evaluate=None)
    with pytest.raises(em.EMError, match="lap 1: all 64 posterior samples are non-finite"):
        em.run_lap(1, _nan_denoiser, obs, config, workdir, evaluate=None)
    assert em.completed_laps(workdir) == [0]
    samples, info = em.load_lap(workdir, 0)
    assert samples.shape == (64, 5) and info["num_kept"] == 64
    # The lap records the grid its E-step used, in EM data units (sampling.sigma_*).
    assert info["sampling/sigmas"] == {
        "grid": "loglinear",
        "num_steps": 4,
        "sigma_min": 1e-3,
        "sigma_max": 10.0,
        "unit": "EM data units",
    }


def test_empty_lap_and_too_large_batches_fail_clearly(tmp_path):
    obs, workdir = _toy_observations(), str(tmp_path)
    with pytest.raises(em.EMError, match="at least train.batch_size=32"):
        em.m_step(_config(), workdir, 1, np.zeros((0, 5), np.float32), recipe=None)
    with pytest.raises(ValueError, match="more samples per M-step batch than there are"):
        em.run(_config(workdir_batch=128), workdir, obs, recipe=None)
    config = _config()
    config.posterior.cg_max_residual_growth = 0.5
    with pytest.raises(ValueError, match="cg_max_residual_growth must be None or >= 1"):
        em.run(config, workdir, obs, recipe=None)
    config = _config()
    config.posterior.safeguard = "steihaug"
    with pytest.raises(ValueError, match="safeguard must be one of"):
        em.run(config, workdir, obs, recipe=None)
    assert not os.listdir(workdir)  # nothing written before the error


def test_filter_samples_drops_and_counts():
    samples = np.array([[0.0, 1.0], [np.nan, 0.0], [4.0, 0.0], [np.inf, 9.0], [-2.9, 2.9]])
    kept, counts = em.filter_samples(samples, bound=3.0)
    np.testing.assert_array_equal(kept, samples[[0, 4]])
    assert counts == {"num_nonfinite": 2, "num_out_of_range": 1, "num_kept": 2}
    assert em.filter_samples(samples[:1], None)[1]["num_kept"] == 1


def test_lap_seeds_come_from_fold_in():
    assert em.lap_seed(0, 1) == em.lap_seed(0, 1) != em.lap_seed(0, 2) != em.lap_seed(1, 2)
    key = jax.random.fold_in(jax.random.key(3), 4)
    np.testing.assert_array_equal(jax.random.key_data(em.lap_key(3, 4)), jax.random.key_data(key))


def test_laps_and_chunks_reuse_one_compiled_sampler(tmp_path):
    """Two laps' priors (the recipe's denoiser of new parameters) over two chunks each: the
    compiled E-step sampler is built once (EDM's `denoiser(params)` shares one apply_fn)."""
    from diffssl_jax import methods
    from diffssl_jax.posterior import sampling

    config = get_config("tiny")
    with config.unlocked():
        config.sampling.num_steps = 2
    experiment = em.make_experiment(config)
    problem = experiment.observe(experiment.clean_data()).take(0, 8)
    recipe = methods.make_recipe(config)
    shape, scale = tuple(config.data.image_shape), config.em.data_scale
    counts = []
    for lap in (1, 2):
        prior = ScaledDenoiser(recipe.denoiser(recipe.init(jax.random.key(lap))), shape, scale)
        counts.append(sampling._cached_sampler.cache_info())
        em.e_step(
            prior,
            problem,
            rng=jax.random.key(0),
            sampling=config.sampling,
            posterior=config.posterior,
            chunk_size=4,
            directory=tmp_path / f"lap{lap}",
        )
    after = sampling._cached_sampler.cache_info()
    assert after.misses == counts[1].misses and after.hits == counts[1].hits + 2
