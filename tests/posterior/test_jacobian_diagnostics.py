"""Hutchinson estimates of a Jacobian's asymmetry and indefiniteness; fallback recording."""

import itertools

import gaussian_oracle as oracle
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax.posterior import operators as ops
from diffssl_jax.posterior.jacobian_diagnostics import (
    jacobian_stats,
    rademacher,
    record_trajectory,
    summarize_records,
)
from diffssl_jax.posterior.methods import posterior_method
from diffssl_jax.posterior.problems import InverseProblem
from diffssl_jax.posterior.sampling import sample_posterior

DIM = 8  # 2^8 sign vectors: the expectation over Rademacher probes can be enumerated


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _matrices():
    """Linear denoisers' Jacobians: symmetric PSD (a Gaussian prior's), asymmetric with a
    positive definite symmetric part, and indefinite and asymmetric."""
    rng = np.random.default_rng(0)
    mean, cov = oracle.random_prior(rng, DIM)
    q, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    skew = rng.normal(size=(DIM, DIM))
    spd = (q * np.linspace(0.2, 1.0, DIM)) @ q.T
    return {
        "gaussian": oracle.jacobian(mean, cov, 0.7),
        "asymmetric": spd + 0.3 * (skew - skew.T),
        "indefinite": (q * np.linspace(-0.8, 1.0, DIM)) @ q.T + 0.1 * (skew - skew.T),
    }


def _exact(w):
    """The estimated quantities in closed form, the probe expectations by enumeration."""
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=DIM)))
    zwz = np.einsum("ni,ij,nj->n", signs, w, signs)
    return {
        "frobenius": np.linalg.norm(w),
        "asymmetry": np.linalg.norm(w - w.T) / np.linalg.norm(w),
        "trace": np.trace(w),
        "negative_fraction": np.mean(zwz < 0),
        "min_rayleigh": zwz.min() / DIM,
        "lambda_min": np.linalg.eigvalsh((w + w.T) / 2).min(),
    }


def _stats(w, probes):
    denoiser = oracle.LinearDenoiser(jnp.zeros(DIM), jnp.zeros(DIM), fixed=jnp.asarray(w))
    x = jnp.asarray(np.random.default_rng(1).normal(size=DIM))
    return jax.jit(jacobian_stats)(denoiser, x, 0.5, probes)


@pytest.mark.parametrize("name", ["gaussian", "asymmetric", "indefinite"])
def test_all_sign_vectors_give_the_exact_values(name):
    """Probes = all 2^8 sign vectors (the Rademacher expectation, exactly): every estimate
    equals its closed form to rounding; a PSD Jacobian has no negative ``z^T J z``."""
    w = _matrices()[name]
    probes = jnp.asarray(list(itertools.product([-1.0, 1.0], repeat=DIM)))
    stats, exact = _stats(w, probes), _exact(w)
    for key in ("frobenius", "asymmetry", "trace", "negative_fraction", "min_rayleigh"):
        np.testing.assert_allclose(getattr(stats, key), exact[key], rtol=1e-12, atol=1e-14)
    assert exact["min_rayleigh"] >= exact["lambda_min"] - 1e-12
    if name == "gaussian":
        assert float(stats.asymmetry) < 1e-12 and float(stats.negative_fraction) == 0
    if name == "indefinite":
        assert float(stats.negative_fraction) > 0 and float(stats.min_rayleigh) < 0


def _rademacher_variance(b):
    """``Var(z^T B z)`` for Rademacher ``z`` and symmetric ``B``: ``2 sum_{i != j} B_ij^2``."""
    return 2 * (np.sum(b**2) - np.sum(np.diag(b) ** 2))


