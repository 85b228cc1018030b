"""SIGTERM during `launch.pipeline`'s pretraining: the preemption status, nothing evaluated or
drawn from the unfinished model, and a rerun whose results equal an uninterrupted run's."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO_ROOT

from diffssl_jax.training import preemption

ENV = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
FLAGS = (
    "--config=configs/mdm/digits.py:tiny",
    "--config.train.num_steps=8",
    "--config.eval.probe_seeds=1",
    "--config.eval.seg_seeds=1",
    "--config.eval.seg_num_models=2",
    "--config.eval.seg_num_labelled=4",
    "--seg_max_epochs=1",
)


def _pipeline(workdir):
    return subprocess.Popen(
        [sys.executable, "-m", "launch.pipeline", *FLAGS, f"--workdir={workdir}"],
        cwd=REPO_ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process):
    out, err = process.communicate(timeout=900)
    assert process.returncode == 0, err[-3000:]
    return out


def _results(workdir):
    """The results JSON without its provenance (the workdir's path)."""
    with open(workdir / "eval" / "results.json") as f:
        results = json.load(f)
    assert results["features"].pop("workdir") == str(workdir)
    return results


@pytest.mark.slow
def test_sigterm_in_the_pretraining_stops_the_pipeline_and_the_rerun_matches(tmp_path):
    reference, preempted = tmp_path / "reference", tmp_path / "preempted"
    first, victim = _pipeline(reference), _pipeline(preempted)
    marker = preempted / "checkpoints" / "2"
    deadline = time.time() + 600
    while not marker.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the pretraining never reached its first checkpoint"
    victim.send_signal(signal.SIGTERM)
    _, err = victim.communicate(timeout=600)
    assert victim.returncode == preemption.EXIT_STATUS == 75, err[-3000:]
    assert "preempted, rerun to resume" in err and "Traceback" not in err
    # Nothing downstream of the unfinished pretraining ran.
    assert not (preempted / "eval").exists()
    assert not (preempted / "figures" / "segmentation.png").exists()
    assert not (preempted / "figures" / "restorations.png").exists()
    assert sorted(int(s) for s in os.listdir(preempted / "checkpoints"))[-1] < 8

    _finish(first)
    out = _finish(_pipeline(preempted))
    assert "linear probe, all" in out
    assert _results(preempted) == _results(reference)
    for figure in ("restorations.png", "segmentation.png"):
        assert os.path.getsize(preempted / "figures" / figure) > 1000
