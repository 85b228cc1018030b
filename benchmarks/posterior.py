r"""Cost of one posterior-denoiser call over one prior-denoiser call, and MMPS memory vs k.

    taskset -c 1 .venv/bin/python benchmarks/posterior.py   # one core (a shared machine)

For two priors, the digits U-Net (`configs/ddpm/digits.py`, trained EMA parameters from
`--digits_workdir` if it exists, else a random initialisation) on a batch of 16x16x1
images with a centre-box mask, and a time-conditioned MLP (`models.mlp.MLP`, (256, 256,
256), random parameters) on 64-d vectors observed through a random 16x64 matrix, it times
one jitted, vmapped call of: the denoiser; MMPS with k = 1, 3, 10 CG iterations; a naive
MMPS through `jax.scipy.sparse.linalg.cg` (docs/methods.md E.6: it evaluates the matvec at the
initial guess and needs a final vjp, k + 2 vjps); MMPS k = 3, 10 with the plain vjp (no
``posterior.cpu_convs`` rewrite) and CG unrolled or in a ``while_loop`` (on XLA:CPU the loop
with the plain vjp is the slow case of benchmarks/vjp_in_loop.py); DPS, PiGDM, TMPD and
DiffPIR. ``--rows=MMPS`` keeps the rows whose name contains ``MMPS``. Each time is
the median over `--repeats` calls after one warm-up call, as wall time and as process CPU
time, and is divided by the denoiser's. The memory column is XLA's compiled temporary
buffer size (`compiled.memory_analysis().temp_size_in_bytes`) of the same call: it must not
grow with k (no Jacobian is ever built).
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

from diffssl_jax import posterior  # noqa: E402
from diffssl_jax.configs.ddpm.digits import get_config as digits_config  # noqa: E402
from diffssl_jax.corruptions.schedules import make_schedule  # noqa: E402
from diffssl_jax.models.mlp import MLP  # noqa: E402
from diffssl_jax.models.unet import UNet  # noqa: E402
from diffssl_jax.posterior.checks import noise_array  # noqa: E402
from diffssl_jax.sampling.denoisers import make_vp_denoiser  # noqa: E402
from diffssl_jax.training.checkpoint import load_params  # noqa: E402

flags.DEFINE_string("digits_workdir", "runs/ddpm_digits", "Trained digits prior (optional).")
flags.DEFINE_integer("unet_batch", 8, "Observations per call for the U-Net.")
flags.DEFINE_integer("mlp_batch", 256, "Observations per call for the MLP.")
flags.DEFINE_integer("repeats", 7, "Timed calls (median).")
flags.DEFINE_float("sigma", 1.0, "VE noise level of the call.")
flags.DEFINE_list("rows", [], "Only the rows whose name contains one of these (and the denoiser).")
flags.DEFINE_list("priors", ["unet", "mlp"], "Priors: unet (digits) and/or mlp.")


def _linearize(denoiser, A, y, noise_var, x, sigma):
    """``(sigma^2, D(x), u -> J^T u, A^T, Sigma_y)``: what both reference MMPS calls start from."""
    x0_hat, vjp_fn = jax.vjp(lambda u: denoiser(u, sigma), x)
    adjoint = posterior.make_adjoint(A, x)
    return jnp.square(sigma), x0_hat, vjp_fn, adjoint, noise_array(noise_var, y)


def naive_mmps(denoiser, A, y, noise_var, *, cg_maxiter):
    """MMPS as in the paper's code: ``jax.scipy.sparse.linalg.cg`` then a final vjp."""

    def call(x, sigma):
        sigma2, x0_hat, vjp_fn, adjoint, noise = _linearize(denoiser, A, y, noise_var, x, sigma)

        def matvec(v):
            return noise * v + sigma2 * A(vjp_fn(adjoint(v))[0])

        v, _ = jax.scipy.sparse.linalg.cg(matvec, y - A(x0_hat), maxiter=cg_maxiter)
        return x0_hat + sigma2 * vjp_fn(adjoint(v))[0]

    return call


def plain_mmps(denoiser, A, y, noise_var, *, cg_maxiter, unroll):
    """``posterior.mmps``'s call with the plain vjp (no ``cpu_convs`` rewrite) and CG unrolled
    (``unroll``, MMPS's CPU default before issue 17) or in a ``while_loop``."""

    def call(x, sigma):
        sigma2, x0_hat, vjp_fn, adjoint, noise = _linearize(denoiser, A, y, noise_var, x, sigma)

        def matvec(v):
            (jt_at_v,) = vjp_fn(adjoint(v))
            return noise * v + sigma2 * A(jt_at_v), jt_at_v

        solution = posterior.cg(
            matvec,
            y - A(x0_hat),
            maxiter=cg_maxiter,
            max_residual_growth=10.0,
            aux_like=x,
            unroll=unroll,
        )
        return x0_hat + sigma2 * solution.aux

    return call


