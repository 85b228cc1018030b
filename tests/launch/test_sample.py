"""`launch/sample.py` on a tiny trained workdir: files written, images in range, errors."""

import os
import subprocess
import sys

import numpy as np
from conftest import REPO_ROOT

ENV = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")


def _run(*args):
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=600
    )


def test_sample_writes_images_and_grid(tmp_path):
    trained = _run(
        "-m",
        "launch.train",
        "--config=configs/ddpm/digits.py:tiny",
        f"--workdir={tmp_path}",
        "--config.train.num_steps=2",
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    result = _run(
        "-m",
        "launch.sample",
        f"--workdir={tmp_path}",
        "--num_samples=5",
        "--sampler=ddim",
        "--num_steps=3",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    images = np.load(tmp_path / "eval" / "samples.npz")["images"]
    assert images.shape == (5, 16, 16, 1)
    assert np.isfinite(images).all() and np.abs(images).max() <= 1.0
    assert os.path.exists(tmp_path / "figures" / "samples_final.png")


def test_sample_from_a_missing_workdir_says_what_to_do(tmp_path):
    result = _run("-m", "launch.sample", f"--workdir={tmp_path / 'nope'}")
    assert result.returncode != 0
    assert "not a diffssl_jax workdir" in result.stderr
