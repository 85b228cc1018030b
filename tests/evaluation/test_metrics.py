"""Distribution metrics against closed forms and a direct computation."""

import jax
import numpy as np
import pytest
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
