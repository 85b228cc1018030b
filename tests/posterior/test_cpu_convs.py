"""`cpu_convs.canonical_conv_kernels`: the plain vjp's results (float32 rounding), canonical
kernels in the jaxpr, in and out of loops, under jit and vmap; MMPS and posterior sampling
equal with the switch on and off."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from diffssl_jax.posterior import cpu_convs, operators
from diffssl_jax.posterior.methods import posterior_method
from diffssl_jax.posterior.mmps import MAX_UNROLLED_ITERATIONS, max_unrolled_iterations
from diffssl_jax.posterior.problems import InverseProblem
from diffssl_jax.posterior.sampling import sample_posterior
from diffssl_jax.sampling import samplers

SHAPE = (8, 8, 2)


def _conv(x, w, stride=1, groups=1):
    return lax.conv_general_dilated(
        x,
        w,
        (stride, stride),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )


def _params():
    keys = jax.random.split(jax.random.key(0), 4)
    shapes = [(3, 3, 2, 8), (3, 3, 4, 8), (3, 3, 8, 8), (1, 1, 8, 2)]
    return [0.3 * jax.random.normal(k, s) for k, s in zip(keys, shapes, strict=True)]


def _net(params, x):
    """A conv net on one example: plain, grouped (2 groups), strided then upsampled, 1x1."""
    h = jax.nn.silu(_conv(x[None], params[0]))
    h = jax.nn.silu(_conv(h, params[1], groups=2))
    h = jax.nn.silu(_conv(h, params[2], stride=2))
    h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
    return (x[None] + _conv(h, params[3]))[0]


def _denoiser(x, sigma):
    return _net(_params(), x) / (1.0 + sigma**2)


def _chained_vjps(transform, x, k=3, loop=True):
    out, vjp = jax.vjp(lambda u: _net(_params(), u), x)
    vjp = transform(vjp)

    def body(_, u):
        return vjp(u)[0] / jnp.sqrt(jnp.sum(u * u))

    if loop:
        return lax.fori_loop(0, k, body, out)
    for i in range(k):
        out = body(i, out)
    return out


def _plain(fn):
    return fn


def _canonical(fn):
    return cpu_convs.canonical_conv_kernels(fn, force=True)


@pytest.mark.parametrize("loop", [True, False])
def test_vjps_equal_the_plain_ones_in_and_out_of_loops(loop):
    x = jax.random.normal(jax.random.key(1), SHAPE)
    plain = jax.jit(lambda x: _chained_vjps(_plain, x, loop=loop))(x)
    canonical = jax.jit(lambda x: _chained_vjps(_canonical, x, loop=loop))(x)
    np.testing.assert_allclose(canonical, plain, rtol=1e-5, atol=1e-6)
    batch = jax.random.normal(jax.random.key(2), (3, *SHAPE))
    vmapped = jax.jit(jax.vmap(lambda x: _chained_vjps(_canonical, x, loop=loop)))(batch)
    expected = jnp.stack([_chained_vjps(_plain, b, loop=loop) for b in batch])
    np.testing.assert_allclose(vmapped, expected, rtol=1e-5, atol=1e-6)


def test_the_rewritten_vjp_has_only_canonical_kernels():
    x = jax.random.normal(jax.random.key(1), SHAPE)
    _, vjp = jax.vjp(lambda u: _net(_params(), u), x)
    assert cpu_convs.has_noncanonical_conv(jax.make_jaxpr(vjp)(x).jaxpr)
    rewritten = jax.make_jaxpr(_canonical(vjp))(x).jaxpr
    assert not cpu_convs.has_noncanonical_conv(rewritten)
    assert "transpose" in str(rewritten)


def test_a_function_without_convolutions_is_unchanged():
    def fn(u):
        return (jnp.tanh(u) @ jnp.ones((2, 3)),)

    x = jax.random.normal(jax.random.key(3), (4, 2))
    wrapped = _canonical(fn)
    assert str(jax.make_jaxpr(wrapped)(x)) == str(jax.make_jaxpr(fn)(x))
    np.testing.assert_array_equal(wrapped(x)[0], fn(x)[0])


def test_the_switch_turns_it_off(monkeypatch):
    x = jax.random.normal(jax.random.key(1), SHAPE)
    _, vjp = jax.vjp(lambda u: _net(_params(), u), x)
    on_cpu = jax.default_backend() == "cpu"
    wrapped = jax.make_jaxpr(cpu_convs.canonical_conv_kernels(vjp))(x).jaxpr
    assert cpu_convs.has_noncanonical_conv(wrapped) != on_cpu
    monkeypatch.setenv(cpu_convs.ENV_SWITCH, "0")
    assert not cpu_convs.enabled()
    assert max_unrolled_iterations() == MAX_UNROLLED_ITERATIONS
    wrapped = jax.make_jaxpr(cpu_convs.canonical_conv_kernels(vjp))(x).jaxpr
    assert cpu_convs.has_noncanonical_conv(wrapped)


def _problem(n=3):
    mask = jnp.ones((n, *SHAPE)).at[:, 2:6, 2:6].set(0.0)
    truth = jax.random.normal(jax.random.key(4), (n, *SHAPE))
    A = operators.PixelMask(mask=mask)
    y = jax.vmap(lambda a, x: a(x))(A, truth)
    return InverseProblem(y=y, operators=A, noise_var=1e-2, shape=SHAPE)


@pytest.mark.parametrize("k", [1, 3])
def test_mmps_equals_the_plain_path(k, monkeypatch):
    """The CPU path (canonical kernels, CG in a loop above one iteration) against the plain
    one (switch off: the plain vjp, CG unrolled)."""
    problem = _problem()
    xs = jax.random.normal(jax.random.key(5), (3, *SHAPE))
    method = posterior_method("mmps", cg_maxiter=k)

    def call(A, y, x):
        return method(_denoiser, A, y, 1e-2)(x, jnp.float32(0.7))

    outputs = []
    for switch in ("1", "0"):
        monkeypatch.setenv(cpu_convs.ENV_SWITCH, switch)
        outputs.append(jax.jit(jax.vmap(call))(problem.operators, problem.y, xs))
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["mmps", "dps"])
def test_posterior_samples_equal_the_plain_path(name, monkeypatch):
    problem = _problem()
    sigmas = samplers.sigma_grid("karras", 3, 0.05, 2.0)
    outputs = []
    for switch in ("1", "0"):
        monkeypatch.setenv(cpu_convs.ENV_SWITCH, switch)
        method = posterior_method(name, **({"zeta": 0.5} if name == "dps" else {}))
        jax.clear_caches()  # the switch is read when the sampler is traced
        outputs.append(
            sample_posterior(method, _denoiser, problem, rng=jax.random.key(6), sigmas=sigmas)
        )
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-4, atol=1e-5)
