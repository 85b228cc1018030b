"""The pure train step against a hand-written optax update, and its metrics and keys."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from diffssl_jax.training.state import create_train_state
from diffssl_jax.training.step import make_optimizer, make_train_step


def _loss(params, batch, rng):
    noise = jax.random.normal(rng, batch["x"].shape)
    residual = params["w"] * batch["x"] + params["b"] - batch["y"] + 0.1 * noise
    return jnp.mean(residual**2), {"mean_noise": noise.mean()}


def _setup(ema_decay=0.9):
    tx, schedule = make_optimizer(
        lr_peak=0.1,
        warmup_steps=2,
        decay="constant",
        weight_decay=0.0,
        grad_clip_norm=0.0,
        num_steps=10,
    )
    init = lambda rng: {"w": jnp.ones(3), "b": jnp.zeros(())}  # noqa: E731
    state = create_train_state(init, tx, jax.random.key(0))
    step = make_train_step(_loss, ema_decay=ema_decay, lr_schedule=schedule)
    batch = {"x": jnp.arange(6.0).reshape(2, 3), "y": jnp.ones((2, 3))}
    return state, step, batch, tx


def test_step_matches_manual_optax_update_and_ema():
    state, step, batch, tx = _setup(ema_decay=0.9)
    new_state, metrics = jax.jit(step)(state, batch)
    rng = jax.random.fold_in(state.rng, 0)
    (loss, _), grads = jax.value_and_grad(_loss, has_aux=True)(state.params, batch, rng)
    updates, _ = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    chex.assert_trees_all_close(new_state.params, params, rtol=1e-6)
    decay = min(0.9, 1.0 / 10.0)  # the warm-up rule at step 0
    ema = jax.tree.map(lambda old, new: decay * old + (1 - decay) * new, state.params, params)
    chex.assert_trees_all_close(new_state.ema_params, ema, rtol=1e-6)
    np.testing.assert_allclose(metrics["train/loss"], loss, rtol=1e-6)
    assert int(new_state.step) == 1
    assert set(metrics) == {
        "train/loss",
        "train/grad_norm",
        "train/param_norm",
        "train/update_norm",
        "train/lr",
        "train/mean_noise",
    }
    assert float(metrics["train/lr"]) == 0.0  # warm-up starts at 0


def test_ema_decay_warms_up_then_saturates():
    from diffssl_jax.training.step import ema_decay_at

    np.testing.assert_allclose(ema_decay_at(0, 0.999), 0.1)
    np.testing.assert_allclose(ema_decay_at(90, 0.999), 91 / 100)
    np.testing.assert_allclose(ema_decay_at(10**6, 0.999), 0.999)


def test_step_key_is_a_function_of_seed_and_step_only():
    state, step, batch, _ = _setup()
    s1, m1 = step(state, batch)
    s2, m2 = step(state, batch)
    np.testing.assert_array_equal(m1["train/mean_noise"], m2["train/mean_noise"])
    _, m3 = step(s1, batch)
    assert float(m3["train/mean_noise"]) != float(m1["train/mean_noise"])
    np.testing.assert_array_equal(jax.random.key_data(s1.rng), jax.random.key_data(state.rng))


def test_linear_decay_warms_up_then_falls_to_zero():
    _, schedule = make_optimizer(
        lr_peak=1e-3,
        warmup_steps=10,
        decay="linear",
        weight_decay=0.0,
        grad_clip_norm=0.0,
        num_steps=110,
    )
    values = [float(schedule(s)) for s in (0, 5, 10, 60, 110)]
    np.testing.assert_allclose(values, [0.0, 5e-4, 1e-3, 5e-4, 0.0], atol=1e-12)


def test_unknown_decay_is_rejected():
    with pytest.raises(ValueError, match="optim.decay"):
        make_optimizer(
            lr_peak=1.0,
            warmup_steps=1,
            decay="step",
            weight_decay=0.0,
            grad_clip_norm=0.0,
            num_steps=1,
        )
