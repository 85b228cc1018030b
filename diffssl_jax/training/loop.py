"""The one training loop: every method trains through `train(config, workdir, recipe)`.

It knows nothing of any method: the recipe gives `init`, `loss` and (optionally) `sample`.
It draws nothing either: the sample grids are drawn by the `draw_samples` the caller passes
(the launchers pass `evaluation.samples.sample_grid_drawer`).
Resume order: the workdir's latest finalised checkpoint, then `config.train.init_from`
(parameters only), then scratch. A finished run is not redone (a missing final sample grid,
lost to a kill after the last checkpoint, is drawn).

Nothing wrong is committed: every check that can fail on the config (`validation`: ranges,
the data's first batch, an abstract initialisation of the network, a resumed run's changed
keys) runs before the workdir is written; every step is checked for non-finite values on
device (`finite_guard`), read before each save, sample grid and log line, so a
non-finite state is never checkpointed and the run stops naming the last good checkpoint.
"""

import contextlib
import functools
import json
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from absl import logging

from diffssl_jax import data, parallel, storage
from diffssl_jax.training import (
    checkpoint,
    finite_guard,
    logs,
    metric_writers,
    preemption,
    validation,
    workdir_lock,
)
from diffssl_jax.training.sample_grids import DrawSamples, draw_missing_final_grid, save_samples
from diffssl_jax.training.state import TrainState, create_train_state
from diffssl_jax.training.step import make_optimizer, make_train_step

# Keys (fnmatch patterns) that may change when a run resumes: they set how the run goes on
# (optimiser, length, cadence, devices) or is evaluated, not what the checkpointed state means.
# Everything else (model, data, corruption, objective, method, seed, batch size, pipeline)
# may not.
# optim.grad_clip_norm may change but not between 0 and > 0 (`validation.resume_conflicts`).
RESUMABLE_CHANGES = (
    "optim.*",  # lr_peak, warmup_steps, decay, weight_decay, grad_clip_norm, ema_decay
    "train.num_steps",
    "train.log_every_steps",
    "train.checkpoint_every_steps",
    "train.keep_checkpoints",
    "train.sample_every_steps",
    "train.num_samples",
    "train.progress_bar",
    "mesh.num_devices",  # the same global batch on another device count
    "em.num_laps",  # EM (`diffssl_jax.em`): extending a finished run continues from its last lap
    "eval.*",  # how the trained network is read and scored, never what it is
)


def check_resumable(config, workdir: str, resumable: tuple[str, ...] = RESUMABLE_CHANGES) -> None:
    """Raises a `validation.ConfigError` if `workdir` was trained with a config that differs
    from `config` in a key that may not change on resume (reads only; no-op on a new workdir)."""
    path = storage.path(workdir) / "config.json"
    if not path.exists():
        return
    current = json.loads(config.to_json())
    conflicts = validation.resume_conflicts(storage.read_json(path), current, resumable)
    if conflicts:
        raise validation.ConfigError(
            f"{workdir} was trained with a different config ({'; '.join(conflicts)}). These "
            "keys cannot change on resume: rerun with the saved values, or start a new "
            f"--workdir. Keys that may change on resume: {', '.join(resumable)}."
        )


def prepare_workdir(
    config: ml_collections.ConfigDict, workdir: str, resumable: tuple[str, ...] = RESUMABLE_CHANGES
) -> None:
    """Checks a resumed run's config (`check_resumable`), then writes `config.json` (process 0)."""
    check_resumable(config, workdir, resumable)
    if storage.is_primary():
        storage.write_json(storage.path(workdir) / "config.json", json.loads(config.to_json()), 2)


def _abstract_state(init_fn, tx, rng, sharding) -> TrainState:
    abstract = jax.eval_shape(functools.partial(create_train_state, init_fn, tx), rng)
    return jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), abstract
    )


