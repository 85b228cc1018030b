r"""A vjp through a conv net inside a loop body against the same vjps unrolled (XLA:CPU).

    .venv/bin/python benchmarks/vjp_in_loop.py                  # both nets, all loop forms
    XLA_FLAGS=--xla_dump_to=/tmp/vjp_dump .venv/bin/python benchmarks/vjp_in_loop.py --nets=conv

The minimal reproduction of issue 17 item 3. For a net ``f`` (a 3-layer 3x3 conv net, and
the digits U-Net of `configs/ddpm/digits.py`, random weights passed as jit arguments) and a
batch ``x``, ``k`` chained passes (each depends on the last, as in CG) are jitted in four
forms: unrolled in Python, ``lax.fori_loop`` (static bounds), ``lax.scan`` and
``lax.while_loop`` (traced bound). The passes: ``vjp`` (``jax.vjp(f, x)`` once outside, then
``u <- vjp(u) / ||u||``: MMPS's CG), ``step`` (a forward pass and a vjp at the current point:
a guided sampler step) and ``forward`` (``u <- f(u)``, the control). Each runs plain and with
the vjp through ``posterior.cpu_convs.canonical_conv_kernels`` (the fix). Times: median of
``--repeats`` calls after one compiling call, per pass, and their ratio to the plain unrolled
time of the same pass in the same run.

The cause, from ``XLA_FLAGS=--xla_dump_to=DIR --xla_dump_hlo_pass_re=.*`` (see
benchmarks/README.md): in a loop body the vjp's convolutions keep the kernel labels
``01oi`` and compile to naive loop-nest convolutions (``wrapped_convolution`` kLoop fusions);
unrolled, ``convolution-canonicalization`` transposes their kernels to ``01io`` and they
become library convolutions (``__ynn_fusion``). That pass visits the entry computation only.
"""

import functools
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from absl import app, flags  # noqa: E402
from jax import lax  # noqa: E402

from diffssl_jax.posterior.cpu_convs import canonical_conv_kernels  # noqa: E402

flags.DEFINE_list("nets", ["conv", "unet"], "Nets: conv (3 conv layers) and/or unet (digits).")
flags.DEFINE_integer("batch", 8, "Examples per call.")
flags.DEFINE_integer("k", 8, "vjps (or forward passes) per call.")
flags.DEFINE_integer("repeats", 5, "Timed calls (median).")
flags.DEFINE_list("forms", ["unrolled", "fori", "scan", "while"], "Loop forms to time.")
flags.DEFINE_list("passes", ["vjp", "step", "forward"], "What runs k times (see make_call).")


_NHWC = ("NHWC", "HWIO", "NHWC")


def conv_net(width=32):
    """A 3-layer 3x3 conv net 16x16x1 -> 16x16x1 (NHWC, SiLU), its params and input shape."""
    shapes = [(3, 3, 1, width), (3, 3, width, width), (3, 3, width, 1)]
    keys = jax.random.split(jax.random.key(0), len(shapes))
    params = [
        jax.random.normal(k, s) / jnp.sqrt(9.0 * s[2]) for k, s in zip(keys, shapes, strict=True)
    ]

    def apply(params, x):
        for i, w in enumerate(params):
            x = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=_NHWC)
            x = jax.nn.silu(x) if i < len(params) - 1 else x
        return x

    return apply, params, (16, 16, 1)


def unet_net():
    """The digits U-Net (random init) at t = 0.5, its params and input shape."""
    from diffssl_jax.configs.ddpm.digits import get_config
    from diffssl_jax.models.unet import UNet

    config = get_config()
    model = UNet(**config.model)
    shape = tuple(config.data.image_shape)
    params = model.init(jax.random.key(0), jnp.zeros((1, *shape)), jnp.zeros(1))["params"]

    def apply(params, x):
        return model.apply({"params": params}, x, jnp.full(x.shape[:1], 0.5))[0]

    return apply, params, shape


def _normalise(u):
    return u / jnp.sqrt(jnp.sum(u * u))


def make_call(apply, form, what, k, canonical):
    """``(params, x) -> u``: ``k`` chained passes ``what`` in loop form ``form``.

    ``what``: ``vjp`` (one ``jax.vjp`` outside, ``k`` vjps), ``forward`` (``k`` forward
    passes) or ``step`` (``k`` times a forward pass and a vjp at the current point, as a
    guided sampler step does). ``canonical``: the vjps through
    ``posterior.cpu_convs.canonical_conv_kernels`` (forced, whatever the switch says).
    """

    def transform(vjp):
        return canonical_conv_kernels(vjp, force=True) if canonical else vjp

    def step(params, u, vjp):
        if what == "vjp":
            return _normalise(transform(vjp)(u)[0])
        if what == "forward":
            return _normalise(apply(params, u))
        out, vjp_u = jax.vjp(functools.partial(apply, params), u)
        return _normalise(transform(vjp_u)(out)[0])

    def call(params, x):
        u, vjp = jax.vjp(functools.partial(apply, params), x)
        body = functools.partial(step, params, vjp=vjp)
        if form == "unrolled":
            for _ in range(k):
                u = body(u)
        elif form == "fori":
            u = lax.fori_loop(0, k, lambda i, u: body(u), u)
        elif form == "scan":
            u, _ = lax.scan(lambda u, _: (body(u), None), u, None, length=k)
        elif form == "while":
            bound = k + 0 * jnp.sum(x).astype(jnp.int32)  # traced: a true while loop
            state = (jnp.int32(0), u)
            u = lax.while_loop(lambda s: s[0] < bound, lambda s: (s[0] + 1, body(s[1])), state)[1]
        else:
            raise ValueError(f"unknown loop form {form!r}")
        return u

    return jax.jit(call)


def timed(fn, args, repeats):
    """Median wall seconds of ``fn(*args)`` after one warm-up (compiling) call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(name, net, batch, k, forms, passes, repeats):
    """Prints one table: each pass and loop form, plain and with canonical kernels."""
    apply, params, shape = net
    x = jax.random.normal(jax.random.key(1), (batch, *shape))
    print(f"\n{name}: batch {batch}, k = {k}; ratios to the plain unrolled time of the pass")
    print("| pass | form | plain ms/pass | / unrolled | canonical ms/pass | / unrolled |")
    print("|---|---|---|---|---|---|")
    for what in passes:
        base = None
        for form in forms:
            row = []
            for canonical in (False, True):
                if what == "forward" and canonical:
                    row.append(None)  # a forward pass has canonical kernels already
                    continue
                t = timed(make_call(apply, form, what, k, canonical), (params, x), repeats) / k
                base = base or t
                row.append(t)
            cells = [f"{1e3 * t:.2f} | {t / base:.2f}" if t else "- | -" for t in row]
            print(f"| {what} | {form} | {cells[0]} | {cells[1]} |", flush=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    print(
        f"jax {jax.__version__}, {jax.devices()[0].platform}, "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )
    nets = {"conv": conv_net, "unet": unet_net}
    for name in f.nets:
        run(name, nets[name](), f.batch, f.k, f.forms, f.passes, f.repeats)


if __name__ == "__main__":
    app.run(main)
