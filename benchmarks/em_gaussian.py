"""EM lap 0 on MRI: one moment-matching iteration on the operators' support rows vs all rows.

    .venv/bin/python benchmarks/em_gaussian.py --num_observations=128 --acceleration=4

`em.gaussian.em_iteration` materialises each realified operator `[M, D]` and solves an
`M x M` system per observation. For column-undersampled k-space most of the `M = 2 H W`
rows are zero (unsampled columns, and the imaginary part of the real DFT coefficients);
with `rows = support_size(...)` only the support enters the solve, with the same result
(tests/em/test_em_gaussian.py). The reference, in the same run on the same observations,
is the same iteration with all rows. Times are of a second call (the first compiles).
"""

import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_N = flags.DEFINE_integer("num_observations", 128, "k-space observations of phantoms")
_SIZE = flags.DEFINE_integer("size", 32, "phantom side (D = size^2)")
_ACCEL = flags.DEFINE_float("acceleration", 4.0, "undersampling factor")
_CHUNK = flags.DEFINE_integer("chunk", 64, "observations per scan step")


def main(argv):
    del argv
    import jax
    import jax.numpy as jnp
    import numpy as np

    from diffssl_jax.data.phantoms import PhantomSource
    from diffssl_jax.em import gaussian as em_gaussian
    from diffssl_jax.posterior import observations

    size, n = _SIZE.value, _N.value
    x = jnp.asarray(PhantomSource("train", size=size).images[:n])
    problem = observations.undersampled_mri(
        0, x, noise_std=0.01, acceleration=_ACCEL.value, center_fraction=0.08
    )
    y, ops = problem.y, problem.operators
    shape, d = (size, size, 1), size * size
    rows = em_gaussian.support_size(ops, shape)
    mean, cov = jnp.zeros(d), jnp.eye(d)

    def timed(rows_kept):
        def call():
            out = em_gaussian.em_iteration(
                mean, cov, ops, y, 1e-4, shape=shape, chunk=_CHUNK.value, rows=rows_kept
            )
            return jax.block_until_ready(out)

        call()
        t0 = time.perf_counter()
        out = call()
        return out, time.perf_counter() - t0

    (mean_all, cov_all), t_all = timed(None)
    (mean_sup, cov_sup), t_sup = timed(rows)
    diff = max(
        float(jnp.max(jnp.abs(mean_sup - mean_all))), float(jnp.max(jnp.abs(cov_sup - cov_all)))
    )
    print(
        f"{n} observations {size}x{size}, {_ACCEL.value:g}x, float32, "
        f"{jax.device_count()} device(s)"
    )
    print(f"all rows     M = {2 * d:5d}: {t_all:7.2f} s per iteration")
    print(f"support rows M = {rows:5d}: {t_sup:7.2f} s per iteration")
    print(f"ratio all / support: {t_all / t_sup:.1f}x; max |difference| of the moments {diff:.1e}")
    print(f"(scale of the moments: max |cov| {float(np.max(np.abs(cov_all))):.2f})")


if __name__ == "__main__":
    app.run(main)
