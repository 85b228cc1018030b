"""DPS as published (Chung et al. 2023, Alg. 1) against its formula on a Gaussian prior.

One `ddpm_ancestral` step with the `dps_published` guide is, in float64 and to 1e-12, the
ancestral step `x'` with `x0_hat = D(x)` minus `(zeta / ||r||) 2 J^T A^T (A D(x) - y)`, with
the closed-form `D` and `J` of `sampling.denoisers.GaussianDenoiser`.
"""

import gaussian_oracle as oracle
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax.configs.posterior.common import get_problem_config
from diffssl_jax.posterior import baselines
from diffssl_jax.posterior import operators as ops
from diffssl_jax.posterior.methods import method_options, posterior_method
from diffssl_jax.posterior.problems import InverseProblem
from diffssl_jax.posterior.sampling import sample_posterior
from diffssl_jax.sampling import samplers
from diffssl_jax.sampling.denoisers import GaussianDenoiser

DIM, NOISE_VAR, ZETA = 12, 0.05**2, 0.3
T, S = 1.5, 0.7  # one step sigma_t -> sigma_s


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _setup(kind, seed=0):
    """``(A, its matrix, y, mean, cov, prior, x)``: a Gaussian prior, an observation of a draw
    from it and a point ``x`` at noise level ``T``."""
    rng = np.random.default_rng(seed)
    mean, cov = oracle.random_prior(rng, DIM)
    if kind == "dense":
        A = ops.DenseMatrix(jnp.asarray(rng.normal(size=(5, DIM)) / 3))
    else:
        A = ops.PixelMask(jnp.asarray(rng.random(DIM) < 0.5))
    x0 = jnp.asarray(mean + np.linalg.cholesky(cov) @ rng.normal(size=DIM))
    y = oracle.observe(rng, A, x0, NOISE_VAR)
    x = x0 + T * jnp.asarray(rng.normal(size=DIM))
    prior = GaussianDenoiser(jnp.asarray(mean), jnp.asarray(cov))
    return A, oracle.operator_matrix(A, (DIM,)), y, mean, cov, prior, x


def _alg1_step(a, y, mean, cov, x, key, zeta):
    """Alg. 1, lines 3-7 by hand: ``x' - (zeta / ||r||) 2 J^T A^T (A D(x) - y)``."""
    x = np.asarray(x)
    d, j = oracle.denoise(mean, cov, x, T), oracle.jacobian(mean, cov, T)
    z = np.asarray(jax.random.normal(key, (DIM,), jnp.float64))
    x_prime = d + (S / T) ** 2 * (x - d) + S * np.sqrt(1 - (S / T) ** 2) * z
    r = np.asarray(y) - a @ d
    norm = np.linalg.norm(r)
    shift = (zeta / norm) * 2 * j.T @ a.T @ (a @ d - np.asarray(y)) if norm > 0 else 0.0
    return x_prime - shift


def _close(out, expected, rtol=1e-12):
    out, expected = np.asarray(out), np.asarray(expected)
    assert np.linalg.norm(out - expected) <= rtol * np.linalg.norm(expected)


@pytest.mark.parametrize("kind", ["dense", "mask"])
def test_one_step_is_the_ancestral_step_minus_zeta_i_grad(kind):
    A, a, y, mean, cov, prior, x = _setup(kind)
    key = jax.random.key(3)
    guided = baselines.dps_published(prior, A, y, NOISE_VAR, zeta=ZETA)
    out = jax.jit(samplers.ddpm_ancestral_step)(guided, x, T, S, key)
    _close(out, _alg1_step(a, y, mean, cov, x, key, ZETA))
    # The sign, independently: the shift is zeta / ||r|| times autodiff's grad ||y - A D||^2.
    x0_hat, shift = guided.guide(x, T)
    grad = jax.grad(lambda u: jnp.sum(jnp.square(y - A(prior(u, T)))))(x)
    _close(shift, ZETA / jnp.linalg.norm(y - A(x0_hat)) * grad)


def test_the_sampler_applies_the_shift_after_every_step_the_last_included():
    """Two steps ``T -> S -> 0`` of ``ddpm_ancestral`` are Alg. 1's two iterations."""
    A, a, y, mean, cov, prior, x = _setup("dense")
    guided = baselines.dps_published(prior, A, y, NOISE_VAR, zeta=ZETA)
    rng = jax.random.key(5)
    out = samplers.ddpm_ancestral(guided, rng, x, jnp.asarray([T, S, 0.0]))
    keys = jax.random.split(rng, 2)
    x_s = _alg1_step(a, y, mean, cov, x, keys[0], ZETA)
    d = oracle.denoise(mean, cov, x_s, S)  # the last step: x' = D(x_s, S), then the shift
    r = np.asarray(y) - a @ d
    j = oracle.jacobian(mean, cov, S)
    _close(out, d - (ZETA / np.linalg.norm(r)) * 2 * j.T @ a.T @ (a @ d - np.asarray(y)))


