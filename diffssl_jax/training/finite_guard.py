"""The non-finite guard: every training step is checked on device, before anything is saved.

`with_finite_guard(train_step)` adds an int32 scalar `first_bad` to the step: 0 while every
step was finite, else the first step whose metrics or new state held a NaN or an inf. It
stays on device (no host sync per step); the loop reads it (`stop_if_non_finite`) only
before a checkpoint save, a sample grid and a log line, so a non-finite state is never
checkpointed, drawn or logged, and the run stops naming the real last good checkpoint.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from diffssl_jax.training.state import TrainState


class NonFiniteError(FloatingPointError):
    """A step gave NaN or inf; it was not saved. The message names the last good checkpoint
    and the rerun that resumes from it."""


def all_finite(tree: Any) -> jax.Array:
    """A boolean scalar: whether every floating-point leaf of `tree` is finite (no NaN, inf).

    Integer leaves (optimiser step counts) are skipped. One fused reduction per leaf: cheap
    next to a training step, and it stays on device.
    """
    checks = [
        jnp.all(jnp.isfinite(leaf))
        for leaf in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
    ]
    return jnp.all(jnp.stack(checks)) if checks else jnp.asarray(True)


def with_finite_guard(
    train_step: Callable[[TrainState, dict], tuple[TrainState, dict]],
) -> Callable[[TrainState, dict, jax.Array], tuple[TrainState, dict, jax.Array]]:
    """Wraps a train step with an on-device record of the first non-finite step.

    The guarded step is `(state, batch, first_bad) -> (state, metrics, first_bad)`, with
    `first_bad` 0 while every step so far was finite, else the step count (`new_state.step`)
    of the first step whose metrics or new state (parameters, EMA, optimiser state) hold a
    NaN or an inf. The metrics count too: a parameter or update norm that overflows float32
    marks a diverged state even while each parameter is still finite (with lr 1e30 the
    parameters after one full-size update are ~1e29, and every later loss is inf whatever
    the learning rate), so such a state is not saved either.
    """

    def guarded(state: TrainState, batch: dict, first_bad: jax.Array):
        new_state, metrics = train_step(state, batch)
        finite = all_finite((metrics, new_state.params, new_state.ema_params, new_state.opt_state))
        first_bad = jnp.where((first_bad == 0) & ~finite, new_state.step, first_bad)
        return new_state, metrics, first_bad.astype(jnp.int32)

    return guarded


def non_finite_message(bad_step: int, bad_metrics: dict, last_good, config, workdir) -> str:
    """What a non-finite step says: where, what, the real last good checkpoint, the remedy.

    Args:
        bad_step: the first non-finite step.
        bad_metrics: that step's metrics on the host (may be empty).
        last_good: the latest finalised checkpoint's step, or None.
        config: the run's config (for the learning rate and `train.init_from`).
        workdir: the run's workdir.
    """
    what = ", ".join(sorted(k for k, v in bad_metrics.items() if not np.isfinite(v)))
    # A tenth of the rate, at most 1e-3 (a divergent 1e30 gets a usable suggestion).
    lower = f"--config.optim.lr_peak={min(config.optim.lr_peak / 10, 1e-3):.3g}"
    if last_good is not None:
        where = f"The last good checkpoint is step {last_good} ({workdir}/checkpoints/{last_good})"
        resumes = f"it resumes from step {last_good}"
    else:
        where = "No checkpoint was saved before it"
        init = config.train.init_from
        resumes = "it starts again from step 0" + (f" (from {init})" if init else "")
    return (
        f"step {bad_step} gave non-finite values ({what or 'parameters or optimiser state'}); "
        "the run stopped before saving that state (every step is checked: no checkpoint holds "
        f"a NaN or inf). {where}: rerun the same command with a lower learning rate, e.g. "
        f"{lower} (optim.* may change on resume), or with the data fixed; {resumes}."
    )


def stop_if_non_finite(first_bad, window, window_start, manager, config, workdir) -> None:
    """Reads the device-side guard (one scalar); on a bad step waits for the saves in flight
    and raises `NonFiniteError` naming the last good (finalised) checkpoint.

    Args:
        first_bad: the guard's scalar (`with_finite_guard`).
        window: the metrics of steps `window_start + 1, ...` (device arrays), not yet logged.
        window_start: the step before the window's first.
        manager: the run's orbax `CheckpointManager`.
        config: the run's config.
        workdir: the run's workdir.
    """
    bad_step = int(jax.device_get(first_bad))
    if bad_step == 0:
        return
    manager.wait_until_finished()
    index = bad_step - window_start - 1
    bad_metrics = jax.device_get(window[index]) if 0 <= index < len(window) else {}
    message = non_finite_message(bad_step, bad_metrics, manager.latest_step(), config, workdir)
    raise NonFiniteError(message)
