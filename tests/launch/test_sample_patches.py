"""The natural-patch benchmark from the launchers: the DDPM config trains, and `launch.sample`
samples a patch problem under the trained prior and under `--prior=gaussian`."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from diffssl_jax.configs.posterior import patches as patches_problem

ENV = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_problem_variants():
    box = patches_problem.get_config()
    assert (box.name, box.data.dataset, box.data.split) == ("patches_box", "patches", "validation")
    assert box.operator.kind == "box" and tuple(box.operator.box) == (4, 4, 8, 8)
    test = patches_problem.get_config("superres,test")
    assert (test.name, test.data.split, test.operator.kind) == (
        "patches_superres_test",
        "test",
        "superres",
    )
    assert patches_problem.get_config("pixels").operator.rate == 0.5
    with pytest.raises(ValueError, match="choose one task"):
        patches_problem.get_config("box,pixels")


def test_train_then_sample_under_both_priors(tmp_path):
    trained = _run(
        "launch.train",
        "--config=configs/ddpm/patches.py:tiny",
        f"--workdir={tmp_path}",
        "--config.train.num_steps=2",
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    problem = "--problem=configs/posterior/patches.py:box,tiny"
    for prior, stem in (("trained", "patches_box"), ("gaussian", "patches_box_gaussian")):
        result = _run("launch.sample", f"--workdir={tmp_path}", problem, f"--prior={prior}")
        assert result.returncode == 0, result.stderr[-3000:]
        metrics = json.loads((tmp_path / "eval" / f"posterior_{stem}.json").read_text())
        assert metrics["prior"]["kind"] == prior and metrics["all_finite"]
        assert metrics["num_images"] == 2 and metrics["num_steps"] == 4


def test_gaussian_prior_needs_a_problem(tmp_path):
    result = _run("launch.sample", f"--workdir={tmp_path}", "--prior=gaussian")
    assert result.returncode != 0
    assert "--prior=gaussian is a posterior prior: give --problem as well" in result.stderr
