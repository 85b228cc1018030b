"""`launch/evaluate.py --tasks=attributes,counterfactuals` on a tiny DiTi workdir."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, train_tiny_diti

ENV = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")


@pytest.mark.slow
def test_attribute_and_counterfactual_evaluations(tmp_path):
    train_tiny_diti(str(tmp_path), 2)
    result = subprocess.run(
        [sys.executable, "-m", "launch.evaluate", f"--workdir={tmp_path / 'diti'}",
         "--tasks=attributes,counterfactuals", "--config.eval.counterfactual_pairs=1"],
        cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "diti" / "eval" / "attributes.json") as f:
        scores = json.load(f)["scores"]
    assert set(scores) == {"all", "early", "late"}
    assert scores["early"]["num_dims"] == 16 and 0 <= scores["all"]["class_map"] <= 1
    assert os.path.exists(tmp_path / "diti" / "figures" / "counterfactuals.png")
    assert "cls mAP" in result.stdout and "counterfactuals.png" in result.stdout
    with open(tmp_path / "diti" / "eval" / "counterfactuals.json") as f:
        transfer = json.load(f)["transfer"]
    assert set(transfer["fractions"]) == {"early", "late", "all"} and transfer["num_pairs"] == 1
    assert len(transfer["fractions"]["all"]["p_class"]) == 5 and "p_class" in result.stdout
