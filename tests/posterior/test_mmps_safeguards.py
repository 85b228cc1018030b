"""MMPS's safeguards and symmetrised Jacobian: cost, the trust region, closed forms, errors.

Exactness on Gaussian priors and finite samples with bad priors, for every option, are
parametrised in test_mmps.py.
"""

import importlib

import gaussian_oracle as oracle
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_mmps import (
    BAD_PRIOR_DIM,
    NOISE_VAR,
    SIGMAS,
    _bad_denoisers,
    _bad_prior_problem,
    _setup,
    _ve_ddpm,
)

from diffssl_jax.posterior import operators as ops
from diffssl_jax.posterior.mmps import SAFEGUARDS, MMPSDenoiser, mmps, trust_radius_of


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


_solve = jax.jit(lambda d, x, sigma: d.solve(x, sigma))


@pytest.mark.parametrize("safeguard", SAFEGUARDS)
@pytest.mark.parametrize("maxiter", [1, 3])
def test_cost_is_one_forward_and_k_vjps_for_every_safeguard(safeguard, maxiter):
    """Measured without jit: one forward pass and exactly ``cg_maxiter`` vjps per call."""
    _, A, _, mean, cov, x0, y, _ = _setup("dense")
    counts = {"call": 0, "forward": 0, "vjp": 0}
    denoiser = oracle.counting_denoiser(mean, cov, counts)
    post = mmps(denoiser, A, y, NOISE_VAR, cg_maxiter=maxiter, safeguard=safeguard)
    with jax.disable_jit():
        out = post(x0 + 0.5, jnp.asarray(0.5))
    assert counts == {"call": 0, "forward": 1, "vjp": maxiter}
    assert bool(jnp.all(jnp.isfinite(out)))


def _count_products(jaxpr, shape):
    """``dot_general`` equations with an operand of ``shape`` in a jaxpr and its sub-jaxprs."""
    count = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            count += any(tuple(getattr(v.aval, "shape", ())) == shape for v in eqn.invars)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    count += _count_products(inner, shape)
    return count


@pytest.mark.parametrize("symmetrise", [False, True])
@pytest.mark.parametrize("maxiter", [1, 2, 5])
def test_cost_in_products_with_the_jacobian(monkeypatch, symmetrise, maxiter):
    """For ``D(x) = W x`` every product with ``W`` is a ``dot_general`` with a ``[d, d]``
    operand: ``1 + k`` (the forward pass and ``k`` vjps) with ``J^T``, ``1 + 2k`` (``k`` jvps
    and ``k`` vjps) with ``(J + J^T) / 2``; the CG iterations unrolled so each is counted."""
    module = importlib.import_module("diffssl_jax.posterior.mmps")  # not the function `mmps`
    monkeypatch.setattr(module, "max_unrolled_iterations", lambda: 16)
    dim = 16
    denoiser = _bad_denoisers(dim)["indefinite"]
    rng = np.random.default_rng(6)
    A = ops.DenseMatrix(jnp.asarray(rng.normal(size=(6, dim)) / 3))
    y = jnp.asarray(rng.normal(size=6))
    post = mmps(denoiser, A, y, NOISE_VAR, cg_maxiter=maxiter, symmetrise=symmetrise)
    jaxpr = jax.make_jaxpr(lambda x: post(x, 0.5))(jnp.ones(dim))
    assert _count_products(jaxpr.jaxpr, (dim, dim)) == 1 + (2 if symmetrise else 1) * maxiter


