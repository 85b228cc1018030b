"""The EM lap loop (Rozet et al. 2024, Sec. 4; docs/methods.md E.4): laps that resume.

Given an `InverseProblem` (observations `y_i = A_i x_i + n_i`, `n_i ~ N(0, Sigma_y)`), EM
maximises the evidence `sum_i log p_theta(y_i)` by alternating (E.4)

    E-step: pi_k = {x_i ~ q_theta_k(x | y_i)}  (MMPS posterior samples, one per observation),
    M-step: theta_{k+1} = argmin_theta E_{x ~ pi_k} [denoising loss]  (Rozet et al. Eq. 8),

starting from the Gaussian prior fitted by moment matching (`gaussian.fit_problem`), whose
posteriors `pi_0` are sampled with its analytic denoiser. The M-step is the one training
loop, warm-started from the previous lap's (EMA) parameters with a fresh optimiser state,
on the recipe of `config.method` (`methods.edm`); its `recipe.denoiser(params)`, in network
units, is the next lap's prior through `ScaledDenoiser` (EM units = network units *
`em.data_scale`). The E-step (`estep`) is `posterior.sample_posterior` with MMPS (vmapped over
observations, sharded over devices). Samples that are not finite or out of range are dropped
and counted.

Layout of `workdir/em/lap_{k:03d}/`: `train/` (the M-step's own workdir: checkpoints,
metrics), `mstep.json` (the M-step's time, written when it finished: the M-step is done iff it
exists), `estep/chunk_{j:05d}.npy` (E-step chunks, written atomically), `samples.npy` (the
lap's kept samples) and `lap.json` (counts, metrics, times and the sigma grid of its E-step,
`sampling/sigmas`, in EM data units), written last: a lap is done iff its `lap.json` exists.
A killed run resumes inside the lap where it stopped (the M-step from its last checkpoint,
the E-step from its last chunk). A SIGTERM (`training.preemption`) checkpoints the M-step's
step in flight, or finishes and saves the E-step's chunk in flight, then raises `Preempted`:
the lap is not marked done, and the same command resumes it. Every option is checked before
the workdir is written (`options`); `em.num_laps` may change on resume (extending a finished
run continues from its last lap). Every key derives from `fold_in(key(seed), lap)`, never
from `hash()`. Files go through `diffssl_jax.storage` (a workdir may be `gs://...`); on
multi-host runs process 0 writes them and the other processes wait for it at the end of
each lap.
"""

import json
import math
import time

import jax
import numpy as np
from etils import epath

from diffssl_jax import data, storage
from diffssl_jax.em import gaussian, options
from diffssl_jax.em.estep import e_step, filter_samples
from diffssl_jax.evaluation.samples import sample_grid_drawer
from diffssl_jax.posterior.problems import InverseProblem, check_problem
from diffssl_jax.sampling import samplers
from diffssl_jax.sampling.denoisers import GaussianDenoiser, ScaledDenoiser
from diffssl_jax.training import checkpoint, loop, preemption, workdir_lock

SIGMA_UNIT = "EM data units"
_ESTEP_STREAM, _PRIOR_STREAM = 0, 1  # fold_in tags of the lap key's two uses


class EMError(RuntimeError):
    """A lap that cannot complete (no usable samples, bad data); earlier laps are kept."""


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
    draw = sample_grid_drawer(config.method)
    loop.train(train_config, directory, recipe, source=source, draw_samples=draw)
    return directory


def _write_metrics(workdir: str) -> None:
    """Rewrites `workdir/metrics.jsonl` from the completed laps' `lap.json` (atomic)."""
    lines = []
    for k in completed_laps(workdir):
        info = storage.read_json(lap_dir(workdir, k) / "lap.json")
        lines.append(json.dumps({"lap": k, **info}))
    storage.write_text(storage.path(workdir) / "metrics.jsonl", "\n".join(lines) + "\n")


