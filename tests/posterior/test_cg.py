"""CG: exactness against jnp.linalg.solve, aux accumulation, breakdown guard, matvec count."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax.posterior.cg import SAFEGUARDS, cg


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _spd(rng, n, cond=100.0, complex_=False):
    z = rng.normal(size=(n, n)) + (1j * rng.normal(size=(n, n)) if complex_ else 0)
    q, _ = np.linalg.qr(z)
    return jnp.asarray((q * np.logspace(0, np.log10(cond), n)) @ q.conj().T)


def _matvec(m, aux_mat=None):
    def matvec(p):
        return m @ p, (() if aux_mat is None else aux_mat @ p)

    return matvec


def test_spd_exact_at_n_iterations_and_monotone_energy_error():
    """At n iterations CG is exact (to 1e-12 for a condition number of 10); the M-norm of the
    error never increases (CG's optimality). Plain CG's residual norm is not monotone, so
    that is not asserted."""
    rng = np.random.default_rng(0)
    n = 12
    m, b = _spd(rng, n, cond=10.0), jnp.asarray(rng.normal(size=n))
    exact = jnp.linalg.solve(m, b)
    solve = jax.jit(lambda k: cg(_matvec(m), b, maxiter=k), static_argnums=0)
    energy = []
    for k in range(n + 1):
        res = solve(k)
        err = res.x - exact
        energy.append(float(jnp.sqrt(err @ m @ err)))
        true_residual = jnp.linalg.norm(b - m @ res.x)
        np.testing.assert_allclose(res.residual_norm, true_residual, rtol=1e-6, atol=1e-12)
        assert int(res.iterations) == k and not bool(res.breakdown)
    assert all(e1 <= e0 * (1 + 1e-10) for e0, e1 in zip(energy, energy[1:], strict=False))
    assert float(jnp.linalg.norm(solve(n).x - exact) / jnp.linalg.norm(exact)) <= 1e-12


def test_ill_conditioned_spd_reaches_1e12_a_few_iterations_after_n():
    """Finite precision delays CG (lost orthogonality): at cond 1e2 a few more iterations than
    n reach 1e-12 (no stall, unlike clipped denominators)."""
    rng = np.random.default_rng(1)
    n = 12
    m, b = _spd(rng, n, cond=100.0), jnp.asarray(rng.normal(size=n))
    exact = jnp.linalg.solve(m, b)
    res = cg(_matvec(m), b, maxiter=n + 4)
    assert float(jnp.linalg.norm(res.x - exact) / jnp.linalg.norm(exact)) <= 1e-12


def _textbook_cg(m, b, k):
    """``k`` iterations of Hestenes-Stiefel CG in numpy; returns the iterate and residual norms."""
    x, r, p, rr = np.zeros(len(b)), np.asarray(b), np.asarray(b), float(b @ b)
    residuals = []
    for _ in range(k):
        mp = np.asarray(m) @ p
        alpha = rr / (p @ mp)
        x, r = x + alpha * p, r - alpha * mp
        p, rr = r + (r @ r) / rr * p, float(r @ r)
        residuals.append(np.sqrt(rr))
    return x, residuals


def test_spd_iterates_are_plain_cg_even_when_the_residual_rises():
    """On an SPD system whose CG residual rises at step 4 the iterates are textbook CG's: the
    guard only falls back on breakdown or when CG's objective did not fall. (Up to step 6:
    later, rounding differences grow by the condition number 1e3.)"""
    rng = np.random.default_rng(8)
    m, b = _spd(rng, 10, cond=1e3), jnp.asarray(rng.normal(size=10))
    for k in range(1, 7):
        x, residuals = _textbook_cg(m, b, k)
        np.testing.assert_allclose(cg(_matvec(m), b, maxiter=k).x, x, rtol=1e-10, atol=1e-12)
    assert any(r1 > r0 for r0, r1 in zip(residuals, residuals[1:], strict=False))


def test_spd_step_is_kept_when_its_residual_exceeds_b_unless_capped():
    """M = diag(1, 100), b = (1, 0.1): one CG step has ``||r|| = 4.97 > ||b|| = 1.005`` (cos^2
    of the angle between b and M b is 0.04 < 1/2), yet it is the exact M-norm minimiser along
    b and is returned; ``max_residual_growth=1`` restores the old cap and returns 0."""
    m, b = jnp.diag(jnp.array([1.0, 100.0])), jnp.array([1.0, 0.1])
    alpha = float(b @ b / (b @ m @ b))
    res = cg(_matvec(m), b, maxiter=1)
    np.testing.assert_allclose(res.x, alpha * b, rtol=1e-14)
    np.testing.assert_allclose(res.residual_norm, jnp.linalg.norm(b - m @ (alpha * b)), rtol=1e-12)
    assert float(res.residual_norm) > 4 * float(jnp.linalg.norm(b)) and not bool(res.breakdown)
    capped = cg(_matvec(m), b, maxiter=1, max_residual_growth=1.0)
    np.testing.assert_array_equal(capped.x, jnp.zeros(2))
    np.testing.assert_allclose(capped.residual_norm, jnp.linalg.norm(b), rtol=1e-14)
    loose = cg(_matvec(m), b, maxiter=1, max_residual_growth=10.0)
    np.testing.assert_allclose(loose.x, alpha * b, rtol=1e-14)


def test_complex_hermitian_system():
    rng = np.random.default_rng(1)
    n = 10
    m = _spd(rng, n, cond=10.0, complex_=True)
    b = jnp.asarray(rng.normal(size=n) + 1j * rng.normal(size=n))
    res = jax.jit(lambda b: cg(_matvec(m), b, maxiter=n))(b)
    exact = jnp.linalg.solve(m, b)
    assert res.x.dtype == jnp.complex128
    assert float(jnp.linalg.norm(res.x - exact) / jnp.linalg.norm(exact)) <= 1e-12


@pytest.mark.parametrize("maxiter", [1, 3, 12])
def test_aux_accumulates_a_linear_function_of_the_solution(maxiter):
    """aux(v) = sum alpha_i aux(p_i) equals aux applied to the returned v, for pytree aux."""
    rng = np.random.default_rng(2)
    n = 12
    m, b = _spd(rng, n), jnp.asarray(rng.normal(size=n))
    b_mat = jnp.asarray(rng.normal(size=(5, n)))
    c_mat = jnp.asarray(rng.normal(size=(2, 3, n)))

    def matvec(p):
        return m @ p, {"B": b_mat @ p, "C": c_mat @ p}

    res = cg(matvec, b, maxiter=maxiter)
    np.testing.assert_allclose(res.aux["B"], b_mat @ res.x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(res.aux["C"], c_mat @ res.x, rtol=1e-12, atol=1e-12)


def test_pytree_right_hand_side():
    rng = np.random.default_rng(3)
    m1, m2 = _spd(rng, 4), _spd(rng, 3)
    b = {"a": jnp.asarray(rng.normal(size=4)), "b": jnp.asarray(rng.normal(size=3))}
    res = cg(lambda p: ({"a": m1 @ p["a"], "b": m2 @ p["b"]}, p["a"][:2]), b, maxiter=7)
    np.testing.assert_allclose(res.x["a"], jnp.linalg.solve(m1, b["a"]), rtol=1e-10)
    np.testing.assert_allclose(res.x["b"], jnp.linalg.solve(m2, b["b"]), rtol=1e-10)
    np.testing.assert_allclose(res.aux, res.x["a"][:2], rtol=1e-12)


def _objective(m, b, x):
    """CG's objective ``phi(x) = x^T M x / 2 - b^T x`` (``phi(0) = 0``)."""
    return float(x @ m @ x / 2 - b @ x)


