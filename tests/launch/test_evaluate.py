"""`launch/evaluate.py` end to end on a tiny trained workdir; a missing workdir fails clearly."""

import json
import os
import subprocess
import sys

from conftest import REPO_ROOT

from diffssl_jax import methods, training
from diffssl_jax.configs.ddpm.digits import get_config

ENV = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")


def _evaluate(*flags):
    return subprocess.run(
        [sys.executable, "-m", "launch.evaluate", *flags],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_evaluate_writes_results_and_prints_the_table(tmp_path):
    config = get_config("tiny")
    config.train.num_steps = 2
    config.train.sample_every_steps = 0
    training.train(config, str(tmp_path), methods.make_recipe(config))
    result = _evaluate(
        f"--workdir={tmp_path}",
        "--config.eval.feature_t=0.1",
        "--config.eval.feature_blocks=dec_2",
        "--config.eval.feature_blocks=dec_3",
        "--config.eval.probe_seeds=1",
        "--config.eval.seg_seeds=1",
        "--config.eval.seg_num_models=2",
        "--config.eval.seg_num_labelled=4",
        "--seg_max_epochs=1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "eval" / "results.json") as f:
        saved = json.load(f)
    assert saved["features"]["t"] == 0.1 and saved["features"]["blocks"] == ["dec_2", "dec_3"]
    assert list(saved["feature_dims"]) == ["dec_2", "dec_3"]
    assert saved["config"]["eval"]["feature_t"] == 0.1  # the overrides are recorded
    seg = saved["segmentation"]
    for score in [*saved["linear_probe"].values(), seg["miou"], seg["dice"]]:
        assert 0.0 <= score["mean"] <= 1.0
    lines = result.stdout.strip().splitlines()
    assert lines[0] == f"wrote {tmp_path / 'eval' / 'results.json'}"
    assert [line.split("  ")[0] for line in lines[1:]] == [
        "linear probe, all",
        "linear probe, 10 per class",
        "segmentation miou, 4 labelled",
        "segmentation dice, 4 labelled",
    ]


def test_evaluate_a_missing_workdir_says_what_to_do(tmp_path):
    result = _evaluate(f"--workdir={tmp_path / 'nope'}")
    assert result.returncode != 0
    assert "does not exist: train it first" in result.stderr
