"""Distribution metrics against closed forms and a direct computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ott.geometry import pointcloud
from ott.solvers import linear
from scipy import linalg, special

from diffssl_jax.evaluation import metrics


def _ot_eps(x, y, eps, iterations=3000):
    """Entropic OT cost <f, a> + <g, b> by log-domain Sinkhorn in float64 (uniform weights)."""
    cost = ((x[:, None] - y[None]) ** 2).sum(-1)
    log_a, log_b = -np.log(len(x)) * np.ones(len(x)), -np.log(len(y)) * np.ones(len(y))
    f, g = np.zeros(len(x)), np.zeros(len(y))
    for _ in range(iterations):
        f = -eps * special.logsumexp((g[None] - cost) / eps + log_b[None], axis=1)
        g = -eps * special.logsumexp((f[:, None] - cost) / eps + log_a[:, None], axis=0)
    return f.mean() + g.mean()


def test_sinkhorn_divergence_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 2)), rng.normal(size=(9, 2)) + 0.5
    eps = 0.1
    direct = _ot_eps(x, y, eps) - 0.5 * _ot_eps(x, x, eps) - 0.5 * _ot_eps(y, y, eps)
    value = metrics.sinkhorn_divergence(x, y, epsilon=eps, max_iterations=5000, threshold=1e-7)
    np.testing.assert_allclose(value, direct, rtol=1e-3, atol=1e-5)


def test_sinkhorn_divergence_of_a_translation_is_its_squared_length():
    """S_eps(mu, mu + t) = |t|^2 exactly (the cross term of the cost integrates to 0)."""
    x = np.random.default_rng(1).normal(size=(64, 5)).astype(np.float32)
    t = np.array([0.3, -0.2, 0.1, 0.0, 0.4], np.float32)
    value = metrics.sinkhorn_divergence(x, x + t, epsilon=0.05, max_iterations=4000)
    np.testing.assert_allclose(value, float(t @ t), rtol=2e-3)


def test_toy_divergence_is_zero_against_the_truth_itself():
    x = np.random.default_rng(2).uniform(-2, 2, size=(128, 5))
    assert metrics.em_toy_divergence(x, x + 0.1, x, epsilon=0.05) == pytest.approx(-0.05, 1e-2)


def test_sliced_wasserstein_of_a_translation():
    """Quantiles shift with the data: SW2^2(x, x + t) = mean over directions of (theta.t)^2."""
    rng = jax.random.key(3)
    x = np.random.default_rng(3).normal(size=(256, 3)).astype(np.float32)
    t = np.array([1.0, -0.5, 0.25], np.float32)
    theta = np.asarray(jax.random.normal(rng, (3, 64)))
    theta = theta / np.linalg.norm(theta, axis=0)
    expected = np.mean((t @ theta) ** 2)
    value = metrics.sliced_wasserstein(x, x + t, rng=rng, num_projections=64)
    np.testing.assert_allclose(value, expected, rtol=1e-4)
    assert metrics.sliced_wasserstein(x, x, rng=rng) == pytest.approx(0.0, abs=1e-10)


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(500, 4)), rng.normal(size=(400, 4)) @ rng.normal(size=(4, 4)) + 1.0
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a.T), np.cov(b.T)
    expected = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a + s_b - 2 * linalg.sqrtm(s_a @ s_b).real)
    np.testing.assert_allclose(metrics.frechet_distance(a, b), expected, rtol=1e-8)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_metrics_reject_bad_clouds():
    with pytest.raises(ValueError, match="point clouds"):
        metrics.sinkhorn_divergence(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        metrics.sinkhorn_divergence(np.full((3, 2), np.nan), np.zeros((3, 2)))


def _transport_cost_numpy(x, y, eps, iterations=5000):
    """<P_eps, C> of the log-domain Sinkhorn plan in float64 (uniform weights), no ott."""
    cost = ((x[:, None] - y[None]) ** 2).sum(-1)
    log_a, log_b = -np.log(len(x)), -np.log(len(y))
    f, g = np.zeros(len(x)), np.zeros(len(y))
    for _ in range(iterations):
        f = -eps * special.logsumexp((g[None] - cost) / eps + log_b, axis=1)
        g = -eps * special.logsumexp((f[:, None] - cost) / eps + log_a, axis=0)
    plan = np.exp((f[:, None] + g[None] - cost) / eps + log_a + log_b)
    return float((plan * cost).sum())


def _transport_cost_ott(x, y, eps, **solve):
    """<P_eps, C> with ott's plan and cost matrix materialised (not `primal_cost`'s path)."""
    geometry = pointcloud.PointCloud(jnp.asarray(x), jnp.asarray(y), epsilon=eps)
    out = linear.solve(geometry, **solve)
    return float(jnp.sum(out.matrix * geometry.cost_matrix))


TIGHT = {"max_iterations": 20000, "threshold": 1e-13}


def test_reference_form_matches_direct_computations_in_float64():
    """W_eps(u1, v) - W_eps(u1, u2) against ott's materialised plan and a NumPy Sinkhorn."""
    rng = np.random.default_rng(5)
    u1, u2 = rng.normal(size=(12, 3)), rng.normal(size=(10, 3))
    v = rng.normal(size=(9, 3)) * 0.8 + 0.3
    eps = 0.1
    with jax.enable_x64(True):
        value = metrics.reference_toy_metric(u1, u2, v, epsilon=eps, **TIGHT)
        by_ott = _transport_cost_ott(u1, v, eps, **TIGHT) - _transport_cost_ott(
            u1, u2, eps, **TIGHT
        )
    by_numpy = _transport_cost_numpy(u1, v, eps) - _transport_cost_numpy(u1, u2, eps)
    np.testing.assert_allclose(value, by_ott, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(value, by_numpy, rtol=1e-8, atol=1e-10)


def test_reference_form_closed_forms_in_float64():
    """One point each: W_eps = |x - y|^2. A translation leaves the entropic plan unchanged
    (the cost changes by terms in i or j alone) and its cross term integrates to 0:
    W_eps(u, u + t) - W_eps(u, u) = |t|^2, to the solver's marginal error (3e-8 here: Sinkhorn
    converges slowly on the translated cloud)."""
    a, b, c = np.array([[0.5, -1.0]]), np.array([[2.0, 0.0]]), np.array([[-0.5, 1.5]])
    u = np.random.default_rng(6).uniform(-2, 2, size=(16, 5))
    t = np.array([0.3, -0.2, 0.1, 0.0, 0.4])
    with jax.enable_x64(True):
        single = metrics.reference_toy_metric(a, b, c, epsilon=1e-3)
        shifted = metrics.reference_toy_metric(u, u, u + t, epsilon=0.05, **TIGHT)
    np.testing.assert_allclose(single, np.sum((a - c) ** 2) - np.sum((a - b) ** 2), rtol=1e-12)
    np.testing.assert_allclose(shifted, t @ t, rtol=1e-6)


def test_reference_form_is_zero_at_u2_and_negative_at_u1():
    """v = u2 gives 0 exactly (the same computation twice); v = u1 is closer to u1 than an
    independent u2 is, so the form goes below 0 there (W_eps(u1, u1) is near 0 at small eps)."""
    rng = np.random.default_rng(7)
    u1, u2 = rng.uniform(-2, 2, size=(64, 5)), rng.uniform(-2, 2, size=(64, 5))
    assert metrics.reference_toy_metric(u1, u2, u2) == 0.0
    assert metrics.reference_toy_metric(u1, u2, u1) < -0.5 * metrics.entropic_transport_cost(u1, u2)
    with pytest.raises(ValueError, match="NaN"):
        metrics.reference_toy_metric(u1, u2, np.full((3, 5), np.inf))