@pytest.mark.parametrize("maxiter", [1, 2, 5, 20])
def test_breakdown_guard_on_indefinite_matrix(maxiter):
    """pMp <= 0 stops CG; after a breakdown the smallest-residual iterate (v = 0 included)
    comes back, finite, with ``||b - M x|| <= ||b||``; without one (a single step here), the
    step lowers CG's objective."""
    rng = np.random.default_rng(4)
    n = 8
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    m = jnp.asarray((q * np.array([3.0, 2.0, 1.0, 0.5, -0.5, -1.0, -2.0, -3.0])) @ q.T)
    b = jnp.asarray(q[:, 0] + q[:, 7] + 0.1 * rng.normal(size=n))  # b^T M b ~ 0: breaks early
    b_mat = jnp.asarray(rng.normal(size=(3, n)))
    res = cg(_matvec(m, b_mat), b, maxiter=maxiter)
    assert bool(jnp.all(jnp.isfinite(res.x)))
    true_residual = float(jnp.linalg.norm(b - m @ res.x))
    np.testing.assert_allclose(res.residual_norm, true_residual, rtol=1e-8)
    np.testing.assert_allclose(res.aux, b_mat @ res.x, atol=1e-12)
    if maxiter >= 2:
        assert bool(res.breakdown)
        assert true_residual <= float(jnp.linalg.norm(b)) * (1 + 1e-12)
    else:
        assert _objective(m, b, res.x) < 0


def test_guard_on_random_nonsymmetric_systems():
    """Without symmetry CG's iterates can diverge. What is returned is finite and either lowers
    CG's objective (true ``M``, not the recursion) or has ``||b - M x|| <= ||b||``; with
    ``max_residual_growth=1`` always the latter. Both branches occur over these trials."""
    rng = np.random.default_rng(5)
    fell_back = kept = 0
    for trial in range(10):
        m = jnp.asarray(rng.normal(size=(10, 10)) + (trial % 3) * np.eye(10))
        b = jnp.asarray(rng.normal(size=10))
        for k in (1, 4, 20):
            res = cg(_matvec(m), b, maxiter=k)
            assert bool(jnp.all(jnp.isfinite(res.x)))
            residual = float(jnp.linalg.norm(b - m @ res.x))
            within = residual <= float(jnp.linalg.norm(b)) * (1 + 1e-10)
            assert _objective(m, b, res.x) < 0 or within
            kept += not within
            fell_back += bool(res.breakdown)
            capped = cg(_matvec(m), b, maxiter=k, max_residual_growth=1.0)
            capped_residual = float(jnp.linalg.norm(b - m @ capped.x))
            assert capped_residual <= float(jnp.linalg.norm(b)) * (1 + 1e-10)
    assert fell_back > 0 and kept > 0


