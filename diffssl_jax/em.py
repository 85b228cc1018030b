"""Learning a diffusion prior from corrupted observations by EM (Rozet et al. 2024, Sec. 4).

Given observations `y_i = A_i x_i + n_i`, `n_i ~ N(0, Sigma_y)`, EM maximises the evidence
`sum_i log p_theta(y_i)` by alternating (E.4)

    E-step: pi_k = {x_i ~ q_theta_k(x | y_i)}  (MMPS posterior samples, one per observation),
    M-step: theta_{k+1} = argmin_theta E_{x ~ pi_k} [denoising loss]  (Rozet et al. Eq. 8),

starting from the Gaussian prior fitted by moment matching (`em_gaussian.fit_gaussian`),
whose posteriors `pi_0` are sampled with its analytic denoiser. The M-step is the one
training loop, warm-started from the previous lap's (EMA) parameters with a fresh optimiser
state; the E-step (`em_estep`, its functions also reachable here) is
`posterior.sample_posterior` with `posterior.mmps` (vmapped over observations, sharded over
devices). Samples that are not finite or out of range are
dropped and counted.

Layout of `workdir/em/lap_{k:03d}/`: `train/` (the M-step's own workdir: checkpoints,
metrics), `mstep.json` (the M-step's time, written when it finished: the M-step is done iff it
exists), `estep/chunk_{j:05d}.npy` (E-step chunks, written atomically), `samples.npy` (the
lap's kept samples) and `lap.json` (counts, metrics, times), written last: a lap is done iff
its `lap.json` exists. A killed run resumes inside the lap where it stopped (the M-step from
its last checkpoint, the E-step from its last chunk). A SIGTERM (`training.preemption`)
checkpoints the M-step's step in flight, or finishes and saves the E-step's chunk in flight,
then raises `Preempted`: the lap is not marked done, and the same command resumes it. Every
option is checked before the workdir is written (`em_options`); `em.num_laps` may change on
resume (extending a finished run continues from its last lap). Every key derives from
`fold_in(key(seed), lap)`, never from `hash()`. Files go through `diffssl_jax.storage` (a
workdir may be `gs://...`); on multi-host runs process 0 writes them and the other processes
wait for it at the end of each lap.
"""

import json
import math
import time
from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from diffssl_jax import data, em_options, storage
from diffssl_jax.em_estep import _sigmas as _sigmas  # re-exported: em.e_step, ... as before
from diffssl_jax.em_estep import e_step as e_step
from diffssl_jax.em_estep import filter_samples as filter_samples
from diffssl_jax.em_estep import prior_samples as prior_samples
from diffssl_jax.training import checkpoint, loop, preemption, workdir_lock

_ESTEP_STREAM, _PRIOR_STREAM = 0, 1  # fold_in tags of the lap key's two uses


class EMError(RuntimeError):
    """A lap that cannot complete (no usable samples, bad data); earlier laps are kept."""


class Observations(NamedTuple):
    """A dataset of linear-Gaussian observations `y_i = A_i x_i + n_i`.

    Attributes:
      y: `[N, *y_shape]` observations (real or complex).
      operators: one operator pytree whose leaves have the leading axis `N`.
      noise_var: `Sigma_y`, a scalar or an array broadcasting to one `y`.
      shape: the shape of one `x` (what the operators act on).
    """

    y: Any
    operators: Any
    noise_var: Any
    shape: tuple


def check_observations(obs: Observations) -> int:
    """Returns `N` after checking that operators and `y` agree; raises ValueError otherwise."""
    y = jnp.asarray(obs.y)
    if y.ndim < 1 or y.shape[0] == 0:
        raise ValueError(f"y must be a non-empty [N, ...] array, got shape {y.shape}.")
    n = y.shape[0]
    for leaf in jax.tree.leaves(obs.operators):
        if jnp.ndim(leaf) < 1 or jnp.shape(leaf)[0] != n:
            raise ValueError(
                f"operators and y disagree: y has {n} observations but an operator leaf has "
                f"shape {jnp.shape(leaf)}; stack one operator per observation."
            )
    first = jax.tree.map(lambda leaf: leaf[0], obs.operators)
    dtype = jnp.finfo(y.dtype).dtype
    out = jax.eval_shape(first, jax.ShapeDtypeStruct(tuple(obs.shape), dtype))
    if tuple(out.shape) != tuple(y.shape[1:]):
        raise ValueError(
            f"operators and y disagree in shape: A(x) for x of shape {tuple(obs.shape)} has "
            f"shape {tuple(out.shape)} but each y has shape {tuple(y.shape[1:])}."
        )
    if not bool(jnp.all(jnp.isfinite(y))):
        raise ValueError("y contains NaN or inf: clean the observations before EM.")
    return n