def test_zeta_i_uses_each_examples_own_norm_and_no_step_at_zero_residual():
    A, _, y, _, _, prior, x = _setup("dense")
    ys = jnp.stack([y, 100.0 * y])
    shifts = jax.vmap(lambda y: baselines.DPSGuide(prior, A, y, NOISE_VAR, zeta=ZETA)(x, T)[1])(ys)
    single = baselines.dps_published(prior, A, y, NOISE_VAR, zeta=ZETA).guide(x, T)[1]
    np.testing.assert_allclose(shifts[0], single, rtol=1e-12)  # unaffected by the other one
    consistent = baselines.dps_published(prior, A, A(prior(x, T)), NOISE_VAR, zeta=ZETA)
    x0_hat, shift = consistent.guide(x, T)
    assert np.all(np.asarray(shift) == 0.0)  # r = 0: no step, and no NaN
    key = jax.random.key(1)
    unguided = samplers.ddpm_ancestral_step(prior, x, T, S, key)
    np.testing.assert_array_equal(samplers.ddpm_ancestral_step(consistent, x, T, S, key), unguided)


def test_equals_dps_when_zeta_absorbs_the_steps_sigma_t2_minus_sigma_s2():
    """``DPSDenoiser(zeta_dps)`` in an ancestral step moves x by ``zeta_dps (t^2 - s^2)
    grad ||r||``: DPS as published with ``2 zeta = zeta_dps (t^2 - s^2)``."""
    A, _, y, _, _, prior, x = _setup("mask")
    key, zeta_dps = jax.random.key(2), 0.8
    published = baselines.dps_published(prior, A, y, NOISE_VAR, zeta=zeta_dps * (T**2 - S**2) / 2)
    posterior = baselines.dps(prior, A, y, NOISE_VAR, zeta=zeta_dps)
    _close(
        samplers.ddpm_ancestral_step(published, x, T, S, key),
        samplers.ddpm_ancestral_step(posterior, x, T, S, key),
    )


def test_one_forward_and_one_vjp_per_step():
    A, _, y, mean, cov, _, x = _setup("dense")
    counts = {"call": 0, "forward": 0, "vjp": 0}
    guided = baselines.dps_published(oracle.counting_denoiser(mean, cov, counts), A, y, 0.01)
    with jax.disable_jit():
        out = samplers.ddpm_ancestral_step(guided, x, jnp.asarray(T), S, jax.random.key(0))
    assert bool(jnp.all(jnp.isfinite(out)))
    assert counts == {"call": 0, "forward": 1, "vjp": 1}


def _problem(num_observations=3, seed=4):
    rng = np.random.default_rng(seed)
    mats = rng.normal(size=(num_observations, 5, DIM)) / 3
    ys = rng.normal(size=(num_observations, 5))
    operators = ops.DenseMatrix(jnp.asarray(mats))
    return InverseProblem(y=jnp.asarray(ys), operators=operators, noise_var=NOISE_VAR, shape=(DIM,))


def test_runs_through_sample_posterior_in_float64():
    *_, mean, cov, prior, _ = _setup("dense")
    samples = sample_posterior(
        posterior_method("dps_published", zeta=0.1),
        prior,
        _problem(),
        rng=jax.random.key(0),
        sigmas=samplers.sigma_grid("karras", 6, 0.01, 10.0),
        num_per_observation=2,
    )
    assert samples.shape == (3, 2, DIM) and samples.dtype == jnp.float64
    assert bool(jnp.all(jnp.isfinite(samples)))
    A, _, y, *_, x = _setup("dense")
    guided = baselines.dps_published(prior, A, y, NOISE_VAR)
    step = jax.make_jaxpr(
        lambda x: samplers.ddpm_ancestral_step(guided, x, T, S, jax.random.key(0))
    )
    assert "f32" not in str(step(x))


@pytest.mark.parametrize("sampler", ["ddim", "edm_heun", "euler_maruyama"])
def test_other_samplers_are_refused_before_any_denoiser_call(sampler):
    *_, mean, cov, _, _ = _setup("dense")
    counts = {"call": 0, "forward": 0, "vjp": 0}
    prior = oracle.counting_denoiser(mean, cov, counts)
    kwargs = dict(rng=jax.random.key(0), sigmas=samplers.sigma_grid("karras", 4, 0.01, 10.0))
    with pytest.raises(ValueError, match=f"{sampler} cannot apply.*ddpm_ancestral"):
        sample_posterior("dps_published", prior, _problem(), sampler=sampler, **kwargs)
    assert counts == {"call": 0, "forward": 0, "vjp": 0}  # not even traced
    A, _, y, *_, x = _setup("dense")
    guided = baselines.dps_published(prior, A, y, NOISE_VAR)
    with pytest.raises(ValueError, match="cannot apply"):
        samplers.make_sampler(sampler)(guided, kwargs["rng"], x, kwargs["sigmas"])


@pytest.mark.parametrize("zeta", [0.0, -1.0, float("nan"), float("inf"), True, "1"])
def test_bad_zeta_is_refused_before_sampling(zeta):
    A, _, y, _, _, prior, _ = _setup("dense")
    with pytest.raises(ValueError, match="finite zeta > 0"):
        baselines.dps_published(prior, A, y, NOISE_VAR, zeta=zeta)
    with pytest.raises(ValueError, match="finite zeta > 0"):
        sample_posterior(
            posterior_method("dps_published", zeta=zeta),
            prior,
            _problem(),
            rng=jax.random.key(0),
            sigmas=samplers.sigma_grid("karras", 4, 0.01, 10.0),
        )


def test_the_method_switch_and_the_problem_config_agree():
    assert method_options("dps_published") == {"zeta": 1.0}
    group = get_problem_config().method.dps_published
    assert group.to_dict() == method_options("dps_published")
    assert posterior_method("dps_published", zeta=0.5) == posterior_method(
        "dps_published", zeta=0.5
    )
