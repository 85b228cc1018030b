"""Gaussian corruption and prediction targets: exact round trips in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax.corruptions import gaussian, schedules

SCHEDULES = [schedules.LinearVP(), schedules.CosineVP(), schedules.LogLinearVE()]
KINDS = ["eps", "x0", "v"]


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _example(seed=0, shape=(4, 3, 2)):
    rng_x, rng_eps = jax.random.split(jax.random.key(seed))
    x0 = jax.random.normal(rng_x, shape)
    eps = jax.random.normal(rng_eps, shape)
    return x0, eps


@pytest.mark.parametrize("schedule", SCHEDULES, ids=type)
def test_corrupt_is_alpha_x0_plus_sigma_eps(schedule):
    x0, eps = _example()
    t = jnp.asarray(0.37)
    xt = gaussian.corrupt(schedule, x0, t, eps)
    np.testing.assert_allclose(xt, schedule.alpha(t) * x0 + schedule.sigma(t) * eps, rtol=1e-15)
    batch_x0, batch_eps = jnp.stack([x0, -x0]), jnp.stack([eps, 2 * eps])
    batch_t = jnp.asarray([0.1, 0.9])
    batched = jax.vmap(gaussian.corrupt, in_axes=(None, 0, 0, 0))(
        schedule, batch_x0, batch_t, batch_eps
    )
    np.testing.assert_allclose(
        batched[1], schedule.alpha(0.9) * -x0 + schedule.sigma(0.9) * 2 * eps, rtol=1e-14
    )


def test_target_definitions():
    x0, eps = _example()
    alpha, sigma = 0.6, 0.8
    np.testing.assert_array_equal(gaussian.target("eps", x0, eps, alpha, sigma), eps)
    np.testing.assert_array_equal(gaussian.target("x0", x0, eps, alpha, sigma), x0)
    np.testing.assert_allclose(
        gaussian.target("v", x0, eps, alpha, sigma), 0.6 * eps - 0.8 * x0, rtol=1e-15
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("schedule", SCHEDULES, ids=type)
@pytest.mark.parametrize("t", [1e-3, 0.3, 0.8, 1.0])
def test_round_trips_for_every_kind_and_schedule(kind, schedule, t):
    x0, eps = _example(seed=1)
    t = jnp.asarray(t)
    alpha, sigma = schedule.alpha(t), schedule.sigma(t)
    xt = gaussian.corrupt(schedule, x0, t, eps)
    prediction = gaussian.target(kind, x0, eps, alpha, sigma)
    x0_hat = gaussian.x0_from_prediction(kind, prediction, xt, alpha, sigma)
    # The eps inverse divides by alpha (tiny at t = 1 for VP), so compare on the scale of xt.
    scale = 1.0 + float(jnp.max(jnp.abs(xt))) / float(alpha)
    np.testing.assert_allclose(x0_hat, x0, rtol=0, atol=1e-13 * scale)
    back = gaussian.prediction_from_x0(kind, x0, xt, alpha, sigma)
    np.testing.assert_allclose(back, prediction, rtol=0, atol=1e-13 * (1.0 + 1.0 / float(sigma)))


@pytest.mark.parametrize("kind", KINDS)
def test_round_trips_hold_for_non_vp_alpha_sigma(kind):
    """``alpha^2 + sigma^2 != 1``: the v inverse must use ``alpha^2 + sigma^2``."""
    x0, eps = _example(seed=2)
    alpha, sigma = 0.7, 2.3
    xt = alpha * x0 + sigma * eps
    prediction = gaussian.target(kind, x0, eps, alpha, sigma)
    x0_hat = gaussian.x0_from_prediction(kind, prediction, xt, alpha, sigma)
    np.testing.assert_allclose(x0_hat, x0, rtol=0, atol=1e-13)
    x0_hat_other = gaussian.x0_from_prediction(kind, prediction + 0.1, xt, alpha, sigma)
    assert kind == "x0" or not np.allclose(x0_hat_other, x0, atol=1e-3)


def test_invalid_inputs_raise_clear_errors():
    x0, eps = _example()
    schedule = schedules.LinearVP()
    with pytest.raises(ValueError, match="valid kinds are"):
        gaussian.target("score", x0, eps, 1.0, 0.1)
    with pytest.raises(ValueError, match="valid kinds are"):
        gaussian.x0_from_prediction("noise", x0, x0, 1.0, 0.1)
    with pytest.raises(ValueError, match="valid kinds are"):
        gaussian.prediction_from_x0("x_0", x0, x0, 1.0, 0.1)
    with pytest.raises(ValueError, match="scalar t.*jax.vmap"):
        gaussian.corrupt(schedule, x0, jnp.ones(2), eps)
    with pytest.raises(ValueError, match="same shape"):
        gaussian.corrupt(schedule, x0, 0.5, eps[0])
    with pytest.raises(ValueError, match="same shape"):
        gaussian.x0_from_prediction("eps", x0[None], x0, 1.0, 0.1)
