"""Samplers with the exact Gaussian denoiser: moments by Monte Carlo and exact transport."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax.sampling import samplers
from diffssl_jax.sampling.denoisers import GaussianDenoiser

MEAN = np.array([1.0, -2.0, 0.5])
CHOL = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.3, 0.5, 0.4]])
COV = CHOL @ CHOL.T
SIGMA_MAX, SIGMA_MIN = 80.0, 1e-3
NAMES = ["ddpm_ancestral", "ddim", "edm_heun", "euler_maruyama"]


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


@pytest.fixture
def denoiser():
    return GaussianDenoiser(jnp.asarray(MEAN), jnp.asarray(COV))


def test_karras_grid_is_edm_eq_5():
    sigmas = np.asarray(samplers.sigma_grid("karras", 5, 0.002, 80.0, rho=7.0))
    i = np.arange(5)
    expected = (80.0 ** (1 / 7) + i / 4 * (0.002 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7
    np.testing.assert_allclose(sigmas[:-1], expected, rtol=1e-13)
    assert sigmas.shape == (6,) and sigmas[-1] == 0.0
    np.testing.assert_array_equal(sigmas[[0, 4]], [80.0, 0.002])


def test_loglinear_grid_is_geometric():
    sigmas = np.asarray(samplers.sigma_grid("loglinear", 6, 0.01, 10.0))
    assert sigmas.shape == (7,) and sigmas[-1] == 0.0
    np.testing.assert_allclose(sigmas[1:-1] / sigmas[:-2], (1e-3) ** (1 / 5), rtol=1e-13)
    np.testing.assert_array_equal(sigmas[[0, 5]], [10.0, 0.01])
    np.testing.assert_array_equal(samplers.sigma_grid("karras", 1, 0.01, 10.0), [10.0, 0.0])


@pytest.mark.parametrize(
    "args, match",
    [
        (("cosine", 10, 0.01, 10.0), "valid kinds are"),
        (("karras", 0, 0.01, 10.0), "num_steps must be an integer >= 1"),
        (("karras", 2.5, 0.01, 10.0), "num_steps must be an integer >= 1"),
        (("karras", 10, 10.0, 0.01), "0 < sigma_min < sigma_max"),
        (("loglinear", 10, 0.0, 1.0), "0 < sigma_min < sigma_max"),
        (("karras", 10, 0.01, 10.0, -7.0), "rho must be positive"),
    ],
)
def test_sigma_grid_errors(args, match):
    with pytest.raises(ValueError, match=match):
        samplers.sigma_grid(*args)


@pytest.mark.parametrize(
    "sigmas, match",
    [
        (np.ones((2, 2)), "1-D array of at least 2"),
        (np.array([0.0]), "1-D array of at least 2"),
        (np.array([2.0, 1.0, 0.5]), "end with exactly 0"),
        (np.array([2.0, 2.0, 0.0]), "strictly decreasing"),
        (np.array([1.0, 2.0, 0.0]), "strictly decreasing"),
        (np.array([np.inf, 1.0, 0.0]), "finite"),
    ],
)
@pytest.mark.parametrize("name", NAMES)
def test_samplers_reject_bad_grids(denoiser, sigmas, match, name):
    with pytest.raises(ValueError, match=match):
        samplers.make_sampler(name)(denoiser, jax.random.key(0), jnp.zeros(3), sigmas)


def test_make_sampler_and_sample_errors(denoiser):
    assert samplers.make_sampler("edm_heun") is samplers.edm_heun
    with pytest.raises(ValueError, match="Unknown sampler 'heun'.*valid names"):
        samplers.make_sampler("heun")
    sigmas = samplers.sigma_grid("karras", 4, 0.01, 10.0)
    with pytest.raises(ValueError, match="num must be an integer >= 1"):
        samplers.sample(denoiser, jax.random.key(0), (3,), sigmas, "ddim", 0)
    with pytest.raises(ValueError, match="does not broadcast"):
        samplers.sample(denoiser, jax.random.key(0), (3,), sigmas, "ddim", 2, mean=jnp.ones(2))


@pytest.mark.parametrize("name", NAMES)
def test_point_mass_is_reached_exactly(name):
    """cov = 0: the denoiser always returns the mean, so must every sampler's last step."""
    point = GaussianDenoiser(jnp.asarray(MEAN), jnp.zeros((3, 3)))
    sigmas = samplers.sigma_grid("karras", 8, SIGMA_MIN, SIGMA_MAX)
    out = samplers.sample(point, jax.random.key(3), (3,), sigmas, name, 4)
    np.testing.assert_allclose(out, np.broadcast_to(MEAN, (4, 3)), rtol=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_samples_match_the_gaussian_moments(denoiser, name):
    """n = 8000 samples, 1024 Karras steps from sigma = 80.

    Tolerances are 5 Monte Carlo standard errors (sqrt(cov_ii / n) for the mean,
    sqrt((cov_ii cov_jj + cov_ij^2) / n) for the covariance), plus 0.02 on the covariance for
    discretisation: the exact linear-Gaussian recursion of each sampler in the eigenbasis of
    cov gives a variance bias of at most 1.7e-2 (ancestral), 1.5e-2 (Euler-Maruyama),
    8.4e-3 (DDIM) and below 1e-4 (Heun) at 1024 steps. All samplers keep the mean exactly.
    """
    n = 8000
    sigmas = samplers.sigma_grid("karras", 1024, SIGMA_MIN, SIGMA_MAX)
    run = jax.jit(functools.partial(samplers.sample, sampler=name, num=n, shape=(3,)))
    xs = np.asarray(run(denoiser, jax.random.key(11), sigmas=sigmas, mean=jnp.asarray(MEAN)))
    assert xs.shape == (n, 3) and np.all(np.isfinite(xs))
    mean_se = np.sqrt(np.diag(COV) / n)
    np.testing.assert_array_less(np.abs(xs.mean(axis=0) - MEAN), 5 * mean_se)
    var = np.diag(COV)
    cov_se = np.sqrt((np.outer(var, var) + COV**2) / n)
    np.testing.assert_array_less(np.abs(np.cov(xs, rowvar=False) - COV), 5 * cov_se + 0.02)


def _transported_cov(sampler, denoiser, sigmas):
    """A deterministic sampler with a linear denoiser is affine in x_T: push the prior through."""
    fn = lambda x: sampler(denoiser, jax.random.key(0), x, sigmas)
    jac = jax.jit(jax.jacfwd(fn))(jnp.asarray(MEAN))
    prior = COV + float(sigmas[0]) ** 2 * np.eye(3)
    return jac @ prior @ jac.T, fn(jnp.asarray(MEAN))


@pytest.mark.parametrize("name, num_steps, order", [("ddim", 16384, 1), ("edm_heun", 256, 2)])
def test_deterministic_samplers_transport_the_marginal_exactly(denoiser, name, num_steps, order):
    """MC-free: the pushed-forward prior has covariance cov to 1e-3 and mean exactly ``MEAN``.

    Doubling the steps divides the error by 2 for DDIM (first order) and 4 for Heun.
    """
    sampler = samplers.make_sampler(name)
    errors = []
    for steps in [num_steps // 2, num_steps]:
        sigmas = samplers.sigma_grid("karras", steps, SIGMA_MIN, SIGMA_MAX)
        cov, mean = _transported_cov(sampler, denoiser, sigmas)
        errors.append(float(np.max(np.abs(cov - COV))))
        np.testing.assert_allclose(mean, MEAN, rtol=1e-12)
    assert errors[1] < 1e-3, errors
    assert 0.8 * 2**order < errors[0] / errors[1] < 1.2 * 2**order, errors


def test_ddim_ignores_rng_and_stochastic_samplers_use_it(denoiser):
    sigmas = samplers.sigma_grid("karras", 16, SIGMA_MIN, SIGMA_MAX)
    x_T = jnp.asarray([3.0, -40.0, 20.0])
    a = samplers.ddim(denoiser, jax.random.key(0), x_T, sigmas)
    np.testing.assert_array_equal(a, samplers.ddim(denoiser, None, x_T, sigmas))
    np.testing.assert_array_equal(
        samplers.edm_heun(denoiser, jax.random.key(0), x_T, sigmas),
        samplers.edm_heun(denoiser, None, x_T, sigmas),
    )
    b = samplers.ddpm_ancestral(denoiser, jax.random.key(0), x_T, sigmas)
    np.testing.assert_array_equal(
        b, samplers.ddpm_ancestral(denoiser, jax.random.key(0), x_T, sigmas)
    )
    assert not np.allclose(b, samplers.ddpm_ancestral(denoiser, jax.random.key(1), x_T, sigmas))


@pytest.mark.parametrize("name", NAMES)
def test_carry_keeps_the_dtype_of_x_T(denoiser, name):
    sigmas = samplers.sigma_grid("karras", 4, SIGMA_MIN, SIGMA_MAX)  # float64
    out = samplers.make_sampler(name)(
        denoiser, jax.random.key(0), jnp.zeros(3, jnp.float32), sigmas
    )
    assert out.dtype == jnp.float32 and out.shape == (3,)


def test_samplers_run_under_jit_with_traced_sigmas(denoiser):
    sigmas = samplers.sigma_grid("karras", 8, SIGMA_MIN, SIGMA_MAX)
    x_T = jnp.asarray([3.0, -40.0, 20.0])
    jitted = jax.jit(samplers.edm_heun)  # the denoiser is a pytree argument
    np.testing.assert_allclose(
        jitted(denoiser, jax.random.key(0), x_T, sigmas),
        samplers.edm_heun(denoiser, jax.random.key(0), x_T, sigmas),
        rtol=1e-12,
    )
