"""Diagnostics of a denoiser's Jacobian and of MMPS's CG safeguard along a sampler trajectory.

MMPS (docs/methods.md E.2) solves ``(Sigma_y + sigma^2 A J^T A^T) v = y - A D(x)`` by CG, which
is sound when ``J = dD/dx`` is symmetric positive semi-definite (Tweedie: ``sigma^2 J`` is the
covariance ``Cov[x0 | x]``). A learned ``J`` need not be either, and the CG safeguard then
decides what MMPS returns (docs/methods.md E.6). This module measures both, without
materialising ``J``:

* ``jacobian_stats``: Hutchinson estimates (Hutchinson 1989) from Rademacher probes ``z``
  (independent entries ``+-1``, so ``E[z z^T] = I``), each through one jvp (``J z``) and one
  transposed jvp (``J^T z``) of a single ``jax.linearize``: ``||J||_F^2 = E||J z||^2``,
  ``||J - J^T||_F^2 = E||(J - J^T) z||^2``, ``tr J = E[z^T J z]``; the fraction of probes
  with ``z^T J z < 0`` (an estimate of ``P(z^T J z < 0)``, which is 0 for every positive
  semi-definite ``J``: a positive value certifies that ``(J + J^T) / 2`` is indefinite); and
  the smallest Rayleigh quotient ``z^T J z / z^T z`` over the probes, an upper bound of the
  smallest eigenvalue of ``(J + J^T) / 2`` (negative: indefinite, certified).
* ``record_trajectory``: replays ``posterior.sample_posterior`` with the same key, grid,
  sampler and problem, so the trajectory is the one of the normal run (same samples), and
  records at every MMPS call whether the safeguard fired, the Rayleigh quotients
  ``p^T M p / p^T p`` of CG's directions, the residual growth, the size of the correction,
  and optionally ``jacobian_stats`` at that ``(x, sigma)``. The records leave the jitted
  sampler by ``jax.debug.callback``; the normal sampler carries no such output and runs
  unchanged (MMPS's ``__call__`` returns the mean only), so fallback logging costs nothing
  unless asked for. ``summarize_records`` aggregates them per sigma.
"""

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffssl_jax.posterior.cg import real_dot
from diffssl_jax.posterior.mmps import MMPSDenoiser, trust_radius_of
from diffssl_jax.posterior.sampling import sample_posterior


class JacobianStats(NamedTuple):
    """Hutchinson estimates at one ``(x, sigma)`` from probes ``z_1..z_n`` (module docstring).

    Attributes:
      frobenius: ``sqrt(mean_i ||J z_i||^2)``, estimates ``||J||_F``.
      asymmetry: ``sqrt(mean_i ||(J - J^T) z_i||^2 / mean_i ||J z_i||^2)``, estimates
        ``||J - J^T||_F / ||J||_F`` (a ratio of unbiased estimates: consistent).
      trace: ``mean_i z_i^T J z_i``, estimates ``tr J`` (unbiased).
      negative_fraction: ``mean_i [z_i^T J z_i < 0]``, estimates ``P(z^T J z < 0)``.
      min_rayleigh: ``min_i z_i^T J z_i / z_i^T z_i``; ``>= lambda_min((J + J^T) / 2)``.
    """

    frobenius: jax.Array
    asymmetry: jax.Array
    trace: jax.Array
    negative_fraction: jax.Array
    min_rayleigh: jax.Array


def rademacher(key, num, shape, dtype=jnp.float32):
    """``[num, *shape]`` independent ``+-1`` entries (Rademacher probes)."""
    return jax.random.rademacher(key, (num, *shape), dtype)


def jacobian_stats(denoiser, x, sigma, probes) -> JacobianStats:
    """``JacobianStats`` of ``J = dD/dx`` at ``(x, sigma)``: one forward pass (``linearize``),
    then one jvp and one transposed jvp per probe.

    Args:
      denoiser: ``denoiser(x, sigma) -> x0_hat`` on one example.
      x: one example; sigma: its noise level.
      probes: ``[n, *x.shape]`` probes (``rademacher``; any probes with ``E[z z^T] = I``
        estimate the same quantities).
    """
    probes = jnp.asarray(probes, x.dtype)
    if probes.shape[1:] != x.shape:
        raise ValueError(f"probes must be [n, *{x.shape}], got {probes.shape}.")
    _, jvp_fn = jax.linearize(lambda u: denoiser(u, sigma), x)
    vjp_fn = jax.linear_transpose(jvp_fn, x)
    jz = jax.vmap(jvp_fn)(probes)
    jtz = jax.vmap(lambda z: vjp_fn(z)[0])(probes)
    axes = tuple(range(1, probes.ndim))
    jj = jnp.mean(jnp.sum(jnp.square(jz), axes))
    skew = jnp.mean(jnp.sum(jnp.square(jz - jtz), axes))
    zjz = jnp.sum(probes * jz, axes)
    return JacobianStats(
        frobenius=jnp.sqrt(jj),
        asymmetry=jnp.sqrt(skew / jj),
        trace=jnp.mean(zjz),
        negative_fraction=jnp.mean(zjz < 0),
        min_rayleigh=jnp.min(zjz / jnp.sum(jnp.square(probes), axes)),
    )


