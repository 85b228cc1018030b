"""Orbax checkpoints of the train state and the data iterator, and `load_params`.

Layout: `workdir/checkpoints/<step>/{state, data, meta}` and `workdir/config.json`; a workdir
is a local path or a `gs://` URI (`diffssl_jax.storage`). Orbax writes a step into a
temporary directory and renames it (or writes a commit file on object stores) only when every
file is written, so a write killed half-way is never seen by `latest_step()`: a killed run
resumes from the last finalised checkpoint. Every step directory carries orbax's
`commit_success.txt`; one without it is an unfinished write.

Checkpoints do not depend on the topology that wrote them: the training loop restores into
its own mesh's shardings, and `load_params` onto this host's CPU (see `on_one_device`), so a
run trained on a pod slice loads on a laptop. A step that cannot be read is reported as
missing, unfinished or damaged (`step_error`), with what moving it aside would lose.
"""

from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from diffssl_jax import storage
from diffssl_jax.training import logs, validation
from diffssl_jax.training.state import TrainState


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read (missing, unfinished or damaged), or none at all."""


# orbax 0.12.8 writes this file into a step directory as the last act of a save (before the
# rename that publishes it locally; on object stores it is the only commit): a step
# directory without it is an interrupted write (`orbax.checkpoint._src.path.atomicity`).
COMMIT_MARKER = "commit_success.txt"


def _handlers() -> dict:
    return {
        "state": ocp.StandardCheckpointHandler(),
        "data": ocp.JsonCheckpointHandler(),
        "meta": ocp.JsonCheckpointHandler(),
    }


def make_manager(workdir: str, *, keep: int = 2) -> ocp.CheckpointManager:
    """The checkpoint manager of `workdir/checkpoints` (created if missing).

    `keep` (`train.keep_checkpoints`) is the number of finalised checkpoints a workdir
    holds. Orbax deletes the oldest only after the next one is finalised, so a run killed
    in between leaves `keep + 1`; the writer drops that excess here, when it starts (also
    when it then finds nothing to do).
    """
    manager = ocp.CheckpointManager(
        storage.path(workdir) / "checkpoints",
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        item_handlers=_handlers(),
    )
    steps = sorted(manager.all_steps())
    for step in steps[: max(len(steps) - keep, 0)] if keep and keep > 0 else []:
        logging.info("keep_checkpoints=%d: deleting checkpoint %d of %s", keep, step, steps)
        manager.delete(step)
    return manager


def _key_data(rng):
    """Raw key data of a typed key, or of its abstract `ShapeDtypeStruct` (for restore)."""
    if isinstance(rng, jax.ShapeDtypeStruct):
        data = jax.eval_shape(jax.random.key_data, rng)
        return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=rng.sharding)
    return jax.random.key_data(rng)


def _saveable(state: TrainState) -> dict:
    """The state as a dict of arrays; the typed key is stored as its raw key data, since
    orbax's support for typed keys has been patchy (google/orbax#620)."""
    return {
        "step": state.step,
        "params": state.params,
        "ema_params": state.ema_params,
        "opt_state": state.opt_state,
        "rng": _key_data(state.rng),
    }


def save(manager: ocp.CheckpointManager, state: TrainState, data_state: dict, meta: dict) -> None:
    """Saves `state`, the grain iterator state and `meta` (JSON) at `state.step`."""
    step = int(jax.device_get(state.step))
    manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(_saveable(state)),
            data=ocp.args.JsonSave(data_state),
            meta=ocp.args.JsonSave(meta),
        ),
        force=True,
    )


def _moving_aside(directory, step: int, steps: list[int]) -> str:
    """What moving step `step` aside costs, and where a run resumes then."""
    earlier = [s for s in steps if s < step]
    move = f"move it aside (e.g. rename {directory / str(step)} to {step}.unreadable)"
    if earlier:
        return (
            f"{move}: you lose steps {earlier[-1] + 1}..{step}, and the run will resume from "
            f"step {earlier[-1]}, the latest finalised checkpoint before it"
        )
    return (
        f"it is the only checkpoint: moving it aside loses all {step} steps of training (a "
        "rerun starts from step 0). Check first that the storage is reachable and the copy "
        f"complete (a partial download?); then {move}, or use a new --workdir"
    )


def step_error(directory, steps: list[int], step: int, error: Exception) -> CheckpointError:
    """Why step `step` of `directory` cannot be read: missing, unfinished or damaged.

    Args:
        directory: the checkpoint directory (`workdir/checkpoints`).
        steps: its finalised steps (`manager.all_steps()`).
        step: the step that was asked for.
        error: what orbax raised.
    """
    available = f"available steps: {steps}" if steps else "it holds no finalised checkpoint"
    step_dir = directory / str(step)
    if step_dir.exists() and (step_dir / COMMIT_MARKER).exists():
        return CheckpointError(
            f"the checkpoint at step {step} in {directory} is finalised ({COMMIT_MARKER} "
            f"present) but cannot be read ({type(error).__name__}: {str(error)[:300]}). Its "
            f"files are damaged: {_moving_aside(directory, step, steps)}."
        )
    partial = [step_dir] if step_dir.exists() else []
    partial += list(directory.glob(f"{step}.orbax-checkpoint-tmp*"))
    if not partial:
        return CheckpointError(
            f"there is no checkpoint at step {step} in {directory} ({available}); pass one of "
            "those steps, or step=None for the latest."
        )
    earlier = [s for s in steps if s < step]
    resume = f"resume from step {earlier[-1]}" if earlier else "start from step 0"
    return CheckpointError(
        f"the checkpoint at step {step} in {directory} is unfinished: {partial[0]} has no "
        f"{COMMIT_MARKER} (orbax's commit marker), so its write was interrupted and it holds "
        f"no usable state ({available}). Load one of those steps. If training stops on it, "
        f"move it aside (e.g. rename it to {step}.unfinished; no saved step is lost) and the "
        f"run will {resume}."
    )