def test_non_finite_matvec_returns_zero():
    res = cg(lambda p: (p * jnp.nan, p), jnp.ones(4), maxiter=3)
    assert bool(res.breakdown) and int(res.iterations) == 1
    np.testing.assert_array_equal(res.x, jnp.zeros(4))
    np.testing.assert_array_equal(res.aux, jnp.zeros(4))


def test_rtol_stops_early():
    rng = np.random.default_rng(6)
    n = 30
    m, b = _spd(rng, n, cond=5.0), jnp.asarray(rng.normal(size=n))
    res = cg(_matvec(m), b, maxiter=n, rtol=1e-6)
    assert 0 < int(res.iterations) < n
    assert float(jnp.linalg.norm(b - m @ res.x)) <= 1e-6 * float(jnp.linalg.norm(b)) * 1.001


def test_matvec_count_no_evaluation_at_the_initial_guess():
    """k iterations evaluate exactly k matvecs (none at x0 = 0); b = 0 evaluates none. Without
    ``aux_like`` one more call is an abstract trace by ``jax.eval_shape`` (no FLOPs)."""
    rng = np.random.default_rng(7)
    m, b = _spd(rng, 6), jnp.asarray(rng.normal(size=6))
    calls = []

    def matvec(p):
        calls.append(isinstance(p, jax.core.Tracer))
        return m @ p, ()

    with jax.disable_jit():
        for k in (1, 3, 5):
            calls.clear()
            cg(matvec, b, maxiter=k, aux_like=())
            assert calls == [False] * k
            calls.clear()
            cg(matvec, b, maxiter=k)
            assert calls == [True] + [False] * k
        calls.clear()
        res = cg(matvec, jnp.zeros(6), maxiter=4, aux_like=())
        assert calls == [] and int(res.iterations) == 0
        np.testing.assert_array_equal(res.x, jnp.zeros(6))


def test_vmap_and_float32():
    rng = np.random.default_rng(8)
    m = _spd(rng, 5, cond=10.0).astype(jnp.float32)
    bs = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
    res = jax.jit(jax.vmap(lambda b: cg(_matvec(m), b, maxiter=5)))(bs)
    assert res.x.dtype == jnp.float32 and res.residual_norm.dtype == jnp.float32
    expected = jnp.linalg.solve(m.astype(jnp.float64), bs.astype(jnp.float64).T).T
    np.testing.assert_allclose(res.x, expected, rtol=1e-4, atol=1e-5)
    for i in range(4):
        single = cg(_matvec(m), bs[i], maxiter=5)
        np.testing.assert_allclose(res.x[i], single.x, rtol=1e-5, atol=1e-6)


def test_invalid_options():
    with pytest.raises(ValueError, match="maxiter"):
        cg(lambda p: (p, ()), jnp.ones(2), maxiter=-1)
    with pytest.raises(ValueError, match="rtol"):
        cg(lambda p: (p, ()), jnp.ones(2), maxiter=1, rtol=-1.0)
    with pytest.raises(ValueError, match="max_residual_growth"):
        cg(lambda p: (p, ()), jnp.ones(2), maxiter=1, max_residual_growth=0.5)
    with pytest.raises(ValueError, match="safeguard must be one of"):
        cg(lambda p: (p, ()), jnp.ones(2), maxiter=1, safeguard="cap")
    with pytest.raises(ValueError, match="option of residual_cap, not steihaug"):
        cg(lambda p: (p, ()), jnp.ones(2), maxiter=1, safeguard="steihaug", max_residual_growth=2)


@pytest.mark.parametrize("safeguard", SAFEGUARDS)
@pytest.mark.parametrize("maxiter, rtol", [(1, 0.0), (4, 0.0), (12, 1e-6), (6, 0.0)])
def test_unrolled_loop_equals_the_while_loop(maxiter, rtol, safeguard):
    """``unroll=True`` (used by MMPS) freezes finished iterations: same result as the loop,
    on an SPD system, with an early stop, and through the breakdown guard."""
    rng = np.random.default_rng(7)
    n = 8
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    spd = _spd(rng, n, cond=5.0)
    indefinite = jnp.asarray((q * np.array([3.0, 2, 1, 0.5, -0.5, -1, -2, -3])) @ q.T)
    b, b_mat = jnp.asarray(rng.normal(size=n)), jnp.asarray(rng.normal(size=(3, n)))
    for m in (spd, indefinite):
        loop = cg(_matvec(m, b_mat), b, maxiter=maxiter, rtol=rtol, safeguard=safeguard)
        unrolled = cg(
            _matvec(m, b_mat), b, maxiter=maxiter, rtol=rtol, safeguard=safeguard, unroll=True
        )
        for a, u in zip(loop, unrolled, strict=True):
            np.testing.assert_allclose(u, a, rtol=1e-12, atol=1e-14)