def init_or_restore(config, workdir, recipe, mesh, manager):
    """Returns (state, data_state or None, start_step) following the resume order.

    The optimiser is built from the current `config.optim` (which may differ from the saved
    run's, `RESUMABLE_CHANGES`); its restored state has the same structure.
    """
    tx, _ = make_optimizer(**config.optim, num_steps=config.train.num_steps)
    init_fn = recipe.init
    rng = jax.random.key(config.seed)
    sharding = parallel.replicated(mesh)
    if manager.latest_step() is not None:
        abstract = _abstract_state(init_fn, tx, rng, sharding)
        state, data_state, _ = checkpoint.restore(manager, abstract)
        return state, data_state, int(jax.device_get(state.step))
    create = jax.jit(functools.partial(create_train_state, init_fn, tx), out_shardings=sharding)
    state = create(rng)
    if config.train.init_from:
        params = checkpoint.load_params(config.train.init_from, which="ema", sharding=sharding)
        state = state.replace(
            params=params,
            ema_params=jax.tree.map(jnp.copy, params),  # own buffers: the step donates both
            opt_state=jax.jit(tx.init, out_shardings=sharding)(params),
        )
    return state, None, 0


def _log(metrics_window, step, start_time, writer):
    """Averages the window's metrics and writes them to `writer` (metrics.jsonl, TensorBoard
    and the progress line; see `metric_writers`). The finite guard has been read before."""
    host = jax.device_get(metrics_window)
    summary = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
    # Measured after device_get, which waits for the window's steps: compute, not dispatch.
    elapsed = time.perf_counter() - start_time
    summary["time/steps_per_sec"] = len(host) / max(elapsed, 1e-9)
    writer.write_scalars(step, summary)
    writer.flush()
    return summary


def _check_and_load(config, workdir, recipe, source):
    """Every check that can fail on the config, before anything is written to `workdir`.

    Returns:
        (mesh, dataset).
    """
    validation.check_config(config)
    mesh = parallel.make_mesh(config.mesh.num_devices)
    parallel.check_batch_size(config.train.batch_size, mesh)
    if source is None:
        source = data.source_for(config.data)
    dataset = data.make_dataset(
        source,
        global_batch_size=config.train.batch_size,
        seed=config.seed,
        random_flip=config.pipeline.random_flip,
    )
    example_batch = dataset[0]
    try:
        data.validate_batch(example_batch, tuple(config.data.image_shape))
    except ValueError as error:
        raise validation.ConfigError(f"{error} Nothing was written to {workdir}.") from error
    image_shape = tuple(example_batch["image"].shape[1:])
    validation.check_model_fits_data(recipe.init, image_shape, config.seed)
    check_resumable(config, workdir)
    return mesh, dataset


def train(
    config: ml_collections.ConfigDict,
    workdir: str,
    recipe,
    *,
    source=None,
    draw_samples: DrawSamples | None = None,
) -> TrainState:
    """Trains `recipe` into `workdir`; resumes when checkpoints exist.

    The data are `config.data`'s source, or `source` (any random-access source, e.g. an
    `ArraySource` of EM posterior samples) when given. With `draw_samples` (`DrawSamples`),
    a generative recipe's EMA samples are drawn every `train.sample_every_steps` and at the
    end, to `figures/samples_<step>.png` and TensorBoard; without it nothing is sampled.
    The config is checked before anything is written; then the run holds the workdir's
    lock (`workdir_lock.hold`: a second run on the same workdir fails at once) and waits
    for checkpoint saves in flight on every exit.

    Raises:
        validation.ConfigError: a bad config (nothing was written).
        finite_guard.NonFiniteError: a step gave NaN or inf (not saved; the message names
            the last good checkpoint and how to resume from it).
        preemption.Preempted: after a SIGTERM (the step in flight was checkpointed).
    """
    mesh, dataset = _check_and_load(config, workdir, recipe, source)
    with workdir_lock.hold(workdir):
        prepare_workdir(config, workdir)
        manager = checkpoint.make_manager(workdir, keep=config.train.keep_checkpoints)
        try:
            return _train(config, workdir, recipe, mesh, dataset, manager, draw_samples)
        finally:
            manager.wait_until_finished()  # on every exit path: no save in flight is dropped


