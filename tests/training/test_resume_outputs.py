"""End to end through `launch.train`: what a stopped run leaves, and what its rerun makes of it.

The NaN trial of issue 18 (no non-finite checkpoint, the printed remedy resumes), a kill
after the final checkpoint (the rerun draws the lost sample grid), and a kill after logging
past the last checkpoint (no duplicate rows in metrics.jsonl or TensorBoard).
"""

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
from conftest import REPO_ROOT
from event_files import read_events

from diffssl_jax.training import checkpoint

TINY = "configs/ddpm/digits.py:tiny"
ENV = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")

# The real launcher, SIGKILLed at the KILL_AT-th batch (mid-training), or when the sample
# grid of step KILL_AT_GRID is about to be written (after that step's checkpoint finalised).
KILLING_TRAIN = textwrap.dedent("""
    import os, signal, sys, time
    from diffssl_jax import plotting
    from diffssl_jax import parallel
    workdir = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--workdir=")][0]
    original_batch, original_grid, count = parallel.to_global_batch, plotting.save_image_grid, [0]
    def killing_batch(batch, mesh):
        count[0] += 1
        if count[0] == int(os.environ.get("KILL_AT", 0)):
            time.sleep(3)  # let orbax finish its asynchronous writes, then die mid-step
            os.kill(os.getpid(), signal.SIGKILL)
        return original_batch(batch, mesh)
    def killing_grid(images, path, **kwargs):
        step = os.environ.get("KILL_AT_GRID")
        if step and kwargs.get("step") == int(step):
            final = os.path.join(workdir, "checkpoints", step)
            while not os.path.isdir(final):  # orbax renames the step directory when finalised
                time.sleep(0.1)
            os.kill(os.getpid(), signal.SIGKILL)
        return original_grid(images, path, **kwargs)
    parallel.to_global_batch, plotting.save_image_grid = killing_batch, killing_grid
    sys.argv = ["train"] + sys.argv[1:]
    from launch import train
    train.run()
""")


def _train(workdir, *overrides, kill_env=None):
    args = [f"--config={TINY}", f"--workdir={workdir}", *overrides]
    cmd = (
        [sys.executable, "-c", KILLING_TRAIN, *args]
        if kill_env
        else [sys.executable, "-m", "launch.train", *args]
    )
    env = dict(ENV, **(kill_env or {}))
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)


def _all_finite(tree):
    return all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(tree))


def test_nan_trial_keeps_good_checkpoints_and_its_remedy_resumes(tmp_path):
    flags = [
        "--config.train.log_every_steps=6",
        "--config.train.checkpoint_every_steps=1",
        "--config.train.num_steps=12",
    ]
    result = _train(tmp_path, "--config.optim.lr_peak=1e30", *flags)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    # Step 1 has lr 0 (warm-up); step 2's update overflows the norms (parameters ~1e29, every
    # later loss inf whatever the lr): step 1 is the last state worth resuming from.
    assert "step 2 gave non-finite values" in result.stderr
    assert "last good checkpoint is step 1" in result.stderr
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1"]  # nothing unfinished either
    assert _all_finite(checkpoint.load_params(str(tmp_path), step=1, which="params"))
    remedy = "--config.optim.lr_peak=0.001"
    assert remedy in result.stderr

    rerun = _train(tmp_path, remedy, *flags)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "from step 1 to 12" in rerun.stderr
    steps = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints"))
    assert steps[-1] == 12
    for step in steps:
        assert _all_finite(checkpoint.load_params(str(tmp_path), step=step, which="params"))
    rows = [json.loads(line)["step"] for line in open(tmp_path / "metrics.jsonl")]
    assert rows == [6, 12]


def test_kill_after_the_final_checkpoint_still_ends_with_the_final_grid(tmp_path):
    killed = _train(tmp_path, kill_env={"KILL_AT_GRID": "6"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    grid = tmp_path / "figures" / "samples_0000006.png"
    assert not grid.exists() and "6" in os.listdir(tmp_path / "checkpoints")
    rerun = _train(tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "nothing to do" in rerun.stderr and grid.exists()


def _visible_scalars(workdir, tag):
    """`{step: value}` as TensorBoard shows `tag`: event files in order, each session START
    at step s hiding the earlier points at steps >= s (tensorboardX's `purge_step`)."""
    points = {}
    for path in sorted(glob.glob(os.path.join(workdir, "events.out.tfevents.*"))):
        for event in read_events(open(path, "rb").read()):
            if event.HasField("session_log") and event.session_log.status == 1:  # START
                points = {s: v for s, v in points.items() if s < event.step}
            for value in event.summary.value:
                if value.tag == tag and value.HasField("simple_value"):
                    points[event.step] = value.simple_value
    return points


def test_resume_after_logging_past_the_checkpoint_has_no_duplicate_rows(tmp_path):
    flags = ["--config.train.num_steps=9", "--config.train.checkpoint_every_steps=3"]
    # Dies while assembling batch 9: steps 2, 4, 6, 8 logged, checkpoints at 3 and 6.
    killed = _train(tmp_path, *flags, kill_env={"KILL_AT": "9"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    logged = [json.loads(line)["step"] for line in open(tmp_path / "metrics.jsonl")]
    assert logged == [2, 4, 6, 8]
    rerun = _train(tmp_path, *flags)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    rows = {}
    for line in open(tmp_path / "metrics.jsonl"):
        record = json.loads(line)
        assert record["step"] not in rows, f"duplicate row for step {record['step']}"
        rows[record["step"]] = record["train/loss"]
    assert sorted(rows) == [2, 4, 6, 8, 9]
    shown = _visible_scalars(str(tmp_path), "train/loss")
    assert sorted(shown) == sorted(rows)  # step 6 of the first run stays; 8 is the rerun's
    np.testing.assert_allclose(
        [shown[s] for s in sorted(rows)], [rows[s] for s in sorted(rows)], rtol=1e-6
    )
