"""The pure train step: `train_step(state, batch) -> (state, metrics)`."""

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from diffssl_jax.training.state import TrainState

LossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


def make_optimizer(
    *,
    lr_peak: float,
    warmup_steps: int,
    decay: str,
    weight_decay: float,
    grad_clip_norm: float,
    num_steps: int,
    **unused_ema,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW with linear warm-up, then a constant, cosine or linear (to 0) learning rate.

    Takes `**config.optim` (whose `ema_decay` belongs to the step, not the optimiser).

    Returns:
        (tx, schedule): the optax transform and its learning-rate schedule.
    """
    del unused_ema
    if decay == "constant":
        schedule = optax.join_schedules(
            [
                optax.linear_schedule(0.0, lr_peak, max(warmup_steps, 1)),
                optax.constant_schedule(lr_peak),
            ],
            [max(warmup_steps, 1)],
        )
    elif decay == "cosine":
        schedule = optax.warmup_cosine_decay_schedule(
            0.0, lr_peak, max(warmup_steps, 1), max(num_steps, warmup_steps + 1)
        )
    elif decay == "linear":
        warmup = max(warmup_steps, 1)
        schedule = optax.join_schedules(
            [
                optax.linear_schedule(0.0, lr_peak, warmup),
                optax.linear_schedule(lr_peak, 0.0, max(num_steps - warmup, 1)),
            ],
            [warmup],
        )
    else:
        raise ValueError(f"optim.decay must be 'constant', 'cosine' or 'linear', got {decay!r}")
    parts = [optax.clip_by_global_norm(grad_clip_norm)] if grad_clip_norm > 0 else []
    parts.append(optax.adamw(schedule, weight_decay=weight_decay))
    return optax.chain(*parts), schedule


def ema_decay_at(step: jax.Array, ema_decay: float) -> jax.Array:
    """EMA decay with warm-up, min(decay, (1 + step) / (10 + step)).

    Without the warm-up an EMA of decay 0.999 still holds 0.999^n of the initialisation
    after n steps (55% at n = 600), so early checkpoints and sample grids would show an
    untrained network (the `num_updates` rule of TensorFlow's ExponentialMovingAverage).
    """
    step = jnp.asarray(step, jnp.float32)
    return jnp.minimum(ema_decay, (1.0 + step) / (10.0 + step))


def make_train_step(
    loss_fn: LossFn, *, ema_decay: float, lr_schedule: optax.Schedule
) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """Returns the pure train step for `loss_fn(params, batch, rng) -> (loss, metrics)`.

    The step key is `fold_in(state.rng, state.step)`, so randomness is a function of
    (seed, step) only: the same on 1 or 8 devices and after a restart. The EMA decay
    warms up (`ema_decay_at`). Under `jax.jit` with a
    batch sharded over the mesh's `data` axis, the loss is a mean over the global batch, so
    its gradient is already averaged over devices.
    """

    def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        rng = jax.random.fold_in(state.rng, state.step)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, aux), grads = grad_fn(state.params, batch, rng)
        updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        decay = ema_decay_at(state.step, ema_decay)
        ema_params = optax.incremental_update(params, state.ema_params, 1.0 - decay)
        metrics = {
            "train/loss": loss,
            "train/grad_norm": optax.tree.norm(grads),
            "train/param_norm": optax.tree.norm(params),
            "train/update_norm": optax.tree.norm(updates),
            "train/lr": jnp.asarray(lr_schedule(state.step), jnp.float32),
            **{f"train/{k}": v for k, v in aux.items()},
        }
        new_state = state.replace(
            step=state.step + 1, params=params, ema_params=ema_params, opt_state=opt_state
        )
        return new_state, metrics

    return train_step
