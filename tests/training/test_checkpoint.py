"""Checkpoints: bit-exact round trip (typed key included), killed writes, damaged files."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax.training import checkpoint
from diffssl_jax.training.state import create_train_state
from diffssl_jax.training.step import make_optimizer, make_train_step


def _state_and_step():
    tx, schedule = make_optimizer(
        lr_peak=0.1,
        warmup_steps=1,
        decay="cosine",
        weight_decay=0.01,
        grad_clip_norm=1.0,
        num_steps=10,
    )
    init = lambda rng: {"w": jax.random.normal(rng, (4, 3)), "b": jnp.zeros(3)}  # noqa: E731
    state = create_train_state(init, tx, jax.random.key(3))
    loss = lambda p, batch, rng: (jnp.sum((batch @ p["w"] + p["b"]) ** 2), {})  # noqa: E731
    return state, jax.jit(make_train_step(loss, ema_decay=0.5, lr_schedule=schedule))


def _abstract(state):
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state)


def test_round_trip_is_bit_exact(tmp_path):
    state, step = _state_and_step()
    state, _ = step(state, jnp.ones((2, 4)))
    manager = checkpoint.make_manager(str(tmp_path))
    checkpoint.save(manager, state, {"it": 7}, {"step": 1})
    manager.wait_until_finished()
    restored, data_state, meta = checkpoint.restore(manager, _abstract(state))
    assert data_state == {"it": 7} and meta == {"step": 1}
    for a, b in zip(jax.tree.leaves(_plain(state)), jax.tree.leaves(_plain(restored)), strict=True):
        np.testing.assert_array_equal(a, b)
    assert jax.dtypes.issubdtype(restored.rng.dtype, jax.dtypes.prng_key)
    # The restored state keeps training identically.
    s1, _ = step(state, jnp.ones((2, 4)))
    s2, _ = step(restored, jnp.ones((2, 4)))
    np.testing.assert_array_equal(s1.params["w"], s2.params["w"])


def _plain(state):
    return checkpoint._saveable(state)


def test_half_written_checkpoint_is_never_loaded(tmp_path):
    state, step = _state_and_step()
    manager = checkpoint.make_manager(str(tmp_path))
    checkpoint.save(manager, state, {}, {})
    manager.wait_until_finished()
    # A write killed half-way leaves orbax's temporary directory behind.
    ckpt_dir = os.path.join(tmp_path, "checkpoints")
    shutil.copytree(
        os.path.join(ckpt_dir, "0"), os.path.join(ckpt_dir, "5.orbax-checkpoint-tmp-1234567")
    )
    fresh = checkpoint.make_manager(str(tmp_path))
    assert fresh.latest_step() == 0
    restored, _, _ = checkpoint.restore(fresh, _abstract(state))
    assert int(restored.step) == 0


def test_damaged_checkpoint_stops_with_instructions(tmp_path):
    state, step = _state_and_step()
    manager = checkpoint.make_manager(str(tmp_path), keep=3)
    checkpoint.save(manager, state, {}, {})
    state, _ = step(state, jnp.ones((2, 4)))
    checkpoint.save(manager, state, {}, {})
    manager.wait_until_finished()
    step_dir = os.path.join(tmp_path, "checkpoints", "1", "state")
    for root, _, files in os.walk(step_dir):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")
    fresh = checkpoint.make_manager(str(tmp_path), keep=3)
    with pytest.raises(checkpoint.CheckpointError, match="resume from step 0"):
        checkpoint.restore(fresh, _abstract(state))
    with pytest.raises(checkpoint.CheckpointError, match="damaged"):
        checkpoint.load_params(str(tmp_path))


def test_load_params_returns_ema_or_raw(tmp_path):
    state, step = _state_and_step()
    state, _ = step(state, jnp.ones((2, 4)))
    manager = checkpoint.make_manager(str(tmp_path))
    checkpoint.save(manager, state, {}, {})
    manager.wait_until_finished()
    ema = checkpoint.load_params(str(tmp_path))
    raw = checkpoint.load_params(str(tmp_path), which="params")
    np.testing.assert_array_equal(ema["w"], state.ema_params["w"])
    np.testing.assert_array_equal(raw["w"], state.params["w"])
    with pytest.raises(ValueError, match="which"):
        checkpoint.load_params(str(tmp_path), which="best")
    with pytest.raises(checkpoint.CheckpointError, match="train first"):
        checkpoint.load_params(str(tmp_path / "empty"))