def _train(config, workdir, recipe, mesh, dataset, manager, draw_samples) -> TrainState:
    cfg = config.train
    iterator = data.make_iterator(dataset, num_workers=config.pipeline.num_workers)
    state, data_state, step = init_or_restore(config, workdir, recipe, mesh, manager)
    sample_fn = None
    if recipe.sample and draw_samples:
        sample_fn = jax.jit(functools.partial(recipe.sample, num=cfg.num_samples))
    if step >= cfg.num_steps:
        draw_missing_final_grid(draw_samples, sample_fn, state, config, workdir, step)
        logging.info(
            "%s: already trained to step %d >= train.num_steps; nothing to do.", workdir, step
        )
        return state
    if data_state is not None:
        iterator.set_state(data_state)

    _, schedule = make_optimizer(**config.optim, num_steps=cfg.num_steps)
    sharding = parallel.replicated(mesh)
    step_fn = jax.jit(
        finite_guard.with_finite_guard(
            make_train_step(recipe.loss, ema_decay=config.optim.ema_decay, lr_schedule=schedule)
        ),
        in_shardings=(sharding, parallel.batch_sharded(mesh), sharding),
        out_shardings=(sharding, sharding, sharding),
        donate_argnums=0,
    )
    run = functools.partial(_run, config, workdir, draw_samples)
    return run(state, step, iterator, manager, mesh, step_fn, sample_fn)


def _run(config, workdir, draw_samples, state, step, iterator, manager, mesh, step_fn, sample_fn):
    cfg = config.train
    # tqdm redraws its line with '\r': only on a terminal or in a notebook, never in a log file.
    show_bar = cfg.progress_bar and jax.process_index() == 0 and logs.shows_live_updates(sys.stderr)
    bar = tqdm.tqdm(
        total=cfg.num_steps,
        initial=step,
        disable=not show_bar,
        desc="train",
        unit="step",
        file=sys.stderr,
    )
    writer = metric_writers.create_default_writer(
        workdir, num_steps=cfg.num_steps, start_step=step, process_index=jax.process_index()
    )
    view = f"view with: tensorboard --logdir={workdir}"
    logging.info("training %s from step %d to %d (%s)", workdir, step, cfg.num_steps, view)
    window, window_start, t0 = [], step, time.perf_counter()
    # 0, or the first step that gave a non-finite value (on device: no host sync per step).
    first_bad = jax.device_put(np.int32(0), parallel.replicated(mesh))
    # A SIGTERM sets a flag: the step in flight is checkpointed, then `Preempted` is raised.
    stage = preemption.deferred(f"while training {workdir}")
    with preemption.handle_sigterm(), stage, contextlib.closing(writer):
        while step < cfg.num_steps:
            batch = parallel.to_global_batch(next(iterator), mesh)
            with jax.transfer_guard("disallow"):
                state, metrics, first_bad = step_fn(state, batch, first_bad)
            step += 1
            window.append(metrics)
            bar.update(1)
            # Read once: a SIGTERM arriving later in this iteration is handled in the next one.
            stop = preemption.requested()
            last = step == cfg.num_steps
            log_now = step % cfg.log_every_steps == 0 or last
            save_now = step % cfg.checkpoint_every_steps == 0 or last or stop
            every = cfg.sample_every_steps
            sample_now = bool(sample_fn and every and (step % every == 0 or last))
            if log_now or save_now or sample_now:  # nothing non-finite is written or drawn
                finite_guard.stop_if_non_finite(
                    first_bad, window, window_start, manager, config, workdir
                )
            if log_now:
                bar.clear()  # the progress line goes where the bar was (a terminal)
                summary = _log(window, step, t0, writer)
                bar.set_postfix(loss=f"{summary['train/loss']:.4f}")
                window, window_start, t0 = [], step, time.perf_counter()
            if save_now:
                checkpoint.save(manager, state, iterator.get_state(), {"step": step})
            if sample_now:
                save_samples(draw_samples, sample_fn, state, config, workdir, step, writer)
            if stop:
                manager.wait_until_finished()
                logging.warning(
                    "SIGTERM: checkpointed step %d; rerun the same command to resume.", step
                )
                raise preemption.Preempted(f"while training {workdir} (at step {step})", step)
    bar.close()
    return state
