"""`launch/sample.py --problem=...` on a tiny trained prior: files, metrics, bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT

from diffssl_jax import posterior
from diffssl_jax.configs.posterior import digits_inpaint, digits_superres, phantoms_mri
from diffssl_jax.evaluation import posterior as posterior_eval
from diffssl_jax.evaluation.priors import load_denoiser

ENV = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")


def _run(*args):
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("prior")
    trained = _run(
        "-m",
        "launch.train",
        "--config=configs/ddpm/digits.py:tiny",
        f"--workdir={path}",
        "--config.train.num_steps=2",
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    return path


def test_posterior_samples_mean_figure_and_metrics(workdir):
    result = _run(
        "-m",
        "launch.sample",
        f"--workdir={workdir}",
        "--problem=configs/posterior/digits_inpaint.py:tiny",
        "--problem.method.name=mmps",
        "--problem.method.mmps.cg_maxiter=2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    files = np.load(workdir / "eval" / "posterior_digits_inpaint.npz")
    assert files["images"].shape == (2, 16, 16, 1)
    assert files["samples"].shape == (2, 2, 16, 16, 1)
    np.testing.assert_allclose(files["mean"], files["samples"].mean(1), atol=1e-6)
    assert np.isfinite(files["samples"]).all() and np.abs(files["samples"]).max() <= 1.0
    metrics = json.loads((workdir / "eval" / "posterior_digits_inpaint.json").read_text())
    for key in ("mean_psnr", "mean_ssim", "sample_psnr", "sample_ssim", "observed_psnr"):
        assert np.isfinite(metrics[key]), key
    assert metrics["method"]["cg_maxiter"] == 2 and metrics["num_steps"] == 4
    assert metrics["method"] == {
        "name": "mmps",
        "cg_maxiter": 2,
        "cg_rtol": 0.0,
        "cg_max_residual_growth": 10.0,
        "safeguard": "trust_region",
        "trust_radius": 3.0,
        "symmetrise": False,
    }
    assert metrics["sigmas"]["num_steps"] == 4  # the runner's test checks the whole record
    assert os.path.exists(workdir / "figures" / "posterior_digits_inpaint.png")


@pytest.mark.parametrize(
    "override, message",
    [
        ({"method.name": "ddrm"}, "unknown posterior method"),
        ({"noise_std": -0.1}, "noise_std must be finite and >= 0"),
        ({"operator.kind": "superres", "operator.factor": 3}, "must divide the image size"),
        ({"operator.kind": "inpaint"}, "unknown observation kind"),
        ({"method.mmps.cg_maxiter": 0}, "cg_maxiter must be an integer >= 1"),
        ({"sampling.num_steps": 0}, "sigma_grid|num_steps|at least 2"),
    ],
)
def test_bad_problems_fail_before_sampling(workdir, monkeypatch, override, message):
    def never(*args, **kwargs):
        raise AssertionError("sampling started")

    monkeypatch.setattr(posterior, "sample_posterior", never)
    config = digits_inpaint.get_config("tiny")
    for key, value in override.items():
        *groups, name = key.split(".")
        group = config
        for part in groups:
            group = group[part]
        setattr(group, name, value)
    with pytest.raises(ValueError, match=message):
        posterior_eval.write_posterior(str(workdir), config)


def test_operator_that_does_not_match_y_fails_before_sampling(workdir):
    denoiser, _ = load_denoiser(str(workdir))
    images = posterior_eval.load_images("digits", "test", 2, 0, 16)
    problem = posterior.observe("superres", 0, images, noise_std=0.01)
    wrong = problem.replace(operators=posterior.BoxDownsample(factor=4))
    with pytest.raises(ValueError, match="operator maps"):
        posterior.check_problem(wrong)
    with pytest.raises(ValueError, match="operator maps"):
        posterior.make_posterior("mmps", denoiser, wrong)


def test_mri_and_superres_run_with_every_method(workdir):
    denoiser, _ = load_denoiser(str(workdir))
    images = posterior_eval.load_images("digits", "test", 1, 0, 16)
    configs = {"mri": phantoms_mri.get_config("tiny"), "sr": digits_superres.get_config("tiny")}
    kinds = ("mri", "sr", "sr", "mri", "mri", "sr")
    for method, kind in zip(posterior.METHODS, kinds, strict=True):
        config = configs[kind]
        config.method.name = method
        config.num_samples, config.sampling.num_steps = 1, 2
        _, samples, metrics = posterior_eval.run_problem(denoiser, images, config)
        assert samples.shape == (1, 1, 16, 16, 1) and metrics["all_finite"], method
