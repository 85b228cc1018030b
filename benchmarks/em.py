"""EM lap cost on the toy: the E-step against the MMPS calls it makes and unguided sampling.

    .venv/bin/python benchmarks/em.py --num_observations=2048 --chunk_size=256 --num_steps=64
    .venv/bin/python benchmarks/em.py --train_steps=200 --mstep   # also time the M-step

One lap = an M-step (the one training loop, `training.train(..., source=)`) plus an E-step
(`em.e_step`: MMPS posterior samples, one per observation, by chunks saved to disk). On the
prior of one M-step (`--train_steps`), the script times in the same run, each the median of
`--repeats` calls after a compiling one:

* prior: unguided sampling of N examples from the same prior with the same sampler and grid
  (`samplers.sample` on `samplers.sigmas_from_config(config.sampling)`);
* MMPS calls: `num_steps` times one jitted, vmapped MMPS call (the E-step's method and
  options) on the N observations at sigma = 1, as benchmarks/posterior.py measures a call,
  and the prior denoiser's call the same way (their ratio is posterior.py's "MMPS / denoiser");
* posterior sampler: `posterior.sample_posterior` on all N observations at once (the E-step's
  program without chunks, files or resume);
* E-step: `em.e_step` with `--chunk_size`, into a fresh directory each call, each call with
  the prior built anew by `recipe.denoiser(params)` as every EM lap builds it (new
  parameters, same recipe; `--nonew_prior_per_call`: the same prior object every call).

It prints each time and the E-step's ratios to the MMPS calls and to the prior.
"""

import functools
import os
import statistics
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_N = flags.DEFINE_integer("num_observations", 2048, "observations = posterior samples per lap")
_STEPS = flags.DEFINE_integer("num_steps", 64, "sampler steps")
_TRAIN = flags.DEFINE_integer("train_steps", 200, "M-step optimiser steps (the prior)")
_CG = flags.DEFINE_integer("cg_maxiter", 1, "MMPS CG iterations")
_CHUNK = flags.DEFINE_integer("chunk_size", 0, "E-step chunk (observations); 0: all at once")
_REPEATS = flags.DEFINE_integer("repeats", 3, "timed calls of each (median)")
_MSTEP = flags.DEFINE_bool("mstep", False, "also time a second M-step (compiled)")
_NEW_PRIOR = flags.DEFINE_bool(
    "new_prior_per_call", True, "each E-step call gets `recipe.denoiser(params)` anew, as a lap"
)


