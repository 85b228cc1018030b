"""Denoisers: the Gaussian oracle against closed forms, the VP -> VE conversion, the change of
units (`ScaledDenoiser`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax.corruptions import gaussian, schedules
from diffssl_jax.sampling.denoisers import GaussianDenoiser, ScaledDenoiser, make_vp_denoiser

MEAN = np.array([1.0, -2.0, 0.5])
CHOL = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.3, 0.5, 0.4]])
COV = CHOL @ CHOL.T


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


@pytest.fixture
def denoiser():
    return GaussianDenoiser(jnp.asarray(MEAN), jnp.asarray(COV))


def _closed_form(x, sigma):
    return x - sigma**2 * np.linalg.solve(COV + sigma**2 * np.eye(3), x - MEAN)


@pytest.mark.parametrize("sigma", [1e-3, 0.2, 1.0, 30.0])
def test_gaussian_denoiser_matches_closed_form_and_tweedie(denoiser, sigma):
    x = jnp.asarray([0.3, 1.1, -0.7])
    np.testing.assert_allclose(denoiser(x, jnp.asarray(sigma)), _closed_form(x, sigma), rtol=1e-12)
    # Tweedie: D(x, s) = x + s^2 grad log N(x; mean, cov + s^2 I).
    marginal = jax.scipy.stats.multivariate_normal.logpdf
    score = jax.grad(marginal)(x, MEAN, COV + sigma**2 * np.eye(3))
    np.testing.assert_allclose(denoiser(x, jnp.asarray(sigma)), x + sigma**2 * score, rtol=1e-10)


def test_gaussian_denoiser_transforms(denoiser):
    xs = jax.random.normal(jax.random.key(0), (6, 3))
    sigmas = jnp.linspace(0.1, 3.0, 6)
    batched = jax.jit(jax.vmap(lambda d, x, s: d(x, s), in_axes=(None, 0, 0)))(denoiser, xs, sigmas)
    for x, s, out in zip(xs, sigmas, batched, strict=True):
        np.testing.assert_allclose(out, _closed_form(np.asarray(x), float(s)), rtol=1e-12)
    x, sigma = xs[0], sigmas[2]
    jac = jax.jacfwd(denoiser)(x, sigma)
    expected = np.eye(3) - float(sigma) ** 2 * np.linalg.inv(COV + float(sigma) ** 2 * np.eye(3))
    np.testing.assert_allclose(jac, expected, rtol=1e-12, atol=1e-15)
    _, vjp = jax.vjp(lambda u: denoiser(u, sigma), x)
    np.testing.assert_allclose(vjp(jnp.eye(3)[1])[0], expected[1], rtol=1e-12, atol=1e-15)
    # A batch of different Gaussians: vmap over the pytree itself.
    stacked = jax.tree.map(lambda a: jnp.stack([a, a]), denoiser)
    out = jax.vmap(lambda d: d(x, sigma))(stacked)
    np.testing.assert_allclose(out[1], _closed_form(np.asarray(x), float(sigma)), rtol=1e-12)


def test_replace_recomputes_the_eigendecomposition(denoiser):
    new = denoiser.replace(cov=jnp.asarray(2.0 * COV))
    x, sigma = jnp.asarray([0.3, 1.1, -0.7]), jnp.asarray(0.8)
    fresh = GaussianDenoiser(jnp.asarray(MEAN), jnp.asarray(2.0 * COV))
    np.testing.assert_allclose(new(x, sigma), fresh(x, sigma), rtol=1e-13)
    assert not np.allclose(new(x, sigma), denoiser(x, sigma))


def _joint_conditioning(A, cov_y_full, y):
    """p(x0 | y) from the joint Gaussian of (x0, y) and its Schur complement."""
    cross = COV @ A.T
    gram = A @ COV @ A.T + cov_y_full
    mean = MEAN + cross @ np.linalg.inv(gram) @ (y - A @ MEAN)
    cov = COV - cross @ np.linalg.inv(gram) @ cross.T
    return mean, cov


@pytest.mark.parametrize("form", ["scalar", "diagonal", "full"])
def test_posterior_matches_joint_gaussian_conditioning(denoiser, form):
    A = np.array([[1.0, 0.5, 0.0], [0.0, -1.0, 2.0]])
    y = np.array([0.4, -1.3])
    cov_y = {
        "scalar": (0.09, 0.09 * np.eye(2)),
        "diagonal": (np.array([0.09, 0.5]), np.diag([0.09, 0.5])),
        "full": (np.array([[0.3, 0.1], [0.1, 0.2]]),) * 2,
    }[form]
    mean, cov = denoiser.posterior(jnp.asarray(A), jnp.asarray(y), jnp.asarray(cov_y[0]))
    expected_mean, expected_cov = _joint_conditioning(A, cov_y[1], y)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-12)
    np.testing.assert_allclose(cov, expected_cov, rtol=1e-11, atol=1e-14)
    np.testing.assert_array_equal(cov, cov.T)


def test_posterior_with_identity_is_the_denoiser(denoiser):
    """y = x0 + sigma n is the denoising problem: posterior mean D(y, sigma), cov sigma^2 J."""
    y, sigma = jnp.asarray([0.3, 1.1, -0.7]), 0.6
    mean, cov = denoiser.posterior_mean_cov(jnp.eye(3), y, sigma**2)
    np.testing.assert_allclose(mean, denoiser(y, jnp.asarray(sigma)), rtol=1e-12)
    jac = jax.jacfwd(denoiser)(y, jnp.asarray(sigma))
    np.testing.assert_allclose(cov, sigma**2 * jac, rtol=1e-11, atol=1e-14)


def test_fit_uses_empirical_moments_and_ridge():
    samples = jax.random.normal(jax.random.key(1), (500, 3)) @ jnp.asarray(CHOL).T + MEAN
    fitted = GaussianDenoiser.fit(samples, ridge=1e-3)
    np.testing.assert_allclose(fitted.mean, np.mean(samples, axis=0), rtol=1e-13)
    expected_cov = np.cov(np.asarray(samples), rowvar=False) + 1e-3 * np.eye(3)
    np.testing.assert_allclose(fitted.cov, expected_cov, rtol=1e-12)
    np.testing.assert_allclose(fitted.cov, COV, atol=0.3)


def test_denoiser_errors_are_clear(denoiser):
    with pytest.raises(ValueError, match=r"mean \[D\] and cov \[D, D\]"):
        GaussianDenoiser(jnp.zeros(3), jnp.eye(2))
    with pytest.raises(ValueError, match=r"mean \[D\] and cov \[D, D\]"):
        GaussianDenoiser(jnp.zeros((2, 2)), jnp.eye(2))
    with pytest.raises(ValueError, match=r"x must have shape \(3,\).*jax.vmap"):
        denoiser(jnp.zeros((2, 3)), jnp.asarray(0.5))
    with pytest.raises(ValueError, match="sigma must be a scalar"):
        denoiser(jnp.zeros(3), jnp.ones(3))
    with pytest.raises(ValueError, match=r"samples \[N, D\] with N >= 2"):
        GaussianDenoiser.fit(jnp.zeros(5))
    with pytest.raises(ValueError, match="ridge must be >= 0"):
        GaussianDenoiser.fit(jnp.zeros((5, 2)), ridge=-1.0)
    with pytest.raises(ValueError, match=r"cov_y must be a scalar, \[2\] \(diagonal\) or"):
        denoiser.posterior(jnp.ones((2, 3)), jnp.ones(2), jnp.ones(3))
    with pytest.raises(ValueError, match=r"A \[M, 3\] and y \[M\]"):
        denoiser.posterior(jnp.ones((2, 4)), jnp.ones(2), 1.0)


def _exact_vp_network(gaussian_denoiser, schedule, kind):
    """The network a perfectly trained VP model of ``kind`` would be, for Gaussian data."""

    def apply_fn(params, x_vp, t):
        assert x_vp.shape == (1, 3) and t.shape == (1,), (x_vp.shape, t.shape)
        alpha, sigma = schedule.alpha(t[0]), schedule.sigma(t[0])
        x0_hat = params(x_vp[0] / alpha, sigma / alpha)
        return gaussian.prediction_from_x0(kind, x0_hat, x_vp[0], alpha, sigma)[None]

    return apply_fn


@pytest.mark.parametrize("kind", ["eps", "x0", "v"])
@pytest.mark.parametrize(
    "schedule",
    [schedules.LinearVP(), schedules.CosineVP(), schedules.LogLinearVE(1e-3, 100.0)],
    ids=type,
)
def test_vp_denoiser_recovers_the_gaussian_denoiser(denoiser, schedule, kind):
    vp = make_vp_denoiser(_exact_vp_network(denoiser, schedule, kind), denoiser, schedule, kind)
    x = jnp.asarray([0.3, 1.1, -0.7])
    for sigma in [0.01, 0.2, 1.0, 5.0, 60.0]:
        out = vp(x * (1 + sigma), jnp.asarray(sigma))
        np.testing.assert_allclose(out, denoiser(x * (1 + sigma), jnp.asarray(sigma)), atol=1e-10)
    # As a pytree argument of jit and vmap (params are leaves, not baked-in constants).
    sigmas = jnp.asarray([0.05, 0.5, 5.0])
    xs = jnp.stack([x, -x, 2 * x])
    batched = jax.jit(jax.vmap(lambda d, u, s: d(u, s), in_axes=(None, 0, 0)))(vp, xs, sigmas)
    expected = jax.vmap(denoiser)(xs, sigmas)
    np.testing.assert_allclose(batched, expected, atol=1e-10)
    assert len(jax.tree.leaves(vp)) == len(jax.tree.leaves(denoiser))


def test_make_vp_denoiser_errors_are_clear(denoiser):
    schedule = schedules.LinearVP()
    with pytest.raises(ValueError, match="valid kinds are"):
        make_vp_denoiser(lambda p, x, t: x, None, schedule, "score")
    with pytest.raises(ValueError, match="apply_fn must be callable"):
        make_vp_denoiser(None, None, schedule, "eps")
    vp = make_vp_denoiser(lambda p, x, t: x, None, schedule, "x0")
    with pytest.raises(ValueError, match="scalar sigma.*jax.vmap"):
        vp(jnp.zeros(3), jnp.ones(2))


def test_scaled_denoiser_changes_units_exactly():
    """D(x, s) in units scaled by c is c * D'(x / c, s / c) for the Gaussian denoiser."""
    mean, cov = jnp.array([0.5, -1.0]), jnp.array([[2.0, 0.3], [0.3, 1.0]])
    x, sigma, c = jnp.array([0.3, 0.1]), 0.7, 2.0
    inner = GaussianDenoiser(mean / c, cov / c**2)
    outer = ScaledDenoiser(inner, (2,), c)
    np.testing.assert_allclose(outer(x, sigma), GaussianDenoiser(mean, cov)(x, sigma), rtol=1e-5)
