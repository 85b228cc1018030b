"""DPS, PiGDM, TMPD and DiffPIR against their own closed forms on a linear-Gaussian problem."""

import gaussian_oracle as oracle
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax.posterior import baselines
from diffssl_jax.posterior import operators as ops

SIGMAS = [0.05, 0.5, 3.0]
NOISE_VAR = 0.05**2
KINDS = ["dense", "mask", "mri"]


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _setup(kind, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "dense":
        A, x_shape = ops.DenseMatrix(jnp.asarray(rng.normal(size=(8, 20)) / 4)), (20,)
    elif kind == "mask":
        A, x_shape = ops.PixelMask(jnp.asarray(rng.random((4, 4, 2)) < 0.5)), (4, 4, 2)
    else:
        A, x_shape = ops.UndersampledFourier(ops.mri_column_mask(0, 8, 2, 0.25)), (8, 8)
    mean, cov = oracle.random_prior(rng, int(np.prod(x_shape)))
    x0 = jnp.asarray(mean + np.linalg.cholesky(cov) @ rng.normal(size=len(mean))).reshape(x_shape)
    y = oracle.observe(rng, A, x0, NOISE_VAR)
    a_full = oracle.operator_matrix(A, x_shape)
    if np.iscomplexobj(a_full):  # realified, all rows kept
        a_full = np.concatenate([a_full.real, a_full.imag])
    y_full = np.asarray(y).reshape(-1)
    y_full = np.concatenate([y_full.real, y_full.imag]) if np.iscomplexobj(y_full) else y_full
    denoiser = oracle.LinearDenoiser(jnp.asarray(mean), jnp.asarray(cov))
    return rng, A, x_shape, mean, cov, x0, y, a_full, y_full, denoiser


_call = jax.jit(lambda d, x, sigma: d(x, sigma))


def _cases(kind):
    rng, A, x_shape, mean, cov, x0, y, a_full, y_full, denoiser = _setup(kind)
    for sigma in SIGMAS:
        x = x0 + sigma * jnp.asarray(rng.normal(size=x_shape))
        x_hat = oracle.denoise(mean, cov, np.asarray(x).reshape(-1), sigma)
        w = oracle.jacobian(mean, cov, sigma)
        yield sigma, x, x_hat, w, a_full, y_full


def _close(out, expected, rtol=1e-10):
    out = np.asarray(out).reshape(-1)
    assert np.linalg.norm(out - expected) <= rtol * np.linalg.norm(expected), np.linalg.norm(
        out - expected
    ) / np.linalg.norm(expected)


@pytest.mark.parametrize("kind", KINDS)
def test_dps_closed_form(kind):
    """x_hat + zeta sigma^2 W^T A^T r / ||r||: minus zeta sigma^2 grad ||y - A D(x)||."""
    _, A, _, _, _, _, y, _, _, denoiser = _setup(kind)
    post = baselines.dps(denoiser, A, y, NOISE_VAR, zeta=0.3)
    for sigma, x, x_hat, w, a, y_r in _cases(kind):
        r = y_r - a @ x_hat
        _close(_call(post, x, sigma), x_hat + 0.3 * sigma**2 * w.T @ a.T @ r / np.linalg.norm(r))


def test_dps_norm_is_per_example_and_safe_at_zero_residual():
    rng, A, x_shape, mean, cov, x0, y, *_ = _setup("dense")
    denoiser = oracle.LinearDenoiser(jnp.asarray(mean), jnp.asarray(cov))
    ys = jnp.stack([y, 100.0 * y])
    xs = jnp.stack([x0, x0])
    batched = jax.vmap(lambda y, x: baselines.DPSDenoiser(denoiser, A, y, NOISE_VAR)(x, 0.5))
    out = batched(ys, xs)
    single = baselines.dps(denoiser, A, y, NOISE_VAR)(x0, 0.5)
    np.testing.assert_allclose(out[0], single, rtol=1e-12)  # unaffected by the other example
    consistent = baselines.dps(denoiser, A, A(denoiser(x0, 0.5)), NOISE_VAR)(x0, 0.5)
    np.testing.assert_allclose(consistent, denoiser(x0, 0.5), rtol=1e-12)  # r = 0: no step


@pytest.mark.parametrize("kind", KINDS)
def test_pigdm_closed_form(kind):
    """x_hat + sigma^2 W^T A^T (Sigma_y + r^2 A A^T)^-1 (y - A x_hat), r^2 = s^2 v / (s^2 + v)."""
    _, A, _, _, _, _, y, _, _, denoiser = _setup(kind)
    num_real = y.size * (2 if jnp.iscomplexobj(y) else 1)
    post = baselines.pigdm(denoiser, A, y, NOISE_VAR, data_var=0.3, cg_maxiter=num_real, cg_rtol=0)
    for sigma, x, x_hat, w, a, y_r in _cases(kind):
        r2 = sigma**2 * 0.3 / (sigma**2 + 0.3)
        m = NOISE_VAR * np.eye(len(y_r)) + r2 * a @ a.T
        expected = x_hat + sigma**2 * w.T @ a.T @ np.linalg.solve(m, y_r - a @ x_hat)
        _close(_call(post, x, sigma), expected)


def test_pigdm_default_solve_is_exact_for_masks_in_two_iterations():
    _, A, _, _, _, _, y, _, _, denoiser = _setup("mask")
    exact = baselines.pigdm(denoiser, A, y, NOISE_VAR, cg_maxiter=y.size, cg_rtol=0)
    for sigma, x, *_ in _cases("mask"):
        two = baselines.pigdm(denoiser, A, y, NOISE_VAR, cg_maxiter=2, cg_rtol=0)
        _close(_call(two, x, sigma), np.asarray(_call(exact, x, sigma)).reshape(-1), 1e-12)


def _tmpd_expected(x_hat, w, a, y_r, sigma, noise_var, rel_floor=1e-3):
    row_sums = a @ w @ a.T @ np.ones(len(y_r))
    floor = rel_floor * np.mean(np.abs(row_sums))
    c = noise_var + sigma**2 * np.maximum(row_sums, floor)
    weighted = np.where(c > 0, (y_r - a @ x_hat) / np.where(c > 0, c, 1), 0)
    return x_hat + sigma**2 * w.T @ a.T @ weighted, row_sums, floor


@pytest.mark.parametrize("kind", KINDS)
def test_tmpd_closed_form(kind):
    """x_hat + sigma^2 W^T A^T [(y - A x_hat) / (Sigma_y + sigma^2 max(A W A^T 1, floor))]."""
    _, A, _, _, _, _, y, _, _, denoiser = _setup(kind)
    post = baselines.tmpd(denoiser, A, y, NOISE_VAR)
    for sigma, x, x_hat, w, a, y_r in _cases(kind):
        expected, *_ = _tmpd_expected(x_hat, w, a, y_r, sigma, NOISE_VAR)
        _close(_call(post, x, sigma), expected)


def test_tmpd_clips_non_positive_row_sums():
    """An indefinite denoiser gives negative row sums: clipped, finite, still the closed form."""
    rng = np.random.default_rng(1)
    dim = 12
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    w = (q * np.linspace(-1.0, 1.0, dim)) @ q.T
    denoiser = oracle.LinearDenoiser(jnp.zeros(dim), jnp.zeros(dim), fixed=jnp.asarray(w))
    a = rng.normal(size=(6, dim))
    y = jnp.asarray(rng.normal(size=6))
    x = jnp.asarray(rng.normal(size=dim))
    for noise_var in (NOISE_VAR, 0.0):
        post = baselines.tmpd(denoiser, ops.DenseMatrix(jnp.asarray(a)), y, noise_var)
        expected, row_sums, floor = _tmpd_expected(w @ x, w, a, np.asarray(y), 0.5, noise_var)
        assert np.any(row_sums < floor)
        out = _call(post, x, 0.5)
        assert bool(jnp.all(jnp.isfinite(out)))
        _close(out, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_diffpir_closed_form(kind):
    """argmin ||y - A z||^2 / (2 noise) + lambda ||z - x_hat||^2 / (2 sigma^2), primal form."""
    _, A, _, _, _, _, y, _, _, denoiser = _setup(kind)
    num_real = y.size * (2 if jnp.iscomplexobj(y) else 1)
    post = baselines.diffpir(denoiser, A, y, NOISE_VAR, lambda_=7.0, cg_maxiter=num_real, cg_rtol=0)
    for sigma, x, x_hat, _, a, y_r in _cases(kind):
        hessian = a.T @ a / NOISE_VAR + 7.0 / sigma**2 * np.eye(len(x_hat))
        expected = np.linalg.solve(hessian, a.T @ y_r / NOISE_VAR + 7.0 / sigma**2 * x_hat)
        _close(_call(post, x, sigma), expected, 1e-9)


def test_diffpir_matches_the_official_inpainting_formula_and_projects_when_noiseless():
    """Official code: (mask y + rho x_hat) / (mask + rho), rho = lambda sigma_n^2 / sigma^2."""
    _, A, x_shape, mean, cov, x0, y, _, _, denoiser = _setup("mask")
    mask = np.asarray(A.mask, np.float64)
    post = baselines.diffpir(denoiser, A, y, NOISE_VAR, lambda_=2.0)
    for sigma in SIGMAS:
        x_hat = np.asarray(denoiser(x0, sigma))
        rho = 2.0 * NOISE_VAR / sigma**2
        expected = (mask * np.asarray(y) + rho * x_hat) / (mask + rho)
        np.testing.assert_allclose(_call(post, x0, sigma), expected, rtol=1e-6, atol=1e-9)
    rng, A, x_shape, *_, denoiser = _setup("dense")
    y = jnp.asarray(rng.normal(size=8))
    out = baselines.diffpir(denoiser, A, y, 0.0, cg_maxiter=8, cg_rtol=0)(jnp.ones(x_shape), 1.0)
    np.testing.assert_allclose(A(out), y, atol=1e-10)


def test_costs_in_forward_passes_and_vjps():
    """Measured without jit: DPS and PiGDM 1 forward + 1 vjp; DiffPIR 1 plain call."""
    _, A, x_shape, mean, cov, x0, y, *_ = _setup("dense")
    expected = {"dps": (0, 1, 1), "pigdm": (0, 1, 1), "diffpir": (1, 0, 0)}
    for name, (call, forward, vjp) in expected.items():
        counts = {"call": 0, "forward": 0, "vjp": 0}
        post = getattr(baselines, name)(oracle.counting_denoiser(mean, cov, counts), A, y, 0.01)
        with jax.disable_jit():
            assert bool(jnp.all(jnp.isfinite(post(x0, jnp.asarray(0.5)))))
        assert counts == {"call": call, "forward": forward, "vjp": vjp}, name


def test_float64_end_to_end():
    _, A, x_shape, mean, cov, x0, y, *_, denoiser = _setup("mri")
    for name in ("dps", "pigdm", "tmpd", "diffpir"):
        post = getattr(baselines, name)(denoiser, A, y, NOISE_VAR)
        jaxpr = str(jax.make_jaxpr(lambda x, post=post: post(x, 0.5))(x0))
        assert "f32" not in jaxpr and "c64" not in jaxpr, name


def test_invalid_step_parameters():
    _, A, *_, y, _, _, denoiser = _setup("dense")
    with pytest.raises(ValueError, match="data_var"):
        baselines.pigdm(denoiser, A, y, NOISE_VAR, data_var=0.0)
    with pytest.raises(ValueError, match="rel_floor"):
        baselines.tmpd(denoiser, A, y, NOISE_VAR, rel_floor=0.0)
    with pytest.raises(ValueError, match="lambda_"):
        baselines.diffpir(denoiser, A, y, NOISE_VAR, lambda_=-1.0)
    with pytest.raises(ValueError, match="cg_maxiter"):
        baselines.diffpir(denoiser, A, y, NOISE_VAR, cg_maxiter=0)
    with pytest.raises(ValueError, match=">= 0"):
        baselines.dps(denoiser, A, y, -NOISE_VAR)
