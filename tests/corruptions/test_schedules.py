"""Schedules against their closed forms, in float64."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax.corruptions import schedules

VP = [schedules.LinearVP(), schedules.CosineVP()]
ALL = VP + [schedules.LogLinearVE()]
T_GRID = np.array([1e-7, 1e-4, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0])


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("schedule", VP, ids=type)
def test_vp_boundaries_and_variance_preservation(schedule):
    np.testing.assert_allclose(schedule.alpha(0.0), 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(schedule.sigma(0.0), 0.0, rtol=0, atol=1e-15)
    t = jnp.asarray(T_GRID)
    np.testing.assert_allclose(schedule.alpha(t) ** 2 + schedule.sigma(t) ** 2, 1.0, rtol=1e-14)
    np.testing.assert_allclose(schedule.alpha_bar(t), schedule.alpha(t) ** 2, rtol=1e-14)
    assert np.all(np.diff(np.asarray(schedule.ve_sigma(t))) > 0)


def test_linear_vp_closed_form():
    schedule = schedules.LinearVP(beta_min=0.1, beta_max=20.0)
    t = jnp.asarray(T_GRID)
    expected = np.exp(-(0.1 * T_GRID + 0.5 * 19.9 * T_GRID**2))
    np.testing.assert_allclose(schedule.alpha_bar(t), expected, rtol=1e-14)
    np.testing.assert_allclose(schedule.alpha_bar(1.0), math.exp(-10.05), rtol=1e-14)
    # Near t = 0, sigma^2 = 1 - alpha_bar must keep full relative precision (expm1).
    t = 1e-9
    np.testing.assert_allclose(
        schedule.sigma(t) ** 2, -math.expm1(-(0.1 * t + 0.5 * 19.9 * t**2)), rtol=1e-13
    )


def test_linear_vp_matches_ho_et_al_discrete_schedule():
    """Ho et al. 2020: beta_i = linspace(1e-4, 0.02, 1000), alpha_bar_k = prod_{i<=k}(1 - beta_i).

    The continuous schedule at t = k / 1000 is their first-order limit: it matches
    exp(-sum beta_i) to 3e-3 relative everywhere. Against the exact product the gap is the
    second-order factor exp(-sum beta_i^2 / 2): within 1.5e-3 relative for t <= 0.2, and
    within 7.5e-2 everywhere (0.07 at t = 1).
    """
    beta = np.linspace(1e-4, 0.02, 1000)
    t = np.arange(1, 1001) / 1000.0
    continuous = np.asarray(schedules.LinearVP().alpha_bar(jnp.asarray(t)))
    first_order = np.exp(-np.cumsum(beta))
    product = np.cumprod(1.0 - beta)
    np.testing.assert_allclose(continuous, first_order, rtol=3e-3)
    np.testing.assert_allclose(continuous[t <= 0.2], product[t <= 0.2], rtol=1.5e-3)
    np.testing.assert_allclose(continuous, product, rtol=7.5e-2)
    second_order = np.log(product) + np.cumsum(beta**2) / 2
    np.testing.assert_allclose(np.log(continuous), second_order, rtol=0, atol=3e-3)


def test_cosine_vp_is_nichol_dhariwal_with_rescaled_time():
    s, alpha_bar_min = 0.008, 1e-5
    schedule = schedules.CosineVP(s=s, alpha_bar_min=alpha_bar_min)

    def f(u):  # Nichol & Dhariwal 2021, Eq. 17.
        return np.cos((u + s) / (1 + s) * np.pi / 2) ** 2

    u_max = np.arccos(np.sqrt(alpha_bar_min * f(0.0))) * 2 * (1 + s) / np.pi - s
    assert 0.99 < u_max < 1.0
    expected = f(u_max * T_GRID) / f(0.0)
    np.testing.assert_allclose(schedule.alpha_bar(jnp.asarray(T_GRID)), expected, rtol=1e-12)
    np.testing.assert_allclose(schedule.alpha_bar(1.0), alpha_bar_min, rtol=1e-12)
    np.testing.assert_allclose(schedule.ve_sigma(1.0), math.sqrt(1 / alpha_bar_min - 1), rtol=1e-12)
    # Near t = 0, sigma^2 = 2 tan(phi0) dphi + O(dphi^2): the naive 1 - alpha_bar would lose
    # about 3e-3 relative precision here, the sin-product form keeps it.
    t = 1e-12
    phi0 = s / (1 + s) * np.pi / 2
    dphi = u_max * t / (1 + s) * np.pi / 2
    np.testing.assert_allclose(schedule.sigma(t) ** 2, 2 * np.tan(phi0) * dphi, rtol=1e-8)


def test_loglinear_ve_closed_form():
    schedule = schedules.LogLinearVE(sigma_min=1e-3, sigma_max=100.0)
    t = jnp.asarray(T_GRID)
    np.testing.assert_allclose(schedule.alpha(t), 1.0, rtol=0, atol=0)
    np.testing.assert_allclose(schedule.sigma(t), 1e-3 * 1e5**T_GRID, rtol=1e-13)
    np.testing.assert_allclose(schedule.sigma(0.0), 1e-3, rtol=1e-14)
    np.testing.assert_allclose(schedule.sigma(1.0), 100.0, rtol=1e-14)
    np.testing.assert_allclose(schedule.alpha_bar(t), 1.0, rtol=0, atol=0)


@pytest.mark.parametrize("schedule", ALL, ids=type)
def test_ve_sigma_snr_and_exact_inverse(schedule):
    t = jnp.asarray(T_GRID)
    alpha, sigma = schedule.alpha(t), schedule.sigma(t)
    np.testing.assert_allclose(schedule.ve_sigma(t), sigma / alpha, rtol=1e-13)
    np.testing.assert_allclose(schedule.snr(t), alpha**2 / sigma**2, rtol=1e-12)
    # atol: t = (log s - log sigma_min) / range loses ~1e-16 absolute near t = 0 for VE; the VP
    # inverses are exact in relative terms down to t = 1e-7.
    atol = 1e-15 if isinstance(schedule, schedules.LogLinearVE) else 0.0
    np.testing.assert_allclose(
        schedule.t_from_ve_sigma(schedule.ve_sigma(t)), t, rtol=1e-12, atol=atol
    )
    s = jnp.asarray([1e-3, 0.05, 1.0, 7.0, 80.0])
    np.testing.assert_allclose(schedule.ve_sigma(schedule.t_from_ve_sigma(s)), s, rtol=1e-11)


@pytest.mark.parametrize("schedule", ALL, ids=type)
def test_schedules_are_static_pytrees_and_transformable(schedule):
    assert jax.tree.leaves(schedule) == []
    t = jnp.linspace(0.1, 0.9, 5)
    chex.assert_trees_all_close(
        jax.jit(lambda sch, u: sch.sigma(u))(schedule, t), schedule.sigma(t)
    )
    chex.assert_trees_all_close(jax.vmap(schedule.ve_sigma)(t), schedule.ve_sigma(t))
    grad = jax.grad(schedule.t_from_ve_sigma)(1.5)
    np.testing.assert_allclose(
        grad * jax.grad(schedule.ve_sigma)(schedule.t_from_ve_sigma(1.5)), 1.0, rtol=1e-10
    )
    assert schedule.sigma(jnp.float32(0.5)).dtype == jnp.float32


def test_make_schedule_builds_each_name():
    assert type(schedules.make_schedule("linear")) is schedules.LinearVP
    assert type(schedules.make_schedule("cosine")) is schedules.CosineVP
    assert type(schedules.make_schedule("loglinear_ve")) is schedules.LogLinearVE
    built = schedules.make_schedule("loglinear_ve", sigma_min=1e-2, sigma_max=10.0)
    assert built == schedules.LogLinearVE(sigma_min=1e-2, sigma_max=10.0)


def test_make_schedule_errors_name_what_is_valid():
    with pytest.raises(ValueError, match="valid names are.*cosine.*linear.*loglinear_ve"):
        schedules.make_schedule("sigmoid")
    with pytest.raises(ValueError, match="Unknown keyword.*'beta_mid'.*valid keywords"):
        schedules.make_schedule("linear", beta_mid=1.0)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: schedules.LinearVP(beta_min=0.0), "0 < beta_min <= beta_max"),
        (lambda: schedules.LinearVP(beta_min=2.0, beta_max=1.0), "0 < beta_min <= beta_max"),
        (lambda: schedules.CosineVP(s=0.0), "s > 0"),
        (lambda: schedules.CosineVP(alpha_bar_min=0.0), "0 < alpha_bar_min < 1"),
        (lambda: schedules.CosineVP(alpha_bar_min=1.0), "0 < alpha_bar_min < 1"),
        (lambda: schedules.LogLinearVE(sigma_min=1.0, sigma_max=1.0), "0 < sigma_min < sigma_max"),
        (lambda: schedules.LogLinearVE(sigma_min=-1.0), "0 < sigma_min < sigma_max"),
    ],
)
def test_invalid_hyper_parameters_raise(build, match):
    with pytest.raises(ValueError, match=match):
        build()