def write_lap(workdir: str, lap: int, info: dict, samples: np.ndarray | None = None) -> None:
    """Process 0 writes the lap's samples (if given), then `lap.json` and the metrics; every
    process then waits, so that none reads the lap before it is written."""
    if storage.is_primary():
        if samples is not None:
            storage.save_npy(lap_dir(workdir, lap) / "samples.npy", samples)
        storage.write_json(lap_dir(workdir, lap) / "lap.json", info)
        _write_metrics(workdir)
    storage.sync(f"em_lap_{lap}")


def describe_grid(sampling) -> dict:
    """The E-step's sigma grid (`samplers.describe_sigmas`), in EM data units."""
    return samplers.describe_sigmas(sampling, unit=SIGMA_UNIT)


def run_lap(
    lap: int,
    prior,
    problem: InverseProblem,
    config,
    workdir: str,
    evaluate,
    mesh=None,
    extra=None,
):
    """E-step under `prior` (a denoiser in EM units), filter, evaluate, write the lap (with
    the entries of `extra`, e.g. the M-step's time, and the sigma grid in its `lap.json`)."""
    directory = lap_dir(workdir, lap)
    rng = lap_key(config.seed, lap)
    t0 = time.perf_counter()
    raw = e_step(
        prior,
        problem,
        rng=jax.random.fold_in(rng, _ESTEP_STREAM),
        sampling=config.sampling,
        posterior=config.posterior,
        chunk_size=config.em.chunk_size,
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
    info["sampling/sigmas"] = describe_grid(config.sampling)
    write_lap(workdir, lap, info, kept)
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
    config, workdir: str, problem: InverseProblem, *, recipe, evaluate=None, mesh=None
) -> list[dict]:
    """Runs (or resumes) `config.em.num_laps` EM laps into `workdir`.

    Args:
      config: the EM config (groups em, train, optim, sampling, posterior, data, ...);
        `sampling.sigma_*` in EM units (`options.check_units`).
      workdir: output directory; rerunning on it resumes.
      problem: the observations (`posterior.problems`); the laps' samples have its shape.
      recipe: the prior's `Recipe` (trained by the one loop in each M-step); its
        `denoiser(params)` is the prior in network units.
      evaluate: `(lap, prior_denoiser, samples, rng) -> {name: float}`, logged per lap.
      mesh: devices for the E-step (default: all).

    Returns:
      The `lap.json` dicts of every lap, lap 0 (the Gaussian prior) first.

    Raises:
      ValueError: a bad option or observation (before anything is written).
      training.Preempted: after a SIGTERM (what was in flight is saved; rerun to resume).
    """
    n = check_problem(problem)
    options.check_em_config(config, tuple(problem.shape), n, recipe)
    with preemption.handle_sigterm(), workdir_lock.hold(workdir):  # one writer per workdir
        loop.prepare_workdir(config, workdir)
        return _run_laps(config, workdir, problem, recipe, evaluate, mesh)


def _run_laps(config, workdir, problem, recipe, evaluate, mesh):
    """`run` after its checks: lap 0 if not done, then the laps up to `em.num_laps`."""
    done = completed_laps(workdir)
    if not done:
        mean, cov = gaussian.fit_problem(problem, num_iterations=config.em.gaussian_iterations)
        flat = (math.prod(problem.shape),)
        prior = ScaledDenoiser(GaussianDenoiser(mean, cov), flat, 1.0)
        run_lap(0, prior, problem, config, workdir, evaluate, mesh)
        done = [0]
    net_shape = tuple(config.data.image_shape)
    for lap in range(done[-1] + 1, config.em.num_laps + 1):
        train_dir, mstep_info = _m_step_once(config, workdir, lap, recipe)
        params = checkpoint.load_params(train_dir, which="ema")
        prior = ScaledDenoiser(recipe.denoiser(params), net_shape, config.em.data_scale)
        run_lap(lap, prior, problem, config, workdir, evaluate, mesh, extra=mstep_info)
    return [load_lap(workdir, k)[1] for k in completed_laps(workdir)]
