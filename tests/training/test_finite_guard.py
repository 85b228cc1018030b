"""The non-finite guard: checked on device every step, read before saves; the message."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax.configs.ddpm.digits import get_config
from diffssl_jax.training import checkpoint, finite_guard
from diffssl_jax.training.state import create_train_state
from diffssl_jax.training.step import make_optimizer, make_train_step


def _loss(params, batch, rng):
    del rng
    return jnp.mean((params["w"] * batch["x"] - 1.0) ** 2), {}


def _setup(lr_peak=0.1):
    tx, schedule = make_optimizer(
        lr_peak=lr_peak,
        warmup_steps=1,
        decay="constant",
        weight_decay=0.0,
        grad_clip_norm=1.0,
        num_steps=10,
    )
    state = create_train_state(lambda rng: {"w": jnp.ones(3)}, tx, jax.random.key(0))
    step = make_train_step(_loss, ema_decay=0.9, lr_schedule=schedule)
    return state, jax.jit(finite_guard.with_finite_guard(step))


def test_all_finite_skips_integers_and_sees_nan_and_inf():
    assert bool(finite_guard.all_finite({"a": jnp.ones(2), "n": jnp.int32(3)}))
    assert not bool(finite_guard.all_finite({"a": jnp.array([1.0, jnp.nan])}))
    assert not bool(finite_guard.all_finite((jnp.float32(jnp.inf),)))
    assert bool(finite_guard.all_finite({"n": jnp.int32(1)}))  # no float leaf at all


def test_guard_records_the_first_bad_step_and_keeps_it():
    state, step = _setup()
    first_bad = jnp.int32(0)
    xs = [1.0, 2.0, np.nan, 1.0, 1.0]  # step 3 sees a NaN input; its state is NaN from then on
    seen = []
    for x in xs:
        state, _, first_bad = step(state, {"x": jnp.full(3, x)}, first_bad)
        seen.append(int(first_bad))
    assert seen == [0, 0, 3, 3, 3]


def test_overflowing_norm_of_a_finite_state_counts_as_bad():
    # lr 1e30: step 1 has lr 0 (warm-up), step 2 moves w by ~1e30: every weight is finite but
    # the update norm overflows float32, and every later loss is inf whatever the lr.
    state, step = _setup(lr_peak=1e30)
    first_bad = jnp.int32(0)
    for expected in (0, 2):
        state, metrics, first_bad = step(state, {"x": jnp.full(3, 2.0)}, first_bad)
        assert int(first_bad) == expected
    assert bool(finite_guard.all_finite(state.params))
    assert not np.isfinite(float(metrics["train/update_norm"]))


def test_message_names_the_last_good_step_and_a_lower_lr():
    config = get_config("tiny")
    text = finite_guard.non_finite_message(5, {"train/loss": np.nan}, 4, config, "/w")
    assert "step 5 gave non-finite values (train/loss)" in text
    assert "last good checkpoint is step 4 (/w/checkpoints/4)" in text
    assert "--config.optim.lr_peak=0.0001" in text and "resumes from step 4" in text
    none = finite_guard.non_finite_message(1, {}, None, config, "/w")
    assert "No checkpoint was saved" in none and "starts again from step 0" in none
    assert "step 0" not in none.split("No checkpoint")[0]  # never "last checkpoint at step 0"


def test_stop_waits_and_names_the_latest_finalised_checkpoint(tmp_path):
    state, step = _setup()
    manager = checkpoint.make_manager(str(tmp_path), keep=5)
    first_bad, window = jnp.int32(0), []
    for i, x in enumerate([1.0, 2.0, np.nan]):
        state, metrics, first_bad = step(state, {"x": jnp.full(3, x)}, first_bad)
        window.append(metrics)
        if i < 2:  # the loop's order: read the guard, then save
            finite_guard.stop_if_non_finite(first_bad, window, 0, manager, get_config(), "w")
            checkpoint.save(manager, state, {}, {"step": i + 1})
    with pytest.raises(finite_guard.NonFiniteError, match="last good checkpoint is step 2"):
        finite_guard.stop_if_non_finite(first_bad, window, 0, manager, get_config(), "w")
    assert manager.all_steps() == [1, 2]