def test_symmetrised_mmps_solves_the_symmetrised_system_exactly():
    """For ``D(x) = W x`` with ``W`` asymmetric and ``(W + W^T) / 2`` positive definite,
    ``symmetrise=True`` at ``dim(y)`` iterations is ``W x + s^2 W_s A^T v`` with
    ``(Sigma_y + s^2 A W_s A^T) v = y - A W x`` (closed form, 1e-12), and differs from MMPS
    with ``J^T``."""
    rng = np.random.default_rng(7)
    dim, obs = 12, 5
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    skew = rng.normal(size=(dim, dim))
    w = (q * np.linspace(0.1, 1.0, dim)) @ q.T + 0.2 * (skew - skew.T)
    w_sym = (w + w.T) / 2
    denoiser = oracle.LinearDenoiser(jnp.zeros(dim), jnp.zeros(dim), fixed=jnp.asarray(w))
    a_mat = rng.normal(size=(obs, dim)) / 3
    A, y = ops.DenseMatrix(jnp.asarray(a_mat)), jnp.asarray(rng.normal(size=obs))
    x = jnp.asarray(rng.normal(size=dim))
    for sigma in SIGMAS:
        s2 = sigma**2
        v = np.linalg.solve(
            NOISE_VAR * np.eye(obs) + s2 * a_mat @ w_sym @ a_mat.T, y - a_mat @ w @ x
        )
        exact = w @ x + s2 * w_sym @ a_mat.T @ v
        # the residual cap, inert on this SPD system; the default trust region would cut the
        # exact correction of this linear (not unit-variance) denoiser at large sigma
        options = {"cg_maxiter": obs, "safeguard": "residual_cap"}
        post = mmps(denoiser, A, y, NOISE_VAR, symmetrise=True, **options)
        out, solution = _solve(post, x, sigma)
        assert np.linalg.norm(out - exact) <= 1e-12 * np.linalg.norm(exact)
        assert not bool(solution.fallback)
        plain = _solve(mmps(denoiser, A, y, NOISE_VAR, **options), x, sigma)[0]
        assert np.linalg.norm(plain - exact) > 1e-3 * np.linalg.norm(exact)


def test_trust_region_cuts_the_correction_to_its_radius():
    """``trust_region``: ``||out - D(x)|| <= trust_radius * s * sqrt(d / (1 + s^2))``, with
    equality (and a fallback) exactly when the truncated CG's correction (an unreachable
    radius) is longer; otherwise the output is the truncated CG's."""
    dim = 16
    denoiser = _bad_denoisers(dim)["indefinite"]
    rng = np.random.default_rng(8)
    A = ops.DenseMatrix(jnp.asarray(rng.normal(size=(6, dim)) / 3))
    cut = kept = 0
    for trial in range(12):
        y = jnp.asarray(rng.normal(size=6) * 3)
        x = jnp.asarray(rng.normal(size=dim))
        sigma = SIGMAS[trial % 3]
        options = {"cg_maxiter": 5, "trust_radius": 0.5, "safeguard": "trust_region"}
        region = mmps(denoiser, A, y, NOISE_VAR, **options)
        truncated = mmps(denoiser, A, y, NOISE_VAR, **{**options, "trust_radius": 1e30})
        out, solution = _solve(region, x, sigma)
        free, free_solution = _solve(truncated, x, sigma)
        radius = float(trust_radius_of(0.5, sigma, dim))
        prior = denoiser(x, sigma)
        length, free_length = (
            float(jnp.linalg.norm(out - prior)),
            float(jnp.linalg.norm(free - prior)),
        )
        if free_length > radius:
            np.testing.assert_allclose(length, radius, rtol=1e-12)
            np.testing.assert_allclose((out - prior) * free_length, (free - prior) * length)
            assert bool(solution.fallback)
            cut += 1
        else:
            np.testing.assert_allclose(out, free, rtol=1e-14)
            assert bool(solution.fallback) == bool(free_solution.fallback)
            kept += 1
    assert cut > 0 and kept > 0


def test_invalid_safeguard_options_fail_at_construction():
    _, A, _, _, _, _, y, denoiser = _setup("dense")
    with pytest.raises(ValueError, match="safeguard must be one of"):
        mmps(denoiser, A, y, NOISE_VAR, safeguard="cap")
    with pytest.raises(ValueError, match="trust_radius must be > 0"):
        mmps(denoiser, A, y, NOISE_VAR, trust_radius=0.0)
    with pytest.raises(ValueError, match="symmetrise must be True or False"):
        mmps(denoiser, A, y, NOISE_VAR, symmetrise=1)


def test_without_a_safeguard_cg_wrecks_samples_of_an_indefinite_prior():
    """The control of the finite-sample test (test_mmps.py): textbook CG (``"none"``) with the
    indefinite linear denoiser at 20 iterations gives samples that are not finite or far
    beyond the unguided scale, which is what every safeguard prevents."""
    denoiser, A, ys, sigmas, rngs, scale = _bad_prior_problem("indefinite")
    dim = BAD_PRIOR_DIM

    def sample(y, r):
        post = MMPSDenoiser(denoiser, A, y, NOISE_VAR, cg_maxiter=20, safeguard="none")
        return _ve_ddpm(post, r, dim, sigmas)

    samples = jax.jit(jax.vmap(sample))(ys, rngs)
    norms = jnp.linalg.norm(samples, axis=1)
    assert not bool(jnp.all(jnp.isfinite(samples))) or float(jnp.max(norms)) > 10 * scale
