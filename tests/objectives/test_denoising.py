"""The DSM objective: weightings in x0 terms, and the Gaussian denoiser as its minimiser."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax.corruptions import gaussian
from diffssl_jax.objectives import denoising
from diffssl_jax.sampling.denoisers import GaussianDenoiser

KINDS = ["eps", "x0", "v"]
WEIGHTINGS = ["none", "min_snr", "edm"]


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _vp(ve_sigma):
    """VP ``(alpha, sigma)`` with ``sigma / alpha = ve_sigma``."""
    alpha = 1.0 / jnp.sqrt(1.0 + ve_sigma**2)
    return alpha, ve_sigma * alpha


def _loss_from_x0_hat(x0_hat, x0, eps, alpha, sigma, kind, weighting):
    xt = alpha * x0 + sigma * eps
    prediction = gaussian.prediction_from_x0(kind, x0_hat, xt, alpha, sigma)
    return denoising.denoising_loss(
        prediction, x0, eps, alpha, sigma, kind=kind, weighting=weighting
    )


@pytest.mark.parametrize(
    "alpha, sigma", [(0.1**-1 / 101**0.5, 101**-0.5), (0.1**0.5, 0.9**0.5), (0.7, 2.3), (1.0, 0.05)]
)
def test_weightings_are_defined_in_x0_terms(alpha, sigma):
    """For a given x0_hat, min_snr and edm give the same loss for every kind: w_x0 * mse_x0."""
    rng_x, rng_eps, rng_err = jax.random.split(jax.random.key(0), 3)
    x0 = jax.random.normal(rng_x, (5, 4))
    eps = jax.random.normal(rng_eps, (5, 4))
    x0_hat = x0 + 0.3 * jax.random.normal(rng_err, (5, 4))
    mse_x0 = jnp.mean((x0_hat - x0) ** 2)
    s = sigma / alpha
    snr = 1.0 / s**2
    expected = {
        "min_snr": jnp.minimum(snr, 5.0) * mse_x0,
        "edm": (s**2 + 0.5**2) / (s * 0.5) ** 2 * mse_x0,
    }
    for weighting, value in expected.items():
        for kind in KINDS:
            loss = _loss_from_x0_hat(x0_hat, x0, eps, alpha, sigma, kind, weighting)
            np.testing.assert_allclose(loss, value, rtol=1e-11, err_msg=f"{weighting} {kind}")
    # "none" is the plain MSE on each kind's own target.
    c_v = (alpha**2 + sigma**2) ** 2 / sigma**2
    for kind, factor in [("x0", 1.0), ("eps", snr), ("v", c_v)]:
        loss = _loss_from_x0_hat(x0_hat, x0, eps, alpha, sigma, kind, "none")
        np.testing.assert_allclose(loss, factor * mse_x0, rtol=1e-11, err_msg=kind)


def test_min_snr_matches_hang_et_al_formulas_for_vp():
    """Hang et al. 2023: eps weight min(snr, 5) / snr, VP v weight min(snr, 5) / (snr + 1)."""
    for ve in [0.05, 0.3, 1.0, 4.0]:
        alpha, sigma = _vp(ve)
        snr = 1.0 / ve**2
        w_eps = denoising.loss_weight("eps", alpha, sigma, weighting="min_snr")
        w_v = denoising.loss_weight("v", alpha, sigma, weighting="min_snr")
        np.testing.assert_allclose(w_eps, min(snr, 5.0) / snr, rtol=1e-13)
        np.testing.assert_allclose(w_v, min(snr, 5.0) / (snr + 1.0), rtol=1e-13)


def test_weights_stay_finite_at_zero_noise():
    for weighting in WEIGHTINGS:
        for kind in ["eps", "v"]:
            weight = denoising.loss_weight(kind, 1.0, 0.0, weighting=weighting)
            assert np.isfinite(weight), (weighting, kind)
    np.testing.assert_allclose(denoising.loss_weight("eps", 1.0, 0.0, weighting="edm"), 1.0)
    np.testing.assert_allclose(denoising.loss_weight("x0", 1.0, 0.0, weighting="min_snr"), 5.0)


def _sigma_points(n):
    """``sqrt(n) (+-e_i)``: the exact expectation of any quadratic of ``u ~ N(0, I_n)``."""
    eye = jnp.sqrt(n) * jnp.eye(n)
    return jnp.concatenate([eye, -eye])


@functools.partial(jax.jit, static_argnames=("kind", "weighting"))
def _expected_loss(params, mean, chol, ve_sigma, *, kind, weighting):
    """``E_{x0 ~ N(mean, chol chol^T), eps ~ N(0, I)}`` of the loss of ``x0_hat = W x + b``."""
    w, b = params
    d = mean.shape[0]
    alpha, sigma = _vp(ve_sigma)

    def loss_at(u):
        x0, eps = mean + chol @ u[:d], u[d:]
        x0_hat = w @ (x0 + ve_sigma * eps) + b
        return _loss_from_x0_hat(x0_hat, x0, eps, alpha, sigma, kind, weighting)

    return jnp.mean(jax.vmap(loss_at)(_sigma_points(2 * d)))


def test_sigma_points_are_exact_for_quadratics():
    a = jnp.asarray([[2.0, 0.3, 0.0], [0.3, 1.0, -0.4], [0.0, -0.4, 0.5]])
    points = _sigma_points(3)
    value = jnp.mean(jax.vmap(lambda u: u @ a @ u + jnp.sum(u) + 1.5)(points))
    np.testing.assert_allclose(value, jnp.trace(a) + 1.5, rtol=1e-14)


@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ve_sigma", [0.3, 2.0])
def test_gaussian_denoiser_minimises_the_expected_loss(kind, weighting, ve_sigma):
    """Zero gradient at W = cov (cov + s^2 I)^-1, b = (I - W) mean; larger loss elsewhere."""
    mean = jnp.asarray([0.5, -1.0])
    chol = jnp.asarray([[1.0, 0.0], [0.7, 0.4]])
    denoiser = GaussianDenoiser(mean, chol @ chol.T)
    ve_sigma = jnp.asarray(ve_sigma)
    w_star = jax.jacfwd(denoiser)(jnp.zeros(2), ve_sigma)
    b_star = denoiser(jnp.zeros(2), ve_sigma)
    expected_w = chol @ chol.T @ jnp.linalg.inv(chol @ chol.T + ve_sigma**2 * jnp.eye(2))
    np.testing.assert_allclose(w_star, expected_w, rtol=1e-13)
    np.testing.assert_allclose(b_star, (jnp.eye(2) - expected_w) @ mean, rtol=1e-13)

    loss = functools.partial(
        _expected_loss, mean=mean, chol=chol, ve_sigma=ve_sigma, kind=kind, weighting=weighting
    )
    grad_w, grad_b = jax.grad(loss)((w_star, b_star))
    assert float(jnp.max(jnp.abs(grad_w))) < 1e-10
    assert float(jnp.max(jnp.abs(grad_b))) < 1e-10

    delta = jnp.asarray([[0.02, -0.01], [0.015, 0.03]])
    assert float(loss((w_star + delta, b_star))) > float(loss((w_star, b_star))) + 1e-7
    assert float(loss((w_star, b_star + 0.02))) > float(loss((w_star, b_star))) + 1e-7
    grad_w_off, _ = jax.grad(loss)((w_star + delta, b_star))
    assert float(jnp.max(jnp.abs(grad_w_off))) > 1e-5


def test_loss_is_vmappable_and_jittable():
    x0 = jnp.ones((3, 2, 2))
    eps = -jnp.ones((3, 2, 2))
    alpha, sigma = _vp(jnp.asarray([0.1, 1.0, 10.0]))
    fn = jax.jit(
        jax.vmap(functools.partial(denoising.denoising_loss, kind="eps", weighting="min_snr"))
    )
    losses = fn(jnp.zeros((3, 2, 2)), x0, eps, alpha, sigma)
    expected = jnp.minimum(1.0, 5.0 * (sigma / alpha) ** 2)  # weight * mean((0 - eps)^2)
    np.testing.assert_allclose(losses, expected, rtol=1e-13)


def test_invalid_inputs_raise_clear_errors():
    x = jnp.zeros((2, 2))
    call = functools.partial(denoising.denoising_loss, x, x, x, 0.6, 0.8)
    with pytest.raises(ValueError, match="Unknown weighting 'snr'.*valid weightings"):
        call(kind="eps", weighting="snr")
    with pytest.raises(ValueError, match="valid kinds are"):
        call(kind="score", weighting="none")
    with pytest.raises(ValueError, match="sigma_data must be positive"):
        call(kind="x0", weighting="edm", sigma_data=0.0)
    with pytest.raises(ValueError, match="min_snr_gamma must be positive"):
        call(kind="x0", weighting="min_snr", min_snr_gamma=-1.0)
    with pytest.raises(ValueError, match="same shape"):
        denoising.denoising_loss(x[0], x, x, 0.6, 0.8, kind="eps", weighting="none")
    with pytest.raises(ValueError, match="scalar alpha and sigma.*jax.vmap"):
        denoising.denoising_loss(x, x, x, jnp.ones(2), 0.8, kind="eps", weighting="none")
