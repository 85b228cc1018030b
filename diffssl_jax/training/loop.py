"""The one training loop: every method trains through `train(config, workdir, recipe)`.

It knows nothing of any method: the recipe gives `init`, `loss` and (optionally) `sample`.
Resume order: the workdir's latest finalised checkpoint, then `config.train.init_from`
(parameters only), then scratch. A finished run is not redone.
"""

import contextlib
import functools
import json
import signal
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from absl import logging

from diffssl_jax import data, plotting, storage
from diffssl_jax.training import checkpoint, logs, metric_writers, parallel
from diffssl_jax.training.state import TrainState, create_train_state
from diffssl_jax.training.step import make_optimizer, make_train_step

# Keys that may change when a run is resumed (extending or re-pacing a run is legitimate).
RESUMABLE_CHANGES = (
    "train.num_steps",
    "train.log_every_steps",
    "train.progress_bar",
    "train.sample_every_steps",
    "train.checkpoint_every_steps",
)


def _flatten(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def prepare_workdir(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Writes `config.json` (process 0), or checks that a resumed run uses the same config."""
    path = storage.path(workdir) / "config.json"
    current = json.loads(config.to_json())
    if path.exists():
        saved = storage.read_json(path)
        new, old = _flatten(current), _flatten(saved)
        changed = sorted(
            k
            for k in set(new) | set(old)
            if new.get(k) != old.get(k) and k not in RESUMABLE_CHANGES
        )
        if changed:
            details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
            raise ValueError(
                f"{workdir} was trained with a different config ({details}). Resume with the "
                "same config, or start a new --workdir."
            )
    if storage.is_primary():
        storage.write_json(path, current, indent=2)


def _abstract_state(init_fn, tx, rng, sharding) -> TrainState:
    abstract = jax.eval_shape(functools.partial(create_train_state, init_fn, tx), rng)
    return jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), abstract
    )


def init_or_restore(config, workdir, recipe, example_batch, mesh, manager):
    """Returns (state, data_state or None, start_step) following the resume order."""
    tx, _ = make_optimizer(**config.optim, num_steps=config.train.num_steps)
    init_fn = functools.partial(recipe.init, batch=example_batch)
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


class _Preemption:
    """Turns SIGTERM into a flag the loop polls, so it can checkpoint and exit cleanly."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (e.g. some notebook kernels)
            self._previous = None
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _log(metrics_window, step, first_step, last_checkpoint, start_time, writer):
    """Averages the window's metrics, stops on non-finite values, writes them to `writer`
    (metrics.jsonl, TensorBoard and the progress line; see `metric_writers`)."""
    host = jax.device_get(metrics_window)
    summary = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
    bad = sorted(k for k, v in summary.items() if not np.isfinite(v))
    if bad:
        raise FloatingPointError(
            f"non-finite {bad} between steps {first_step} and {step}; the last checkpoint is "
            f"at step {last_checkpoint}. Lower optim.lr_peak or check the data, then rerun "
            "(the run resumes from that checkpoint)."
        )
    # Measured after device_get, which waits for the window's steps: compute, not dispatch.
    elapsed = time.perf_counter() - start_time
    summary["time/steps_per_sec"] = len(host) / max(elapsed, 1e-9)
    writer.write_scalars(step, summary)
    writer.flush()
    return summary


def _save_samples(recipe, sample_fn, state, config, workdir, step, writer):
    """Every process samples (one computation over the global mesh); process 0 writes."""
    if recipe.sample is None:
        return
    rng = jax.random.fold_in(jax.random.key(config.seed + 1), step)
    images = jax.device_get(sample_fn(state.ema_params, rng))
    if not storage.is_primary():
        return
    path = plotting.save_image_grid(
        images,
        storage.path(workdir) / "figures" / f"samples_{step:07d}.png",
        title=f"{config.method} samples (EMA parameters)",
        step=step,
    )
    writer.write_images(step, {"samples": plotting.image_grid(images)})
    logging.info("step %d: wrote %s", step, path)


def train(config: ml_collections.ConfigDict, workdir: str, recipe, *, source=None) -> TrainState:
    """Trains `recipe` into `workdir`; resumes when checkpoints exist.

    The data are `config.data`'s source, or `source` (any random-access source, e.g. an
    `ArraySource` of EM posterior samples) when given.
    """
    cfg = config.train
    mesh = parallel.make_mesh(config.mesh.num_devices)
    parallel.check_batch_size(cfg.batch_size, mesh)
    if source is None:
        source = data.source_for(config.data)
    prepare_workdir(config, workdir)
    dataset = data.make_dataset(
        source,
        global_batch_size=cfg.batch_size,
        seed=config.seed,
        random_flip=config.pipeline.random_flip,
    )
    iterator = data.make_iterator(dataset, num_workers=config.pipeline.num_workers)
    example_batch = dataset[0]
    data.validate_batch(example_batch, tuple(config.data.image_shape))
    manager = checkpoint.make_manager(workdir, keep=cfg.keep_checkpoints)
    state, data_state, step = init_or_restore(config, workdir, recipe, example_batch, mesh, manager)
    if step >= cfg.num_steps:
        logging.info(
            "%s: already trained to step %d >= train.num_steps; nothing to do.", workdir, step
        )
        return state
    if data_state is not None:
        iterator.set_state(data_state)

    _, schedule = make_optimizer(**config.optim, num_steps=cfg.num_steps)
    sharding = parallel.replicated(mesh)
    step_fn = jax.jit(
        make_train_step(recipe.loss, ema_decay=config.optim.ema_decay, lr_schedule=schedule),
        in_shardings=(sharding, parallel.batch_sharded(mesh)),
        out_shardings=(sharding, sharding),
        donate_argnums=0,
    )
    sample_fn = (
        jax.jit(functools.partial(recipe.sample, num=cfg.num_samples)) if recipe.sample else None
    )
    return _run(config, workdir, recipe, state, step, iterator, manager, mesh, step_fn, sample_fn)


def _run(config, workdir, recipe, state, step, iterator, manager, mesh, step_fn, sample_fn):
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
    logging.info(
        "training %s from step %d to %d (view with: tensorboard --logdir=%s)",
        workdir,
        step,
        cfg.num_steps,
        workdir,
    )
    window, window_start, t0 = [], step, time.perf_counter()
    last_checkpoint = step
    with _Preemption() as preemption, contextlib.closing(writer):
        while step < cfg.num_steps:
            batch = parallel.to_global_batch(next(iterator), mesh)
            with jax.transfer_guard("disallow"):
                state, metrics = step_fn(state, batch)
            step += 1
            window.append(metrics)
            bar.update(1)
            # Read once: a SIGTERM arriving later in this iteration is handled in the next one.
            stop = preemption.requested
            if step % cfg.log_every_steps == 0 or step == cfg.num_steps:
                bar.clear()  # the progress line goes where the bar was (a terminal)
                summary = _log(window, step, window_start, last_checkpoint, t0, writer)
                bar.set_postfix(loss=f"{summary['train/loss']:.4f}")
                window, window_start, t0 = [], step, time.perf_counter()
            if step % cfg.checkpoint_every_steps == 0 or step == cfg.num_steps or stop:
                checkpoint.save(manager, state, iterator.get_state(), {"step": step})
                last_checkpoint = step
            if (
                sample_fn
                and cfg.sample_every_steps
                and (step % cfg.sample_every_steps == 0 or step == cfg.num_steps)
            ):
                _save_samples(recipe, sample_fn, state, config, workdir, step, writer)
            if stop:
                logging.warning(
                    "SIGTERM: checkpointed step %d; rerun the same command to resume.", step
                )
                break
    manager.wait_until_finished()
    bar.close()
    return state