def _methods():
    rows = [("denoiser", None)]
    method = posterior.posterior_method
    rows += [(f"MMPS k={k}", method("mmps", cg_maxiter=k)) for k in (1, 3, 10)]
    for k in (3, 10):
        for unroll, form in ((True, "unrolled"), (False, "loop")):
            call = functools.partial(plain_mmps, cg_maxiter=k, unroll=unroll)
            rows.append((f"MMPS k={k}, plain vjp, CG {form}", call))
    rows += [(f"naive MMPS k={k}", functools.partial(naive_mmps, cg_maxiter=k)) for k in (1, 3, 10)]
    names = {"dps": "DPS", "pigdm": "PiGDM", "tmpd": "TMPD", "diffpir": "DiffPIR"}
    return rows + [(label, method(name)) for name, label in names.items()]


def _batched_call(make_posterior, sigma):
    """``(denoiser, operators, ys, xs) -> [B, ...]``: one call per observation, vmapped."""

    def one(denoiser, A, y, x):
        if make_posterior is None:
            return denoiser(x, sigma)
        return make_posterior(denoiser, A, y, 1e-4)(x, sigma)

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, 0)))


def _time(fn, args, repeats):
    """Median wall and CPU seconds of ``fn(*args)`` (after one warm-up call)."""
    jax.block_until_ready(fn(*args))
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def _temp_bytes(fn, args):
    analysis = fn.lower(*args).compile().memory_analysis()
    return getattr(analysis, "temp_size_in_bytes", float("nan"))


def unet_problem(batch, workdir):
    """The digits U-Net denoiser, box-mask operators, observations and noisy inputs."""
    config = digits_config()
    model = UNet(**config.model)
    shape = tuple(config.data.image_shape)
    if os.path.isdir(os.path.join(workdir, "checkpoints")):
        params, source = load_params(workdir, which="ema"), "trained"
    else:
        x = jnp.zeros((1, *shape))
        params, source = model.init(jax.random.key(0), x, jnp.zeros(1))["params"], "random"
    apply_fn = functools.partial(_apply, model)
    denoiser = make_vp_denoiser(apply_fn, params, make_schedule("linear"), "eps")
    mask = jnp.broadcast_to(posterior.box_mask((*shape[:2], 1), 4, 4, 8, 8), (batch, *shape))
    return denoiser, posterior.PixelMask(mask=mask), shape, f"digits U-Net ({source})"


def mlp_problem(batch, dim=64, obs=16):
    """A random (256, 256, 256) MLP denoiser and random 16x64 dense operators."""
    model = MLP(features=(256, 256, 256))
    params = model.init(jax.random.key(0), jnp.zeros((1, dim)), jnp.zeros(1))["params"]
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = treedef.unflatten(
        [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
    )
    apply_fn = functools.partial(_apply, model)
    denoiser = make_vp_denoiser(apply_fn, params, make_schedule("linear"), "eps")
    matrix = jax.random.normal(jax.random.key(2), (batch, obs, dim)) / jnp.sqrt(dim)
    return denoiser, posterior.DenseMatrix(matrix=matrix), (dim,), "MLP 3x256 (random)"


def _apply(model, params, x, t):
    return model.apply({"params": params}, x, t)[0]


def benchmark(denoiser, operators, shape, label, batch, repeats, sigma):
    """Prints one table: time ratios to the denoiser and compiled temporary memory."""
    rng_x, rng_y = jax.random.split(jax.random.key(3))
    xs = sigma * jax.random.normal(rng_x, (batch, *shape))
    ys = jax.vmap(lambda A, x: A(x))(operators, jax.random.normal(rng_y, (batch, *shape)))
    args = (denoiser, operators, ys, xs)
    print(f"\n{label}: batch {batch}, sigma {sigma}")
    print("| call | wall ms | / denoiser | CPU ms | / denoiser | XLA temp memory (KiB) |")
    print("|---|---|---|---|---|---|")
    base = None
    wanted = flags.FLAGS.rows
    for name, make_posterior in _methods():
        if wanted and make_posterior is not None and not any(w in name for w in wanted):
            continue
        fn = _batched_call(make_posterior, jnp.float32(sigma))
        wall, cpu = _time(fn, args, repeats)
        base = base or (wall, cpu)
        memory = _temp_bytes(fn, args) / 1024
        print(
            f"| {name} | {1e3 * wall:.1f} | {wall / base[0]:.2f} | {1e3 * cpu:.1f} | "
            f"{cpu / base[1]:.2f} | {memory:.0f} |",
            flush=True,
        )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, float32")
    if "unet" in f.priors:
        problem = unet_problem(f.unet_batch, f.digits_workdir)
        benchmark(*problem, f.unet_batch, f.repeats, f.sigma)
    if "mlp" in f.priors:
        benchmark(*mlp_problem(f.mlp_batch), f.mlp_batch, f.repeats, f.sigma)


if __name__ == "__main__":
    app.run(main)
