"""The E-step of EM (`em`): one MMPS posterior sample per observation, by chunks that resume.

`e_step` samples `q_theta(x | y_i)` for every observation with `posterior.sample_posterior`
and `posterior.mmps`, chunk by chunk; each chunk is saved atomically (`storage`) once
computed, so a killed or preempted E-step continues from its saved chunks, with the same
keys (`fold_in(rng, j)` for chunk `j`), hence the same samples. `filter_samples` drops the
samples E.4 drops; `prior_samples` draws from a prior for the per-lap metrics.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from diffssl_jax import storage
from diffssl_jax.posterior.mmps import mmps
from diffssl_jax.posterior.sampling import sample_posterior
from diffssl_jax.sampling import samplers
from diffssl_jax.training import preemption


def filter_samples(samples, bound: float | None) -> tuple[np.ndarray, dict]:
    """Drops non-finite samples and, if `bound`, samples with any |entry| > bound (E.4).

    Returns:
      `(kept [K, ...], {"num_nonfinite": ..., "num_out_of_range": ..., "num_kept": K})`.
    """
    samples = np.asarray(samples)
    flat = samples.reshape(len(samples), -1)
    finite = np.all(np.isfinite(flat), axis=1)
    in_range = np.ones_like(finite) if bound is None else np.all(np.abs(flat) <= bound, axis=1)
    in_range &= finite
    counts = {
        "num_nonfinite": int((~finite).sum()),
        "num_out_of_range": int((finite & ~in_range).sum()),
        "num_kept": int(in_range.sum()),
    }
    return samples[in_range], counts


def e_step(denoiser, obs, *, rng, config, directory: storage.PathLike, mesh=None) -> np.ndarray:
    """Posterior samples `[N, *shape]` for every observation, by chunks that resume.

    Chunk `j` (observations `[j c, (j + 1) c)`, `c = config.em.chunk_size`) uses the key
    `fold_in(rng, j)` and is saved (by process 0) to `directory/chunk_{j:05d}.npy` once computed.
    After a SIGTERM the chunk in flight is finished and saved, then `Preempted` is raised.
    """
    n = int(jnp.shape(obs.y)[0])
    size = int(config.em.chunk_size)
    directory = storage.path(directory)
    # One `make_posterior` for every chunk: the compiled sampler is cached on it.
    make_posterior = functools.partial(
        mmps,
        cg_maxiter=config.posterior.cg_maxiter,
        cg_max_residual_growth=config.posterior.cg_max_residual_growth,
    )
    sample = functools.partial(
        _sample_chunk,
        make_posterior,
        denoiser,
        obs,
        rng=rng,
        sigmas=_sigmas(config.sampling),
        config=config,
        mesh=mesh,
    )
    chunks = []
    stage = preemption.deferred(f"in the E-step into {directory} (its saved chunks are kept)")
    with preemption.handle_sigterm(), stage:
        for j, start in enumerate(range(0, n, size)):
            path = directory / f"chunk_{j:05d}.npy"
            if path.exists():
                chunks.append(storage.load_npy(path))
                continue
            if preemption.requested():  # the chunks before j are saved: the rerun goes on
                raise preemption.Preempted(f"in the E-step before chunk {j} ({directory})")
            chunk = sample(j, start, min(start + size, n))
            if storage.is_primary():
                storage.save_npy(path, chunk)
            chunks.append(chunk)
    return np.concatenate(chunks)


def _sample_chunk(make_posterior, denoiser, obs, j, start, stop, *, rng, sigmas, config, mesh):
    """One posterior sample `[stop - start, *shape]` per observation of chunk `j`."""
    ops = jax.tree.map(lambda leaf, a=start, b=stop: leaf[a:b], obs.operators)
    samples = sample_posterior(
        make_posterior,
        denoiser,
        ops,
        jnp.asarray(obs.y[start:stop]),
        obs.noise_var,
        rng=jax.random.fold_in(rng, j),
        shape=tuple(obs.shape),
        sigmas=sigmas,
        sampler=config.sampling.sampler,
        mesh=mesh,
    )
    return np.asarray(jax.device_get(samples))[:, 0]


def prior_samples(denoiser, shape, num: int, *, rng, config) -> np.ndarray:
    """`num` unconditional samples `[num, *shape]` of a prior denoiser (for the metrics)."""
    sigmas = _sigmas(config.sampling)
    run = jax.jit(
        lambda d, key: samplers.sample(d, key, shape, sigmas, config.sampling.sampler, num)
    )
    return np.asarray(jax.device_get(run(denoiser, rng)))


def _sigmas(sampling_config):
    c = sampling_config
    return samplers.sigma_grid(c.grid, c.num_steps, c.sigma_min, c.sigma_max)
