"""Posterior sampling of a Gaussian prior with MMPS: the samples have the exact posterior's
mean and covariance; a batch of observations vmaps and shards identically."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO_ROOT

from diffssl_jax.posterior import operators as ops
from diffssl_jax.posterior.methods import posterior_method
from diffssl_jax.posterior.mmps import mmps
from diffssl_jax.posterior.problems import InverseProblem
from diffssl_jax.posterior.sampling import sample_posterior
from diffssl_jax.sampling import samplers
from diffssl_jax.sampling.denoisers import GaussianDenoiser

DIM, OBS_DIM, NOISE_VAR = 4, 2, 0.1**2


def _problem(seed=0, num_observations=2):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    cov = (q * np.array([0.1, 0.4, 1.0, 2.0])) @ q.T
    mean = 0.3 * rng.normal(size=DIM)
    mats = rng.normal(size=(num_observations, OBS_DIM, DIM)) / np.sqrt(DIM)
    x0 = mean + rng.normal(size=(num_observations, DIM)) @ np.linalg.cholesky(cov).T
    ys = np.einsum("nij,nj->ni", mats, x0) + 0.1 * rng.normal(size=(num_observations, OBS_DIM))
    return mean, cov, mats, ys


def _exact_posterior(mean, cov, a, y):
    precision = np.linalg.inv(cov) + a.T @ a / NOISE_VAR
    post_cov = np.linalg.inv(precision)
    return post_cov @ (np.linalg.solve(cov, mean) + a.T @ y / NOISE_VAR), post_cov


def test_mmps_samples_match_the_exact_gaussian_posterior():
    """n = 4000 samples per observation, 256 Heun steps (discretisation error < 1e-4).

    Tolerances: 5 Monte Carlo standard errors for the mean and the covariance entries.
    """
    n = 4000
    with jax.enable_x64(True):
        mean, cov, mats, ys = _problem()
        prior = GaussianDenoiser(jnp.asarray(mean), jnp.asarray(cov))
        problem = InverseProblem(
            y=jnp.asarray(ys),
            operators=ops.DenseMatrix(jnp.asarray(mats)),
            noise_var=NOISE_VAR,
            shape=(DIM,),
        )
        samples = sample_posterior(
            posterior_method("mmps", cg_maxiter=OBS_DIM),
            prior,
            problem,
            rng=jax.random.key(0),
            sigmas=samplers.sigma_grid("karras", 256, 1e-3, 40.0),
            sampler="edm_heun",
            num_per_observation=n,
        )
        assert samples.shape == (2, n, DIM) and samples.dtype == jnp.float64
        for a, y, xs in zip(mats, ys, np.asarray(samples), strict=True):
            post_mean, post_cov = _exact_posterior(mean, cov, a, y)
            var = np.diag(post_cov)
            np.testing.assert_array_less(np.abs(xs.mean(0) - post_mean), 5 * np.sqrt(var / n))
            cov_se = np.sqrt((np.outer(var, var) + post_cov**2) / n)
            np.testing.assert_array_less(np.abs(np.cov(xs, rowvar=False) - post_cov), 5 * cov_se)


def test_bad_batches_are_refused_before_sampling():
    mean, cov, mats, ys = _problem()
    prior = GaussianDenoiser(jnp.asarray(mean, jnp.float32), jnp.asarray(cov, jnp.float32))
    kwargs = dict(rng=jax.random.key(0), sigmas=samplers.sigma_grid("karras", 4, 0.01, 10.0))
    operators = ops.DenseMatrix(jnp.asarray(mats, jnp.float32))

    def problem(y, noise_var=0.01):
        return InverseProblem(y=y, operators=operators, noise_var=noise_var, shape=(DIM,))

    with pytest.raises(ValueError, match="operators and y disagree"):
        sample_posterior(mmps, prior, problem(jnp.asarray(ys[:1], jnp.float32)), **kwargs)
    with pytest.raises(ValueError, match="does not match|y has shape"):
        bad_y = jnp.zeros((2, OBS_DIM + 1), jnp.float32)
        sample_posterior(mmps, prior, problem(bad_y), **kwargs)
    with pytest.raises(ValueError, match=">= 0"):
        sample_posterior(mmps, prior, problem(jnp.asarray(ys, jnp.float32), -1.0), **kwargs)
    with pytest.raises(ValueError, match="unknown posterior method 'ddrm'"):
        sample_posterior("ddrm", prior, problem(jnp.asarray(ys, jnp.float32)), **kwargs)


SCRIPT = textwrap.dedent("""
    import functools, jax, jax.numpy as jnp, numpy as np
    from diffssl_jax.posterior import operators as ops
    from diffssl_jax.posterior.methods import posterior_method
    from diffssl_jax.posterior.problems import InverseProblem
    from diffssl_jax.posterior.sampling import sample_posterior
    from diffssl_jax.sampling import samplers
    from diffssl_jax.sampling.denoisers import GaussianDenoiser
    from diffssl_jax import parallel

    assert jax.device_count() == 8
    rng = np.random.default_rng(0)
    prior = GaussianDenoiser(jnp.zeros(4), jnp.eye(4))
    ops_ = ops.DenseMatrix(jnp.asarray(rng.normal(size=(5, 2, 4)), jnp.float32))
    ys = jnp.asarray(rng.normal(size=(5, 2)), jnp.float32)
    problem = InverseProblem(y=ys, operators=ops_, noise_var=0.01, shape=(4,))
    run = functools.partial(
        sample_posterior, posterior_method("mmps", cg_maxiter=2), prior, problem,
        rng=jax.random.key(3), sigmas=samplers.sigma_grid("karras", 8, 0.01, 10.0),
        num_per_observation=3)
    eight, one = run(mesh=parallel.make_mesh(8)), run(mesh=parallel.make_mesh(1))
    assert eight.shape == (5, 3, 4)
    np.testing.assert_allclose(eight, one, rtol=1e-5, atol=1e-6)
    print("OK")
""")


def test_eight_devices_give_the_samples_of_one():
    """5 observations on 8 fake CPU devices (padded to 8) equal the single-device result."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_new_observations_and_parameters_reuse_the_compiled_sampler():
    """Same method (equal `posterior_method` values), structure and shapes (EM's chunks and
    laps): one compilation."""
    from diffssl_jax.posterior import sampling

    mean, cov, mats, ys = _problem(seed=1, num_observations=4)
    method = posterior_method("mmps", cg_maxiter=2)
    kwargs = dict(rng=jax.random.key(0), sigmas=samplers.sigma_grid("karras", 4, 0.01, 10.0))
    outputs = []
    for scale in (1.0, 2.0):
        prior = GaussianDenoiser(
            jnp.asarray(mean, jnp.float32), jnp.asarray(scale * cov, jnp.float32)
        )
        chunk = slice(0, 2) if scale == 1.0 else slice(2, 4)
        problem = InverseProblem(
            y=jnp.asarray(ys[chunk], jnp.float32),
            operators=ops.DenseMatrix(jnp.asarray(mats[chunk], jnp.float32)),
            noise_var=0.01,
            shape=(DIM,),
        )
        before = sampling._cached_sampler.cache_info()
        outputs.append(sample_posterior(method, prior, problem, **kwargs))
        after = sampling._cached_sampler.cache_info()
    assert after.hits == before.hits + 1 and after.misses == before.misses
    assert not np.allclose(outputs[0], outputs[1])  # new arrays really entered the program
