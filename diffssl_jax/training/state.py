"""The one explicit training state: parameters, their EMA, optimiser state, step and key."""

from typing import Any, Callable

import flax.struct
import jax
import optax


@flax.struct.dataclass
class TrainState:
    """Everything a training step reads and writes; a pytree, so it jits, shards and saves.

    Attributes:
        step: int32 scalar, the number of optimiser steps taken.
        params: the network parameters.
        ema_params: exponential moving average of `params` (what evaluation uses).
        opt_state: the optax state of `tx`.
        rng: a typed base key that is never advanced; step keys are `fold_in(rng, step)`.
        tx: the optax transform (static: not part of the pytree).
    """

    step: jax.Array
    params: Any
    ema_params: Any
    opt_state: Any
    rng: jax.Array
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)


def create_train_state(
    init_fn: Callable[[jax.Array], Any], tx: optax.GradientTransformation, rng: jax.Array
) -> TrainState:
    """Builds the initial state; `init_fn(rng_init) -> params`. Jit it with out_shardings."""
    rng_init, rng_train = jax.random.split(rng)
    params = init_fn(rng_init)
    return TrainState(
        step=jax.numpy.zeros((), jax.numpy.int32),
        params=params,
        ema_params=jax.tree.map(jax.numpy.copy, params),  # own buffers: the state is donated
        opt_state=tx.init(params),
        rng=rng_train,
        tx=tx,
    )
