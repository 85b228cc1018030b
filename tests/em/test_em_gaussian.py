"""Moment-matching EM of the Gaussian prior (em.gaussian) and the E-step's pooled posteriors."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from diffssl_jax import em
from diffssl_jax.configs.em.defaults import get_em_base_config
from diffssl_jax.em import gaussian as em_gaussian
from diffssl_jax.posterior import observations
from diffssl_jax.posterior.operators import DenseMatrix
from diffssl_jax.sampling.denoisers import GaussianDenoiser

D, M = 5, 2


def _gaussian(rng):
    factor = jax.random.normal(rng, (D, D)) / np.sqrt(D)
    cov = factor @ factor.T + 0.3 * jnp.eye(D)
    mean = jnp.linspace(-0.5, 0.7, D)
    return mean, cov


def test_gaussian_em_recovers_mean_and_covariance():
    """N = 16384 Gaussian points seen through random 2x5 projections (noise 0.01).

    Tolerance: |mu - mu_true|_inf <= 0.05 and |Sigma - Sigma_true|_F <= 0.05 |Sigma_true|_F,
    about 3x the Monte Carlo error of the maximum-likelihood estimate at this N (measured).
    """
    with jax.enable_x64(True):
        mean, cov = _gaussian(jax.random.key(1))
        n = 16384
        x = mean + jax.random.normal(jax.random.key(2), (n, D)) @ jnp.linalg.cholesky(cov).T
        observed = observations.random_projections(3, x, obs_dim=M, noise_std=0.01)
        fit_mean, fit_cov = em_gaussian.fit_gaussian(
            observed.operators,
            observed.y,
            1e-4,
            shape=(D,),
            num_iterations=60,
            ridge=0.0,
            chunk=4096,
        )
        assert fit_mean.dtype == jnp.float64
        assert float(jnp.max(jnp.abs(fit_mean - mean))) <= 0.05
        rel = float(jnp.linalg.norm(fit_cov - cov) / jnp.linalg.norm(cov))
        assert rel <= 0.05, rel


def test_gaussian_em_fixed_point_with_full_observations():
    """With A = I and no noise the posterior is exact: one step gives the sample moments."""
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(4), (300, 3)) * jnp.array([1.0, 2.0, 0.5])
        ops = DenseMatrix(matrix=jnp.broadcast_to(jnp.eye(3), (300, 3, 3)))
        mean, cov = em_gaussian.em_iteration(
            jnp.zeros(3), jnp.eye(3), ops, x, 1e-12, shape=(3,), chunk=128
        )
        np.testing.assert_allclose(mean, x.mean(0), atol=1e-9)
        np.testing.assert_allclose(cov, jnp.cov(x.T, bias=True), atol=1e-9)


def test_dropping_zero_rows_leaves_the_iteration_exact():
    """Masks and 4x MRI: an iteration on the support rows only equals the full one."""
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(5), (24, 8, 8, 1))
        rng_mean, rng_cov = jax.random.split(jax.random.key(6))
        mean = jax.random.normal(rng_mean, (64,))
        root = jax.random.normal(rng_cov, (64, 64)) / 8
        cov = root @ root.T + 0.1 * jnp.eye(64)
        observed = {
            "mask": observations.pixel_inpainting(1, x, noise_std=0.1, rate=0.75),
            "mri": observations.undersampled_mri(
                2, x, noise_std=0.1, acceleration=4.0, center_fraction=0.125
            ),
        }
        for name, problem in observed.items():
            y, ops = problem.y, problem.operators
            rows = em_gaussian.support_size(ops, (8, 8, 1), jnp.float64, chunk=10)
            full_rows = 64 if name == "mask" else 128
            assert rows < full_rows / 2, (name, rows)
            common = dict(shape=(8, 8, 1), chunk=8)
            full = em_gaussian.em_iteration(mean, cov, ops, y, 0.01, **common)
            reduced = em_gaussian.em_iteration(mean, cov, ops, y, 0.01, rows=rows, **common)
            for a, b in zip(full, reduced, strict=True):
                np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10, err_msg=name)


def _estep_config():
    config = ml_collections.ConfigDict()
    config.em = {"chunk_size": 1024}
    config.sampling = {
        "grid": "loglinear",
        "num_steps": 64,
        "sigma_min": 1e-3,
        "sigma_max": 20.0,
        "sampler": "ddpm_ancestral",
    }
    config.posterior = get_em_base_config().posterior
    config.posterior.cg_maxiter = M
    return config


def test_pooled_posterior_samples_reproduce_the_prior(tmp_path):
    """x_i ~ p(x), y_i = A_i x_i + n, s_i ~ p(x | y_i): the pooled s_i follow p(x).

    With the true Gaussian prior and cg_maxiter = dim(y), MMPS is the exact posterior
    denoiser; the check is the pooled mean within 5 standard errors and the covariance within
    0.1 relative Frobenius error (MC error at N = 2048 is about 0.04).
    """
    with jax.enable_x64(True):
        mean, cov = _gaussian(jax.random.key(5))
        n = 2048
        x = mean + jax.random.normal(jax.random.key(6), (n, D)) @ jnp.linalg.cholesky(cov).T
        obs = observations.random_projections(7, x, obs_dim=M, noise_std=0.1)
        config = _estep_config()
        samples = em.e_step(
            GaussianDenoiser(mean, cov),
            obs.replace(noise_var=0.01),
            rng=jax.random.key(8),
            sampling=config.sampling,
            posterior=config.posterior,
            chunk_size=config.em.chunk_size,
            directory=str(tmp_path),
        )
    assert samples.shape == (n, D) and samples.dtype == np.float64
    stderr = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(samples.mean(0) - mean) <= 5 * stderr)
    rel = np.linalg.norm(np.cov(samples.T) - cov) / np.linalg.norm(cov)
    assert rel <= 0.1, rel
