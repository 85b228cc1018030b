"""Orbax checkpoints of the train state and the data iterator, and `load_params`.

Layout: `workdir/checkpoints/<step>/{state, data, meta}` and `workdir/config.json`; a workdir
is a local path or a `gs://` URI (`diffssl_jax.storage`). Orbax writes a step into a
temporary directory and renames it (or writes a commit file on object stores) only when every
file is written, so a write killed half-way is never seen by `latest_step()`: a killed run
resumes from the last finalised checkpoint.
"""

from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from diffssl_jax import storage
from diffssl_jax.training import logs
from diffssl_jax.training.state import TrainState


class CheckpointError(RuntimeError):
    """A finalised checkpoint that cannot be read, or a workdir without checkpoints."""


def make_manager(workdir: str, *, keep: int = 2) -> ocp.CheckpointManager:
    """The checkpoint manager of `workdir/checkpoints` (created if missing)."""
    return ocp.CheckpointManager(
        storage.path(workdir) / "checkpoints",
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
    )


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


def _damaged(manager: ocp.CheckpointManager, step: int, error: Exception) -> CheckpointError:
    steps = sorted(manager.all_steps())
    earlier = [s for s in steps if s < step]
    hint = (
        f"delete {manager.directory / str(step)} to resume from step {earlier[-1]}"
        if earlier
        else "delete it (no earlier checkpoint exists) or use a new --workdir"
    )
    return CheckpointError(
        f"checkpoint at step {step} in {manager.directory} is finalised but cannot be read "
        f"({type(error).__name__}: {str(error)[:300]}). It is damaged: {hint}."
    )


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
        raise _damaged(manager, step, error) from error
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
    """The config a workdir was trained with (`workdir/config.json`)."""
    path = storage.path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: {workdir!r} is not a diffssl_jax workdir "
            "(train one with `python -m launch.train --config=... --workdir=...`)"
        )
    return ml_collections.ConfigDict(storage.read_json(path))


def load_params(
    workdir: str, step: int | None = None, which: str = "ema", sharding: Any = None
) -> Any:
    """Trained parameters of a workdir: the one entry point for Colab, evaluation and DiTi.

    Args:
        workdir: a training workdir (a local path or a `gs://` URI).
        step: the checkpoint step; None for the latest.
        which: "ema" for the EMA parameters (what evaluation uses) or "params".
        sharding: where to put them (a `jax.sharding.Sharding`); None keeps numpy arrays on
            the host.

    Returns:
        The parameter pytree.
    """
    if which not in ("ema", "params"):
        raise ValueError(f"which must be 'ema' or 'params', got {which!r}")
    # save_interval_steps=0: orbax warns when read_only overrides a non-zero value; it also
    # warns on every read-only manager that its directory is read only (nothing to act on).
    options = ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0)
    with logs.suppress_absl_messages("Given directory is read only"):
        manager = ocp.CheckpointManager(storage.path(workdir) / "checkpoints", options=options)
    step = manager.latest_step() if step is None else step
    if step is None:
        raise CheckpointError(f"no finalised checkpoint in {workdir}/checkpoints: train first")
    try:
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    except Exception as error:
        raise _damaged(manager, step, error) from error
    params = restored["state"]["ema_params" if which == "ema" else "params"]
    params = jax.tree.map(np.asarray, params)
    return params if sharding is None else jax.device_put(params, sharding)