def _unreadable(manager: ocp.CheckpointManager, step: int, error: Exception) -> CheckpointError:
    return step_error(manager.directory, sorted(manager.all_steps()), step, error)


def restore(
    manager: ocp.CheckpointManager, abstract_state: TrainState, step: int | None = None
) -> tuple[TrainState, dict, dict]:
    """Restores (state, data_state, meta) into the shapes and shardings of `abstract_state`.

    Args:
        abstract_state: a TrainState of `jax.ShapeDtypeStruct`s (from `jax.eval_shape`) with
            their target shardings; its `tx` is reused.
        step: the step to restore; None for the latest.
    """
    step = manager.latest_step() if step is None else step
    target = _saveable(abstract_state)
    try:
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target),
                data=ocp.args.JsonRestore(),
                meta=ocp.args.JsonRestore(),
            ),
        )
    except Exception as error:  # orbax raises many types; all mean "unreadable"
        raise _unreadable(manager, step, error) from error
    arrays = restored["state"]
    state = abstract_state.replace(
        step=arrays["step"],
        params=arrays["params"],
        ema_params=arrays["ema_params"],
        opt_state=arrays["opt_state"],
        rng=jax.random.wrap_key_data(arrays["rng"]),
    )
    return state, restored["data"], restored["meta"]


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a workdir was trained with (`workdir/config.json`); keys added to the configs
    since it was written hold the value it ran with (`validation.ADDED_KEYS`)."""
    path = storage.path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: {workdir!r} is not a diffssl_jax workdir "
            "(train one with `python -m launch.train --config=... --workdir=...`)"
        )
    return ml_collections.ConfigDict(validation.with_added_keys(storage.read_json(path)))


def _reader(workdir: str) -> ocp.CheckpointManager:
    """A read-only manager of `workdir/checkpoints` that knows the items' handlers."""
    # save_interval_steps=0: orbax warns when read_only overrides a non-zero value; it also
    # warns on every read-only manager that its directory is read only (nothing to act on).
    options = ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0)
    with logs.suppress_absl_messages("Given directory is read only"):
        return ocp.CheckpointManager(
            storage.path(workdir) / "checkpoints", options=options, item_handlers=_handlers()
        )


def _host_device() -> jax.Device:
    """Where `load_params` restores: the host's CPU (any topology has one), else device 0."""
    try:
        return jax.local_devices(backend="cpu")[0]
    except RuntimeError:  # JAX_PLATFORMS without cpu
        return jax.local_devices()[0]


def on_one_device(metadata_tree: Any, device: jax.Device) -> Any:
    """A restore target for a saved tree: each array's shape and dtype, on `device`.

    Orbax otherwise rebuilds the sharding the arrays were saved with (the writer's devices)
    and fails with "Topology mismatch" on another device count.
    """
    sharding = jax.sharding.SingleDeviceSharding(device)

    def leaf(meta):
        if hasattr(meta, "shape") and hasattr(meta, "dtype"):
            return jax.ShapeDtypeStruct(tuple(meta.shape), meta.dtype, sharding=sharding)
        return meta

    return jax.tree.map(leaf, metadata_tree)


def load_params(
    workdir: str, step: int | None = None, which: str = "ema", sharding: Any = None
) -> Any:
    """Trained parameters of a workdir: the one entry point for Colab, evaluation and DiTi.

    Args:
        workdir: a training workdir (a local path or a `gs://` URI).
        step: the checkpoint step; None for the latest.
        which: "ema" for the EMA parameters (what evaluation uses) or "params".
        sharding: where to put them (a `jax.sharding.Sharding`); None keeps numpy arrays on
            the host. Any device count works, whatever topology wrote the checkpoint.

    Returns:
        The parameter pytree.
    """
    if which not in ("ema", "params"):
        raise ValueError(f"which must be 'ema' or 'params', got {which!r}")
    manager = _reader(workdir)
    step = manager.latest_step() if step is None else step
    if step is None:
        raise CheckpointError(f"no finalised checkpoint in {workdir}/checkpoints: train first")
    try:
        metadata = manager.item_metadata(step)["state"]
        target = on_one_device(getattr(metadata, "tree", metadata), _host_device())
        restored = manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
        )
    except Exception as error:  # orbax raises many types; classified by step_error
        raise _unreadable(manager, step, error) from error
    params = restored["state"]["ema_params" if which == "ema" else "params"]
    params = jax.tree.map(np.asarray, params)
    return params if sharding is None else jax.device_put(params, sharding)
