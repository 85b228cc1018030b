"""EM lap cost on the toy: M-step and E-step times, E-step vs prior-sampling throughput.

    .venv/bin/python benchmarks/em.py --num_observations=2048 --num_steps=64 --train_steps=500

One lap = an M-step (the one training loop, `training.train(..., source=)`) plus an
E-step (`em.e_step`: MMPS posterior samples, one per observation). The reference on the
same machine in the same run is unguided sampling of the same number of examples from the
same prior with the same sampler and grid (`samplers.sample` on
`samplers.sigmas_from_config(config.sampling)`). Times are wall-clock after
a warm-up call that compiles (first-call times are printed apart).
"""

import functools
import os
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_N = flags.DEFINE_integer("num_observations", 2048, "observations = posterior samples per lap")
_STEPS = flags.DEFINE_integer("num_steps", 64, "sampler steps")
_TRAIN = flags.DEFINE_integer("train_steps", 500, "M-step optimiser steps")
_CG = flags.DEFINE_integer("cg_maxiter", 1, "MMPS CG iterations")
_CHUNK = flags.DEFINE_integer("chunk_size", 0, "E-step chunk (observations); 0: all at once")


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv):
    del argv
    import jax
    import numpy as np

    from diffssl_jax import em, methods, training
    from diffssl_jax.configs.em.toy import get_config
    from diffssl_jax.data import ArraySource
    from diffssl_jax.sampling import samplers
    from diffssl_jax.sampling.denoisers import ScaledDenoiser
    from diffssl_jax.training import checkpoint

    config = get_config()
    with config.unlocked():
        config.em.num_observations = _N.value
        config.em.chunk_size = _CHUNK.value or _N.value
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
    _, first_m = _timed(lambda: train(config, os.path.join(workdir, "m0")))
    _, m_time = _timed(lambda: train(config, os.path.join(workdir, "m1")))
    params = checkpoint.load_params(os.path.join(workdir, "m1"))
    prior = ScaledDenoiser(recipe.denoiser(params), (1, 1, 5), config.em.data_scale)

    def estep(tag):
        return em.e_step(
            prior,
            problem,
            rng=jax.random.key(0),
            sampling=config.sampling,
            posterior=config.posterior,
            chunk_size=config.em.chunk_size,
            directory=f"{workdir}/{tag}",
        )

    _, first_e = _timed(lambda: estep("e0"))
    _, e_time = _timed(lambda: estep("e1"))
    sigmas = samplers.sigmas_from_config(config.sampling)
    run = jax.jit(
        lambda d, k: samplers.sample(d, k, (5,), sigmas, config.sampling.sampler, _N.value)
    )
    _, first_p = _timed(lambda: jax.block_until_ready(run(prior, jax.random.key(1))))
    _, p_time = _timed(lambda: jax.block_until_ready(run(prior, jax.random.key(2))))
    n = _N.value
    print(
        f"devices: {jax.devices()}; N={n} in chunks of {config.em.chunk_size}, "
        f"sampler steps={_STEPS.value}, CG={_CG.value}"
    )
    print(f"M-step: {_TRAIN.value} steps in {m_time:.2f} s (first call {first_m:.2f} s)")
    print(
        f"E-step: {n} posterior samples in {e_time:.2f} s = {n / e_time:.0f} samples/s "
        f"(first call {first_e:.2f} s)"
    )
    print(
        f"prior:  {n} samples in {p_time:.2f} s = {n / p_time:.0f} samples/s "
        f"(first call {first_p:.2f} s); E-step / prior time = {e_time / p_time:.2f}x"
    )
    print(f"lap (M + E): {m_time + e_time:.2f} s")


if __name__ == "__main__":
    app.run(main)
