"""The E-step of EM: one MMPS posterior sample per observation, by chunks that resume.

`e_step` samples `q_theta(x | y_i)` for every observation of an `InverseProblem` with
`posterior.sample_posterior` and MMPS (`posterior_method("mmps", ...)`; docs/methods.md E.2,
E.4), chunk by chunk (`problem.take(start, stop)`); each chunk is saved atomically
(`storage`) once computed, so a killed or preempted E-step continues from its saved chunks,
with the same keys (`fold_in(rng, j)` for chunk `j`), hence the same samples.
`filter_samples` drops the samples E.4 drops; `prior_samples` draws from a prior for the
per-lap metrics.

Units: the denoiser and the sigma grid are in EM (data) units, those of the operators:
`samplers.sigmas_from_config(sampling)` with `sampling.sigma_*` in EM units.
"""

import functools

import jax
import numpy as np

from diffssl_jax import storage
from diffssl_jax.posterior.methods import posterior_method
from diffssl_jax.posterior.problems import InverseProblem
from diffssl_jax.posterior.sampling import check_sampling, sample_posterior
from diffssl_jax.sampling import samplers
from diffssl_jax.training import preemption


def filter_samples(samples, bound: float | None) -> tuple[np.ndarray, dict]:
    """Drops non-finite samples and, if `bound`, samples with any |entry| > bound (E.4).

    `bound=None` (`em.sample_bound = 0`) drops only the non-finite ones. The reference's toy
    drops the samples outside (-3, 3) (`em.sample_bound = 3`). Nothing is clipped here: the
    M-step's clip into the network's [-1, 1] is `laps.m_step`'s.

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


MMPS_KEYS = ("cg_maxiter", "cg_max_residual_growth", "safeguard", "trust_radius", "symmetrise")


def mmps_method(posterior_config):
    """MMPS with the options of a `posterior` group (`MMPS_KEYS`; `posterior.mmps`)."""
    return posterior_method("mmps", **{key: posterior_config[key] for key in MMPS_KEYS})


def e_step(
    denoiser,
    problem: InverseProblem,
    *,
    rng,
    sampling,
    posterior,
    chunk_size: int,
    directory: storage.PathLike,
    mesh=None,
) -> np.ndarray:
    """Posterior samples `[N, *shape]` for every observation, by chunks that resume.

    Chunk `j` (observations `[j c, (j + 1) c)`, `c = chunk_size`) uses the key
    `fold_in(rng, j)` and is saved (by process 0) to `directory/chunk_{j:05d}.npy` once
    computed. After a SIGTERM the chunk in flight is finished and saved, then `Preempted` is
    raised.

    Args:
      denoiser: the prior `(x, sigma) -> x0_hat` on one example, in EM units.
      problem: the observations.
      rng: the E-step's key.
      sampling: the `sampling` group (`grid`, `num_steps`, `sigma_*` in EM units, `sampler`).
      posterior: the `posterior` group (MMPS's options, `MMPS_KEYS`).
      chunk_size: observations per chunk (`em.chunk_size`).
      directory: where the chunks are saved.
      mesh: devices (default: all).
    """
    size = int(chunk_size)
    directory = storage.path(directory)
    # One method for every chunk (the compiled sampler is reused), checked once on the whole
    # problem: each chunk's `sample_posterior` then skips the checks (a linearity test and
    # host syncs per chunk).
    method, sigmas, n = check_sampling(
        mmps_method(posterior), denoiser, problem, samplers.sigmas_from_config(sampling)
    )
    sample = functools.partial(
        _sample_chunk,
        method,
        denoiser,
        problem,
        rng=rng,
        sigmas=sigmas,
        sampler=sampling.sampler,
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


def _sample_chunk(method, denoiser, problem, j, start, stop, *, rng, sigmas, sampler, mesh):
    """One posterior sample `[stop - start, *shape]` per observation of chunk `j`."""
    samples = sample_posterior(
        method,
        denoiser,
        problem.take(start, stop),
        rng=jax.random.fold_in(rng, j),
        sigmas=sigmas,
        sampler=sampler,
        mesh=mesh,
        checked=True,
    )
    return np.asarray(jax.device_get(samples))[:, 0]


def prior_samples(denoiser, shape, num: int, *, rng, sampling) -> np.ndarray:
    """`num` unconditional samples `[num, *shape]` of a prior denoiser (for the metrics), on
    the grid of the `sampling` group (in the denoiser's units)."""
    sigmas = samplers.sigmas_from_config(sampling)
    run = jax.jit(lambda d, key: samplers.sample(d, key, shape, sigmas, sampling.sampler, num))
    return np.asarray(jax.device_get(run(denoiser, rng)))