@flax.struct.dataclass
class ReshapedDenoiser:
    """`D(x, sigma) = scale * inner((x / scale).reshape(inner_shape), sigma / scale)`.

    Adapts a denoiser trained in network units (data divided by `scale`, examples of
    `inner_shape`, e.g. `[1, 1, D]` for vectors or `[D]` for `GaussianDenoiser`) to the EM
    space of the operators. Denoisers commute with this change of units: if `x0' = x0 / s`
    then `E[x0 | x0 + sigma eps] = s E[x0' | x0' + (sigma / s) eps]`.
    """

    inner: Any
    inner_shape: tuple = flax.struct.field(pytree_node=False)
    scale: float = flax.struct.field(pytree_node=False, default=1.0)

    def __call__(self, x, sigma):
        z = (x / self.scale).reshape(self.inner_shape)
        return (self.scale * self.inner(z, sigma / self.scale)).reshape(x.shape).astype(x.dtype)


def lap_key(seed: int, lap: int) -> jax.Array:
    """The key of lap `lap`: `fold_in(key(seed), lap)`."""
    return jax.random.fold_in(jax.random.key(seed), lap)


def lap_seed(seed: int, lap: int) -> int:
    """An integer seed in [0, 2**31) for the lap's M-step (data order, init), from `lap_key`."""
    return int(jax.random.key_data(lap_key(seed, lap))[-1]) % 2**31


def lap_dir(workdir: str, lap: int) -> epath.Path:
    """`workdir/em/lap_{lap:03d}`."""
    return storage.path(workdir) / "em" / f"lap_{lap:03d}"


def completed_laps(workdir: str) -> list[int]:
    """Laps whose `lap.json` exists, in order (the lap's samples are then complete)."""
    root = storage.path(workdir) / "em"
    if not root.is_dir():
        return []
    names = [d.name for d in root.iterdir()]
    laps = [int(n[4:]) for n in names if n.startswith("lap_") and n[4:].isdigit()]
    return sorted(k for k in laps if (lap_dir(workdir, k) / "lap.json").exists())


def load_lap(workdir: str, lap: int) -> tuple[np.ndarray, dict]:
    """`(samples [N_kept, *shape], info)` of a completed lap."""
    directory = lap_dir(workdir, lap)
    info = storage.read_json(directory / "lap.json")
    return storage.load_npy(directory / "samples.npy"), info


def m_step(config, workdir: str, lap: int, samples: np.ndarray, recipe) -> str:
    """Trains the prior on `samples` (lap `lap`), warm-started from lap `lap - 1`.

    Returns:
      The M-step's workdir (`lap_dir/train`), whose EMA parameters are the new prior.
    """
    kept = len(samples)
    if kept < config.train.batch_size:
        raise EMError(
            f"lap {lap}: the M-step needs at least train.batch_size={config.train.batch_size} "
            f"samples but only {kept} are usable; lower --config.train.batch_size or use more "
            f"observations (the last good lap, {lap - 1}, is kept in {workdir}/em)."
        )
    train_config = config.copy_and_resolve_references()
    with train_config.unlocked():
        train_config.seed = lap_seed(config.seed, lap)
        previous = lap_dir(workdir, lap - 1) / "train"
        warm = config.em.warm_start and lap >= 2
        train_config.train.init_from = str(previous) if warm else ""
    scale = config.em.data_scale
    images = (samples / scale).reshape(kept, *config.data.image_shape).astype(np.float32)
    directory = str(lap_dir(workdir, lap) / "train")
    source = data.ArraySource(np.clip(images, -1, 1))
    loop.train(train_config, directory, recipe, source=source)
    return directory


def _write_metrics(workdir: str) -> None:
    """Rewrites `workdir/metrics.jsonl` from the completed laps' `lap.json` (atomic)."""
    lines = []
    for k in completed_laps(workdir):
        info = storage.read_json(lap_dir(workdir, k) / "lap.json")
        lines.append(json.dumps({"lap": k, **info}))
    storage.write_text(storage.path(workdir) / "metrics.jsonl", "\n".join(lines) + "\n")


def _write_lap(workdir: str, lap: int, info: dict, samples: np.ndarray | None = None) -> None:
    """Process 0 writes the lap's samples (if given), then `lap.json` and the metrics; every
    process then waits, so that none reads the lap before it is written."""
    if storage.is_primary():
        if samples is not None:
            storage.save_npy(lap_dir(workdir, lap) / "samples.npy", samples)
        storage.write_json(lap_dir(workdir, lap) / "lap.json", info)
        _write_metrics(workdir)
    storage.sync(f"em_lap_{lap}")