def _timed(fn, repeats):
    """``(first call s, median wall s, median process CPU s)`` of `repeats` more calls."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return first, statistics.median(wall), statistics.median(cpu)


def _call_timer(jax, fn, args):
    """A thunk running ``fn(*args)`` to completion."""
    return lambda: jax.block_until_ready(fn(*args))


def main(argv):
    del argv
    import jax
    import jax.numpy as jnp
    import numpy as np

    from diffssl_jax import em, methods, posterior, training
    from diffssl_jax.configs.em.toy import get_config
    from diffssl_jax.data import ArraySource
    from diffssl_jax.sampling import samplers
    from diffssl_jax.sampling.denoisers import ScaledDenoiser
    from diffssl_jax.training import checkpoint

    config = get_config()
    n, repeats = _N.value, _REPEATS.value
    with config.unlocked():
        config.em.num_observations = n
        config.em.chunk_size = _CHUNK.value or n
        config.sampling.num_steps = _STEPS.value
        config.train.num_steps = _TRAIN.value
        config.posterior.cg_maxiter = _CG.value
    experiment = em.make_experiment(config)
    x = experiment.clean_data()
    problem = experiment.observe(x)
    recipe = methods.make_recipe(config)
    workdir = tempfile.mkdtemp()
    images = (x / config.em.data_scale).reshape(len(x), 1, 1, 5).astype(np.float32)
    train = functools.partial(training.train, recipe=recipe, source=ArraySource(images))
    t0 = time.perf_counter()
    train(config, f"{workdir}/m0")
    m_first = m_time = time.perf_counter() - t0
    if _MSTEP.value:
        t0 = time.perf_counter()
        train(config, f"{workdir}/m1")
        m_time = time.perf_counter() - t0
    params = checkpoint.load_params(f"{workdir}/m0")

    def lap_prior():
        return ScaledDenoiser(recipe.denoiser(params), (1, 1, 5), config.em.data_scale)

    prior = lap_prior()
    sigmas = samplers.sigmas_from_config(config.sampling)
    method = em.estep.mmps_method(config.posterior)
    rows = {}

    sampler_name = config.sampling.sampler
    run_prior = jax.jit(lambda d, k: samplers.sample(d, k, (5,), sigmas, sampler_name, n))
    rows["prior"] = _timed(_call_timer(jax, run_prior, (prior, jax.random.key(1))), repeats)

    sigma = jnp.float32(1.0)
    xs = sigma * jax.random.normal(jax.random.key(3), (n, 5))
    operators, noise = problem.stacked_operators(), problem.noise_var

    @functools.partial(jax.jit, static_argnums=0)
    def one_call(guided, denoiser, A, y, x):
        def one(A, y, x):
            return method(denoiser, A, y, noise)(x, sigma) if guided else denoiser(x, sigma)

        return jax.vmap(one)(A, y, x)

    for name, guided in (("denoiser call", False), ("MMPS call", True)):
        args = (guided, prior, operators, problem.y, xs)
        rows[name] = _timed(_call_timer(jax, one_call, args), max(repeats, 5))

    def sampler():
        kwargs = dict(rng=jax.random.key(0), sigmas=sigmas, sampler=config.sampling.sampler)
        return posterior.sample_posterior(method, prior, problem, **kwargs)

    rows["posterior sampler"] = _timed(lambda: jax.block_until_ready(sampler()), repeats)

    def estep():
        return em.e_step(
            lap_prior() if _NEW_PRIOR.value else prior,
            problem,
            rng=jax.random.key(0),
            sampling=config.sampling,
            posterior=config.posterior,
            chunk_size=config.em.chunk_size,
            directory=f"{workdir}/e{time.time_ns()}",
        )

    rows["E-step"] = _timed(estep, repeats)
    _report(rows, n, _STEPS.value, config, jax.devices(), (m_first, m_time))


def _report(rows, n, steps, config, devices, m_times):
    """Prints the table and the E-step's ratios (wall and process CPU time)."""
    print(
        f"devices: {devices}; N={n} in chunks of {config.em.chunk_size}, sampler steps="
        f"{steps}, CG={config.posterior.cg_maxiter}, load average {os.getloadavg()}"
    )
    what = "second call" if _MSTEP.value else "first call, compilation included"
    print(f"M-step: {_TRAIN.value} steps in {m_times[1]:.2f} s ({what}; first {m_times[0]:.2f} s)")
    print("| what | first call (s) | wall (s) | CPU (s) |")
    print("|---|---|---|---|")
    for name, (first, wall, cpu) in rows.items():
        print(f"| {name} | {first:.3f} | {wall:.3f} | {cpu:.3f} |")
    rows["MMPS calls"] = tuple(steps * t for t in rows["MMPS call"])
    for i, kind in ((1, "wall"), (2, "CPU")):
        t = {name: row[i] for name, row in rows.items()}
        print(
            f"{kind}: MMPS call / denoiser call {t['MMPS call'] / t['denoiser call']:.2f}x; "
            f"MMPS calls ({steps} x one call) {t['MMPS calls']:.3f} s = "
            f"{t['MMPS calls'] / t['prior']:.2f}x prior; posterior sampler / prior "
            f"{t['posterior sampler'] / t['prior']:.2f}x; E-step {n / t['E-step']:.0f} samples/s"
            f", E-step / MMPS calls = {t['E-step'] / t['MMPS calls']:.2f}x, "
            f"E-step / prior = {t['E-step'] / t['prior']:.2f}x"
        )


if __name__ == "__main__":
    app.run(main)
