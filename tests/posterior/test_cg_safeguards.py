"""CG's safeguards: plain CG on SPD systems, truncation at non-positive curvature (Steihaug),
no guard, and the reported curvatures, residual growth and fallbacks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_cg import _matvec, _spd

from diffssl_jax.posterior.cg import SAFEGUARDS, cg


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _textbook_trace(m, b, k, stop_at_breakdown):
    """Textbook CG in numpy: ``(x, curvatures p^T M p / p^T p, ||b - M x|| / ||b||, broke)``;
    with ``stop_at_breakdown`` it stops before the first ``p^T M p <= 0`` (Steihaug)."""
    m, b = np.asarray(m), np.asarray(b)
    x, r, p, rr = np.zeros(len(b)), b.copy(), b.copy(), float(b @ b)
    curvatures, broke = [], False
    for _ in range(k):
        pmp = float(p @ m @ p)
        curvatures.append(pmp / float(p @ p))
        if pmp <= 0:
            broke = True
            if stop_at_breakdown:
                break
        alpha = rr / pmp
        x, r = x + alpha * p, r - alpha * (m @ p)
        p, rr = r + (r @ r) / rr * p, float(r @ r)
    return x, curvatures, np.sqrt(rr / float(b @ b)), broke


def _indefinite(rng, n=8):
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return jnp.asarray((q * np.array([3.0, 2.0, 1.0, 0.5, -0.5, -1.0, -2.0, -3.0])) @ q.T)


@pytest.mark.parametrize("safeguard", SAFEGUARDS)
def test_every_safeguard_is_plain_cg_on_spd_systems(safeguard):
    """docs/methods.md E.6: on SPD systems no safeguard fires; the iterates, the Rayleigh
    quotients of the directions and the residual growth are textbook CG's."""
    rng = np.random.default_rng(9)
    n = 10
    m, b = _spd(rng, n, cond=30.0), jnp.asarray(rng.normal(size=n))
    for k in (1, 3, n):
        res = cg(_matvec(m), b, maxiter=k, safeguard=safeguard)
        x, curvatures, growth, _ = _textbook_trace(m, b, k, stop_at_breakdown=False)
        np.testing.assert_allclose(res.x, x, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(res.curvature, curvatures, rtol=1e-8)
        np.testing.assert_allclose(res.growth, growth, rtol=1e-8, atol=1e-9)  # converged: ~1e-10
        assert not bool(res.fallback) and not bool(res.breakdown)
        assert bool(jnp.all(res.curvature > 0))


def test_steihaug_stops_before_the_first_direction_of_non_positive_curvature():
    """Truncated CG (Steihaug 1983): the iterate before the first ``p^T M p <= 0``, its
    ``aux``, and a fallback exactly when CG broke down; the curvature of the rejected
    direction is reported, later entries are NaN."""
    rng = np.random.default_rng(10)
    m = _indefinite(rng)
    b_mat = jnp.asarray(rng.normal(size=(3, 8)))
    broke_once = False
    for _ in range(6):
        b = jnp.asarray(rng.normal(size=8))
        for k in (1, 3, 8):
            res = cg(_matvec(m, b_mat), b, maxiter=k, safeguard="steihaug")
            x, curvatures, _, broke = _textbook_trace(m, b, k, stop_at_breakdown=True)
            np.testing.assert_allclose(res.x, x, rtol=1e-8, atol=1e-10)
            np.testing.assert_allclose(res.aux, b_mat @ res.x, rtol=1e-8, atol=1e-10)
            assert bool(res.fallback) == bool(res.breakdown) == broke
            run = len(curvatures)
            np.testing.assert_allclose(res.curvature[:run], curvatures, rtol=1e-8)
            assert bool(jnp.all(jnp.isnan(res.curvature[run:])))
            broke_once |= broke
    assert broke_once


def test_no_safeguard_is_textbook_cg_through_negative_curvature():
    """``safeguard="none"`` takes every step, also along ``p^T M p < 0``, and reports it."""
    rng = np.random.default_rng(11)
    m, b = _indefinite(rng), jnp.asarray(rng.normal(size=8))
    res = cg(_matvec(m), b, maxiter=4, safeguard="none")
    x, curvatures, growth, broke = _textbook_trace(m, b, 4, stop_at_breakdown=False)
    np.testing.assert_allclose(res.x, x, rtol=1e-8)
    np.testing.assert_allclose(res.curvature, curvatures, rtol=1e-8)
    np.testing.assert_allclose(res.growth, growth, rtol=1e-8)
    assert bool(res.breakdown) == broke and not bool(res.fallback)


def test_residual_cap_reports_its_fallback():
    """The residual cap's fallback flag is set exactly when it returns a non-last iterate:
    the capped step of ``test_spd_step_is_kept_when_its_residual_exceeds_b_unless_capped``."""
    m, b = jnp.diag(jnp.array([1.0, 100.0])), jnp.array([1.0, 0.1])
    assert not bool(cg(_matvec(m), b, maxiter=1).fallback)
    capped = cg(_matvec(m), b, maxiter=1, max_residual_growth=1.0)
    assert bool(capped.fallback) and not bool(capped.breakdown)
    alpha = float(b @ b / (b @ m @ b))
    growth = jnp.linalg.norm(b - alpha * m @ b) / jnp.linalg.norm(b)  # CG's own last iterate
    np.testing.assert_allclose(capped.growth, growth, rtol=1e-12)