def _append(sink, record):
    sink.append(jax.tree.map(np.asarray, record))


def _recorded_call(posterior, sink, probes, x, sigma):
    """``posterior(x, sigma)``, sending the CG solve's diagnostics to ``sink``."""
    mean, solution = posterior.solve(x, sigma)
    sigma = jnp.asarray(sigma, x.dtype)
    correction = jnp.square(sigma) * solution.aux
    record = {
        "sigma": sigma * jnp.ones_like(solution.growth),
        "fallback": solution.fallback,
        "breakdown": solution.breakdown,
        "curvature": solution.curvature,
        "growth": solution.growth,
        "correction": jnp.sqrt(real_dot(correction, correction))
        / trust_radius_of(1.0, sigma, x.size),
    }
    if probes is not None:
        record.update(jacobian_stats(posterior.denoiser, x, sigma, probes)._asdict())
    jax.debug.callback(functools.partial(_append, sink), record)
    return mean


@dataclasses.dataclass(frozen=True, eq=False)
class RecordingMethod:
    """An MMPS posterior method whose posterior denoisers report every call to ``sink``.

    Hashed by identity (a new one compiles its own sampler). ``probes``: ``None`` or
    ``[n, *shape]`` probes for ``jacobian_stats`` at every call.
    """

    method: Any
    sink: list
    probes: Any = None

    def __call__(self, denoiser, A, y, noise_var, *, x_like=None):
        posterior = self.method(denoiser, A, y, noise_var, x_like=x_like)
        if not isinstance(posterior, MMPSDenoiser):
            raise ValueError(f"fallbacks are recorded for MMPS only, not {type(posterior)}.")
        return functools.partial(_recorded_call, posterior, self.sink, self.probes)


def record_trajectory(
    method, denoiser, problem, *, rng, sigmas, sampler, num_per_observation=1, probes=None
):
    """Replays ``sample_posterior(method, denoiser, problem, ...)`` and records every MMPS call.

    The same arguments give the same samples as the normal run (the recording only reads).

    Args:
      method: an MMPS ``posterior_method("mmps", ...)``.
      denoiser, problem, rng, sigmas, sampler, num_per_observation: as ``sample_posterior``.
      probes: ``None`` or ``[n, *problem.shape]`` Rademacher probes: also record
        ``jacobian_stats`` of the prior denoiser at every call (``n`` jvps and vjps each).

    Returns:
      ``(samples, records)``: the samples of ``sample_posterior`` and a list of dicts of
      NumPy arrays, one per call (or per batch of calls), for ``summarize_records``. The
      records come through ``jax.debug.callback``, which runs on another thread: under the
      context manager ``jax.enable_x64()`` they arrive as float32 copies; enable x64 with
      ``jax.config.update`` for float64 records.
    """
    sink = []
    recording = RecordingMethod(method, sink, None if probes is None else jnp.asarray(probes))
    samples = sample_posterior(
        recording,
        denoiser,
        problem,
        rng=rng,
        sigmas=sigmas,
        sampler=sampler,
        num_per_observation=num_per_observation,
    )
    samples = jax.block_until_ready(samples)
    jax.effects_barrier()
    return samples, sink


def summarize_records(records) -> list[dict]:
    """Per sigma (descending), over the calls at that sigma: ``calls``; ``fire_rate``
    (safeguard fired); ``breakdown_rate``; ``negative_curvature_rate`` (some
    ``p^T M p <= 0``); ``min_curvature`` (smallest Rayleigh quotient of ``M``); the median and
    maximum ``growth``; the median and maximum ``correction`` in units of
    ``sigma sqrt(dim / (1 + sigma^2))`` (``mmps.trust_radius_of``: a value above
    ``trust_radius`` is cut by ``safeguard="trust_region"``); and the mean of each
    ``JacobianStats`` field (``min_rayleigh``: the minimum) when recorded."""
    flat = {
        key: np.concatenate([np.reshape(r[key], (-1, *np.shape(r[key])[-1:])) for r in records])
        if key == "curvature"
        else np.concatenate([np.ravel(r[key]) for r in records])
        for key in records[0]
    }
    sigma = flat["sigma"]
    curvature = flat["curvature"].reshape(len(sigma), -1)
    rows = []
    for s in sorted(set(sigma.tolist()), reverse=True):
        at = sigma == s
        curv = curvature[at]
        row = {
            "sigma": s,
            "calls": int(at.sum()),
            "fire_rate": float(flat["fallback"][at].mean()),
            "breakdown_rate": float(flat["breakdown"][at].mean()),
            "negative_curvature_rate": float(np.mean(np.any(curv <= 0, axis=1))),
            "min_curvature": float(np.nanmin(curv)) if np.isfinite(curv).any() else np.nan,
            "growth_median": float(np.nanmedian(flat["growth"][at])),
            "growth_max": float(np.nanmax(flat["growth"][at])),
            "correction_median": float(np.median(flat["correction"][at])),
            "correction_max": float(np.max(flat["correction"][at])),
        }
        for key in JacobianStats._fields:
            if key in flat:
                values = flat[key][at]
                row[key] = float(values.min() if key == "min_rayleigh" else values.mean())
        rows.append(row)
    return rows