@pytest.mark.parametrize("name", ["gaussian", "asymmetric", "indefinite"])
def test_random_probes_converge_within_their_standard_errors(name):
    """4096 random probes: each unbiased estimate (``||J||_F^2``, ``||J - J^T||_F^2``,
    ``tr J``, ``P(z^T J z < 0)``) is within 5 standard errors of its exact value, the standard
    errors from the closed-form Rademacher variances; the smallest Rayleigh quotient over
    4096 probes is the minimum over the 256 sign vectors (missed with probability < 1e-6)."""
    n = 4096
    w = _matrices()[name]
    stats, exact = _stats(w, rademacher(jax.random.key(2), n, (DIM,), jnp.float64)), _exact(w)
    k = w - w.T
    checks = {
        "frobenius^2": (stats.frobenius**2, exact["frobenius"] ** 2, w.T @ w),
        "skew^2": ((stats.asymmetry * stats.frobenius) ** 2, np.sum(k**2), k.T @ k),
        "trace": (stats.trace, exact["trace"], (w + w.T) / 2),
    }
    for key, (estimate, value, b) in checks.items():
        error = np.sqrt(_rademacher_variance(b) / n)
        assert abs(float(estimate) - value) <= 5 * error + 1e-12, (key, estimate, value, error)
    p = exact["negative_fraction"]
    assert abs(float(stats.negative_fraction) - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12
    np.testing.assert_allclose(stats.min_rayleigh, exact["min_rayleigh"], rtol=1e-12)


def test_probes_must_match_the_example():
    with pytest.raises(ValueError, match="probes must be"):
        _stats(_matrices()["gaussian"], jnp.ones((4, DIM + 1)))


def _problem(num):
    rng = np.random.default_rng(3)
    a_mat = jnp.asarray(rng.normal(size=(num, 5, DIM)) / 3)
    return InverseProblem(
        y=jnp.asarray(rng.normal(size=(num, 5))),
        operators=ops.DenseMatrix(a_mat),
        noise_var=jnp.asarray(0.01),
        shape=(DIM,),
    )


@pytest.fixture
def _global_x64():
    """x64 for every thread: the recorder's callbacks run where ``jax.enable_x64()`` (a
    context of the test's thread) does not hold, and would receive float32 copies."""
    # The global value, not the effective one: the autouse `_x64` context is active here.
    previous = jax.config._value_holders["jax_enable_x64"].get_global()
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.mark.usefixtures("_global_x64")
@pytest.mark.parametrize("name", ["gaussian", "indefinite"])
def test_record_trajectory_replays_the_sampler_and_counts_fallbacks(name):
    """The replay gives the normal run's samples (to rounding: another compiled program);
    every sigma of the grid is recorded once per sample; on a Gaussian prior no safeguard
    fires and no ``p^T M p <= 0``; on the indefinite linear denoiser the Jacobian estimates
    are its closed forms (all sign vectors as probes) and some calls fall back."""
    num, per = 2, 3
    w = _matrices()[name]
    denoiser = oracle.LinearDenoiser(jnp.zeros(DIM), jnp.zeros(DIM), fixed=jnp.asarray(w))
    if name == "gaussian":
        mean, cov = oracle.random_prior(np.random.default_rng(0), DIM)
        denoiser = oracle.LinearDenoiser(jnp.asarray(mean), jnp.asarray(cov))
    problem = _problem(num)
    sigmas = jnp.append(jnp.exp(jnp.linspace(jnp.log(10.0), jnp.log(0.01), 12)), 0.0)
    # Truncated CG alone (an unreachable trust radius): it fires exactly at breakdowns.
    method = posterior_method("mmps", cg_maxiter=5, safeguard="trust_region", trust_radius=1e30)
    kwargs = {"rng": jax.random.key(4), "sigmas": sigmas, "sampler": "ddpm_ancestral"}
    kwargs["num_per_observation"] = per
    plain = sample_posterior(method, denoiser, problem, **kwargs)
    probes = jnp.asarray(list(itertools.product([-1.0, 1.0], repeat=DIM)))
    samples, records = record_trajectory(method, denoiser, problem, probes=probes, **kwargs)
    np.testing.assert_allclose(samples, plain, rtol=1e-10, atol=1e-12)  # same run, rounding
    rows = summarize_records(records)
    np.testing.assert_allclose([r["sigma"] for r in rows], sigmas[:-1], rtol=1e-15)
    assert all(r["calls"] == num * per for r in rows)
    fire = [r["fire_rate"] for r in rows]
    if name == "gaussian":
        assert max(fire) == 0 and all(r["negative_curvature_rate"] == 0 for r in rows)
        assert all(r["negative_fraction"] == 0 for r in rows)
    else:
        exact = _exact(w)
        for row in rows:
            np.testing.assert_allclose(row["asymmetry"], exact["asymmetry"], rtol=1e-10)
            np.testing.assert_allclose(row["min_rayleigh"], exact["min_rayleigh"], rtol=1e-10)
        assert max(fire) > 0
        assert all(r["fire_rate"] == r["breakdown_rate"] for r in rows)
