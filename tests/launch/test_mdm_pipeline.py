"""`launch/pipeline.py` (the README's default job) end to end with a tiny config."""

import json
import os
import subprocess
import sys

from conftest import REPO_ROOT

ENV = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")


def _pipeline(*flags):
    return subprocess.run(
        [sys.executable, "-m", "launch.pipeline", *flags],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_pipeline_trains_evaluates_draws_and_prints(tmp_path):
    result = _pipeline(
        "--config=configs/mdm/digits.py:tiny",
        f"--workdir={tmp_path}",
        "--config.eval.probe_seeds=1",
        "--config.eval.seg_seeds=1",
        "--config.eval.seg_num_models=2",
        "--config.eval.seg_num_labelled=4",
        "--seg_max_epochs=1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "eval" / "results.json") as f:
        results = json.load(f)
    accuracy = results["linear_probe"]["all"]["mean"]
    assert 0.1 < accuracy <= 1.0  # 10 classes: a tiny MDM is already above chance
    assert 0.0 <= results["segmentation"]["miou"]["mean"] <= 1.0
    for figure in ("restorations.png", "segmentation.png"):
        assert os.path.getsize(tmp_path / "figures" / figure) > 1000
    assert "wall time" in result.stdout
    assert "linear probe, all" in result.stdout and f"{accuracy:.4f}" in result.stdout


def test_unknown_eval_key_fails_before_training(tmp_path):
    result = _pipeline(
        "--config=configs/mdm/digits.py:tiny", f"--workdir={tmp_path}", "--config.eval.probe_seed=1"
    )
    assert result.returncode != 0 and "probe_seed" in result.stderr
    assert not (tmp_path / "checkpoints").exists()