def run_lap(
    lap: int, prior, obs: Observations, config, workdir: str, evaluate, mesh=None, extra=None
):
    """E-step under `prior` (a denoiser in EM units), filter, evaluate, write the lap (with
    the entries of `extra`, e.g. the M-step's time, in its `lap.json`)."""
    directory = lap_dir(workdir, lap)
    rng = lap_key(config.seed, lap)
    t0 = time.perf_counter()
    raw = e_step(
        prior,
        obs,
        rng=jax.random.fold_in(rng, _ESTEP_STREAM),
        config=config,
        directory=directory / "estep",
        mesh=mesh,
    )
    time_estep = time.perf_counter() - t0
    bound = config.em.sample_bound or None
    kept, counts = filter_samples(raw, bound)
    if counts["num_kept"] == 0:
        raise EMError(
            f"lap {lap}: all {len(raw)} posterior samples are non-finite or out of range "
            f"({counts}); nothing to train on. The last good lap ({lap - 1}) is kept in "
            f"{workdir}/em; lower optim.lr_peak or raise posterior.cg_maxiter, delete "
            f"{directory} and rerun."
        )
    metrics = evaluate(lap, prior, kept, jax.random.fold_in(rng, _PRIOR_STREAM)) if evaluate else {}
    info = {**counts, "time/estep_s": time_estep, **metrics, **(extra or {})}
    _write_lap(workdir, lap, info, kept)
    return kept, info


def _m_step_once(config, workdir: str, lap: int, recipe) -> tuple[str, dict]:
    """Lap `lap`'s M-step, unless its `mstep.json` says it finished (then only read back).

    Returns:
      `(train_dir, {"time/mstep_s": seconds})`: the time of the run that finished it, kept
      in `mstep.json` so that a kill during the lap's E-step does not lose it.
    """
    record = lap_dir(workdir, lap) / "mstep.json"
    if record.exists():
        return str(lap_dir(workdir, lap) / "train"), storage.read_json(record)
    samples, _ = load_lap(workdir, lap - 1)
    t0 = time.perf_counter()
    train_dir = m_step(config, workdir, lap, samples, recipe)
    info = {"time/mstep_s": time.perf_counter() - t0}
    if storage.is_primary():
        storage.write_json(record, info)
    return train_dir, info


def run(
    config,
    workdir: str,
    obs: Observations,
    *,
    recipe,
    make_denoiser: Callable,
    gaussian_prior: Callable,
    evaluate: Callable | None = None,
    mesh=None,
) -> list[dict]:
    """Runs (or resumes) `config.em.num_laps` EM laps into `workdir`.

    Args:
      config: the EM config (groups em, train, optim, sampling, posterior, data, ...).
      workdir: output directory; rerunning on it resumes.
      obs: the observations.
      recipe: the prior's `Recipe` (trained by the one loop in each M-step).
      make_denoiser: `params -> denoiser` in network units (e.g. `em_recipe.make_denoiser`).
      gaussian_prior: `() -> (mean [D], cov [D, D])`, the lap-0 prior (called once).
      evaluate: `(lap, prior_denoiser, samples, rng) -> {name: float}`, logged per lap.
      mesh: devices for the E-step (default: all).

    Returns:
      The `lap.json` dicts of every lap, lap 0 (the Gaussian prior) first.

    Raises:
      ValueError: a bad option or observation (before anything is written).
      training.Preempted: after a SIGTERM (what was in flight is saved; rerun to resume).
    """
    n = check_observations(obs)
    em_options.check_em_config(config, tuple(obs.shape), n, recipe)
    with preemption.handle_sigterm(), workdir_lock.hold(workdir):  # one writer per workdir
        loop.prepare_workdir(config, workdir)
        return _run_laps(
            config, workdir, obs, recipe, make_denoiser, gaussian_prior, evaluate, mesh
        )


def _run_laps(config, workdir, obs, recipe, make_denoiser, gaussian_prior, evaluate, mesh):
    """`run` after its checks: lap 0 if not done, then the laps up to `em.num_laps`."""
    from diffssl_jax.sampling.denoisers import GaussianDenoiser

    done = completed_laps(workdir)
    if not done:
        mean, cov = gaussian_prior()
        flat = (math.prod(obs.shape),)
        prior = ReshapedDenoiser(GaussianDenoiser(mean, cov), flat, 1.0)
        run_lap(0, prior, obs, config, workdir, evaluate, mesh)
        done = [0]
    net_shape = tuple(config.data.image_shape)
    for lap in range(done[-1] + 1, config.em.num_laps + 1):
        train_dir, mstep_info = _m_step_once(config, workdir, lap, recipe)
        params = checkpoint.load_params(train_dir, which="ema")
        prior = ReshapedDenoiser(make_denoiser(params), net_shape, config.em.data_scale)
        run_lap(lap, prior, obs, config, workdir, evaluate, mesh, extra=mstep_info)
    return [load_lap(workdir, k)[1] for k in completed_laps(workdir)]
