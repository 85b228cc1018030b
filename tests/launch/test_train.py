"""End to end through `launch/train.py`: tiny runs, SIGKILL and SIGTERM resume, bad input."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import REPO_ROOT

import diffssl_jax
from diffssl_jax.training import preemption

TINY = "configs/ddpm/digits.py:tiny"
ENV = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")


def _train(workdir, *overrides, config=TINY, check=True):
    cmd = [
        sys.executable,
        "-m",
        "launch.train",
        f"--config={config}",
        f"--workdir={workdir}",
        *overrides,
    ]
    result = subprocess.run(
        cmd, cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=600
    )
    if check:
        assert result.returncode == 0, result.stderr[-4000:]
    return result


# Runs the real launcher in-process and SIGKILLs itself when the N-th batch is assembled,
# i.e. in the middle of training, after some checkpoints and before others.
KILL_AT_BATCH = textwrap.dedent("""
    import os, signal, sys, time
    from diffssl_jax import parallel
    original, count = parallel.to_global_batch, [0]
    def killing(batch, mesh):
        count[0] += 1
        if count[0] == int(os.environ["KILL_AT"]):
            time.sleep(3)  # let orbax finish its asynchronous writes, then die mid-step
            os.kill(os.getpid(), signal.SIGKILL)
        return original(batch, mesh)
    parallel.to_global_batch = killing
    sys.argv = ["train"] + sys.argv[1:]
    from launch import train
    from absl import app
    app.run(train.main)
""")


def _params(workdir, which):
    return diffssl_jax.load_params(str(workdir), which=which)


def _assert_same_params(a, b):
    import jax

    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    flags = ["--config.train.num_steps=9", "--config.train.checkpoint_every_steps=3"]
    _train(tmp_path / "straight", *flags)
    killed = tmp_path / "killed"
    env = dict(ENV, KILL_AT="8")  # dies during step 8: checkpoints at 3 and 6 exist
    result = subprocess.run(
        [sys.executable, "-c", KILL_AT_BATCH, f"--config={TINY}", f"--workdir={killed}", *flags],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    assert sorted(os.listdir(killed / "checkpoints")) == ["3", "6"]
    _train(killed, *flags)
    for which in ("params", "ema"):
        _assert_same_params(_params(tmp_path / "straight", which), _params(killed, which))
    steps = [json.loads(line)["step"] for line in open(killed / "metrics.jsonl")]
    assert steps[-1] == 9


def test_tiny_run_writes_workdir_and_is_not_redone(tmp_path):
    _train(tmp_path)
    assert {"config.json", "metrics.jsonl", "checkpoints", "figures"} <= set(os.listdir(tmp_path))
    record = json.loads(open(tmp_path / "metrics.jsonl").readline())
    assert {"step", "train/loss", "train/grad_norm", "train/lr"} <= set(record)
    assert os.listdir(tmp_path / "figures")
    again = _train(tmp_path)
    assert "nothing to do" in again.stderr  # an absl INFO line


def test_unknown_config_key_names_the_nearest_valid_one(tmp_path):
    result = _train(tmp_path, "--config.train.num_stepz=3", check=False)
    assert result.returncode != 0
    assert "num_steps" in result.stderr


def test_changed_config_on_resume_is_refused(tmp_path):
    _train(tmp_path)
    # The model may not change on resume (the optimiser may: `loop.RESUMABLE_CHANGES`).
    result = _train(tmp_path, "--config.model.model_channels=16", check=False)
    assert result.returncode != 0 and "different config" in result.stderr


def test_wrong_image_shape_is_refused_before_training(tmp_path):
    result = _train(tmp_path, "--config.data.image_shape=(32,32,3)", check=False)
    assert result.returncode != 0
    assert "image" in result.stderr and "(32, 32, 3)" in result.stderr
    assert not os.path.exists(tmp_path / "checkpoints")


def test_missing_tfds_dataset_says_how_to_prepare_it(tmp_path):
    result = _train(
        tmp_path / "w",
        f"--config.data.data_dir={tmp_path / 'tfds'}",
        config="configs/ddpm/cifar10.py:tiny",
        check=False,
    )
    assert result.returncode != 0
    assert "tfds build" in result.stderr


@pytest.mark.parametrize("config", ["configs/ddpm/digits.py:tiny"])
def test_sigterm_checkpoints_and_exits(tmp_path, config):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "launch.train",
            f"--config={config}",
            f"--workdir={tmp_path}",
            "--config.train.num_steps=100000",
            "--config.train.checkpoint_every_steps=100000",
        ],
        cwd=REPO_ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    import time

    deadline = time.time() + 300
    while not os.path.exists(tmp_path / "metrics.jsonl") and time.time() < deadline:
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    # A scheduler must not record success: the preemption status, and the way to resume.
    assert proc.returncode == preemption.EXIT_STATUS == 75, err[-3000:]
    assert "SIGTERM: checkpointed step" in err  # an absl WARNING line
    assert "preempted, rerun to resume" in err and "Traceback" not in err
    steps = os.listdir(tmp_path / "checkpoints")
    assert len(steps) == 1 and int(steps[0]) > 0
