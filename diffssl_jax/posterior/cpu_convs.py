"""XLA:CPU: canonical convolution kernels, so that a vjp through a conv net is fast in a loop.

JAX's transpose of ``conv_general_dilated`` with respect to its input (every vjp through a
convolution) is a convolution whose kernel dimension numbers swap the input and output
features (``dim_labels=b01f_01oi->b01f`` for an NHWC/HWIO net). XLA:CPU runs a convolution
through its fast library paths (Eigen, XNNPACK/YNNPACK fusions) only with the canonical HWIO
kernel; its ``ConvCanonicalization`` pass, which inserts the kernel transpose that makes a
convolution canonical, walks the module's entry computation only
(``xla/service/cpu/conv_canonicalization.cc``: ``module->entry_computation()``). A
transposed convolution inside any loop body (``while_loop``, ``scan``, ``fori_loop``: the
sampler's steps, CG's iterations) therefore stays non-canonical and is emitted as XLA's naive
loop-nest convolution: ``benchmarks/vjp_in_loop.py`` measured 8 chained vjps 20-55x slower
in a loop body than unrolled (3-layer conv net; digits U-Net 21x), forward passes unaffected.

``canonical_conv_kernels(fn)`` re-evaluates ``fn``'s jaxpr with every convolution's kernel
transposed to the canonical layout by an explicit ``lax.transpose`` (the same convolution,
the same sums: results equal to float32 rounding) and its dimension numbers relabelled, so
that a loop body holds canonical convolutions: the loop then costs what the unrolled code
costs (benchmarks/README.md). Applied only on the CPU backend, and only when ``fn`` has a
non-canonical kernel (otherwise ``fn`` runs as it is); ``DIFFSSL_CPU_CANONICAL_CONVS=0``
turns it off (read when a function is traced).
"""

import os

import jax
from jax import lax
from jax.extend.core import Literal

ENV_SWITCH = "DIFFSSL_CPU_CANONICAL_CONVS"
_INLINED = ("jit", "pjit")  # nested jitted calls are inlined (XLA inlines them anyway)


def enabled() -> bool:
    """Whether to rewrite: on the CPU backend, unless ``DIFFSSL_CPU_CANONICAL_CONVS=0``."""
    return jax.default_backend() == "cpu" and os.environ.get(ENV_SWITCH, "1") != "0"


def _canonical_rhs_spec(ndim: int) -> tuple[int, ...]:
    """``ConvDimensionNumbers.rhs_spec`` of an ``H W ... I O`` kernel: ``(O, I, spatial...)``."""
    return (ndim - 1, ndim - 2, *range(ndim - 2))


def _needs_rewrite(eqn) -> bool:
    if eqn.primitive is not lax.conv_general_dilated_p:
        return False
    spec = tuple(eqn.params["dimension_numbers"].rhs_spec)
    return spec != _canonical_rhs_spec(len(spec))


def has_noncanonical_conv(jaxpr) -> bool:
    """Whether a jaxpr (or a jitted call in it) has a convolution with a non-HWIO kernel."""
    for eqn in jaxpr.eqns:
        if _needs_rewrite(eqn):
            return True
        if eqn.primitive.name in _INLINED and has_noncanonical_conv(eqn.params["jaxpr"].jaxpr):
            return True
    return False


def _conv(eqn, lhs, rhs):
    """The convolution of ``eqn`` with its kernel transposed to ``H W ... I O``."""
    numbers = eqn.params["dimension_numbers"]
    spec = numbers.rhs_spec
    kernel = lax.transpose(rhs, (*spec[2:], spec[1], spec[0]))
    canonical = numbers._replace(rhs_spec=_canonical_rhs_spec(len(spec)))
    return eqn.primitive.bind(lhs, kernel, **{**eqn.params, "dimension_numbers": canonical})


def _evaluate(jaxpr, consts, args):
    """``jax.core.eval_jaxpr`` with non-canonical convolutions rewritten, jitted calls inlined."""
    env = dict(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    for eqn in jaxpr.eqns:
        values = [read(v) for v in eqn.invars]
        with eqn.ctx.manager:
            if _needs_rewrite(eqn):
                outs = [_conv(eqn, *values)]
            elif eqn.primitive.name in _INLINED:
                inner = eqn.params["jaxpr"]
                outs = _evaluate(inner.jaxpr, inner.consts, values)
            else:
                outs = eqn.primitive.bind(*values, **eqn.primitive.get_bind_params(eqn.params))
                outs = outs if eqn.primitive.multiple_results else [outs]
        env.update(zip(eqn.outvars, outs, strict=True))
    return [read(v) for v in jaxpr.outvars]


def canonical_conv_kernels(fn, *, force: bool = False):
    """``fn`` with every convolution's kernel made canonical (HWIO), on XLA:CPU.

    Args:
      fn: a function of arrays (pytrees), e.g. the ``vjp_fn`` of ``jax.vjp`` or a posterior
        denoiser; it may close over tracers of an enclosing ``jit``/``vmap``/loop.
      force: rewrite whatever the backend and the switch say (for tests).

    Returns:
      A function with ``fn``'s signature and results (equal to float32 rounding). Off the CPU
      backend or with the switch off it calls ``fn``; when ``fn`` has no non-canonical
      convolution it evaluates ``fn``'s jaxpr as it is (the same operations; ``fn``'s Python
      runs once, when it is traced).
    """

    def wrapped(*args):
        if not (force or enabled()):
            return fn(*args)
        flat, tree = jax.tree.flatten(args)
        closed, out_shape = jax.make_jaxpr(
            lambda *leaves: fn(*jax.tree.unflatten(tree, leaves)), return_shape=True
        )(*flat)
        if has_noncanonical_conv(closed.jaxpr):
            outs = _evaluate(closed.jaxpr, closed.consts, flat)
        else:  # the same primitives as fn's, without running fn's Python a second time
            outs = jax.core.eval_jaxpr(closed.jaxpr, closed.consts, *flat)
        return jax.tree.unflatten(jax.tree.structure(out_shape), outs)

    return wrapped
