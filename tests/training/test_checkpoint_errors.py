"""What an unreadable checkpoint is called, and `keep_checkpoints` (issue 18, findings 5, 7).

"Damaged" is said only of a step with orbax's commit marker whose files cannot be read, and
then with what moving it aside loses; a missing step lists the available ones; a step
directory without the marker is an unfinished write.
"""

import os
import shutil

import jax.numpy as jnp
import pytest
from test_checkpoint import _abstract, _state_and_step

from diffssl_jax.training import checkpoint


def _checkpoints(tmp_path, num: int, keep: int = 5):
    """Saves steps 0..num-1 into tmp_path/checkpoints; returns the last state."""
    state, step = _state_and_step()
    manager = checkpoint.make_manager(str(tmp_path), keep=keep)
    for i in range(num):
        if i:
            state, _ = step(state, jnp.ones((2, 4)))
        checkpoint.save(manager, state, {}, {})
    manager.wait_until_finished()
    return state


def _garble(step_dir):
    for root, _, files in os.walk(os.path.join(step_dir, "state")):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")


def test_missing_step_lists_the_available_steps(tmp_path):
    _checkpoints(tmp_path, 2)
    with pytest.raises(checkpoint.CheckpointError) as error:
        checkpoint.load_params(str(tmp_path), step=7)
    message = str(error.value)
    assert "no checkpoint at step 7" in message and "available steps: [0, 1]" in message
    assert "damaged" not in message and "delete" not in message


def test_step_without_commit_marker_is_unfinished_not_finalised(tmp_path):
    state = _checkpoints(tmp_path, 2)
    ckpt = tmp_path / "checkpoints"
    os.remove(ckpt / "1" / checkpoint.COMMIT_MARKER)  # a write that never committed
    _garble(ckpt / "1")
    with pytest.raises(checkpoint.CheckpointError) as error:
        checkpoint.load_params(str(tmp_path), step=1)
    message = str(error.value)
    assert "unfinished" in message and "commit_success.txt" in message
    assert "finalised (" not in message and "damaged" not in message
    assert "will resume from step 0" in message and "no saved step is lost" in message
    with pytest.raises(checkpoint.CheckpointError, match="unfinished"):
        checkpoint.restore(checkpoint.make_manager(str(tmp_path)), _abstract(state))
    # orbax's temporary directory of a killed save (the step itself does not exist).
    shutil.copytree(ckpt / "0", ckpt / "5.orbax-checkpoint-tmp-1234")
    with pytest.raises(checkpoint.CheckpointError, match="step 5 .* is unfinished"):
        checkpoint.load_params(str(tmp_path), step=5)


def test_damaged_only_checkpoint_says_what_moving_it_aside_loses(tmp_path):
    _checkpoints(tmp_path, 1)
    _garble(tmp_path / "checkpoints" / "0")
    with pytest.raises(checkpoint.CheckpointError) as error:
        checkpoint.load_params(str(tmp_path))
    message = str(error.value)
    assert "damaged" in message and "only checkpoint" in message
    assert "loses all 0 steps" in message and "delete" not in message


def test_damaged_latest_checkpoint_names_the_loss_and_the_resume_step(tmp_path):
    state = _checkpoints(tmp_path, 3)
    _garble(tmp_path / "checkpoints" / "2")
    with pytest.raises(checkpoint.CheckpointError) as error:
        checkpoint.restore(checkpoint.make_manager(str(tmp_path), keep=5), _abstract(state))
    message = str(error.value)
    assert "finalised (commit_success.txt present)" in message and "damaged" in message
    assert "you lose steps 2..2" in message and "resume from step 1" in message


def test_keep_checkpoints_keeps_exactly_k(tmp_path):
    """Orbax deletes the oldest checkpoint only after the next is finalised: a run killed in
    between (or a finished run's rerun, which saves nothing) was left with k + 1."""
    _checkpoints(tmp_path, 3, keep=3)  # the state such a kill leaves with keep=2
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["0", "1", "2"]
    manager = checkpoint.make_manager(str(tmp_path), keep=2)
    assert sorted(manager.all_steps()) == [1, 2]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2"]
    state, step = _state_and_step()
    for _ in range(3):
        state, _ = step(state, jnp.ones((2, 4)))
    checkpoint.save(manager, state, {}, {})
    manager.wait_until_finished()
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "3"]
