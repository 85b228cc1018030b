"""The report runner of inverse problems: options per kind and per method, the recorded grid,
and one `run_problem` on a prior known in closed form (no training)."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax import posterior
from diffssl_jax.configs.posterior import digits_inpaint, digits_superres
from diffssl_jax.evaluation import posterior as posterior_eval


def standard_normal(x, sigma):
    """The exact denoiser of `N(0, I)`: `x / (1 + sigma^2)`."""
    return x / (1.0 + sigma**2)


def _images(n=2, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, size=(n, size, size, 1)).astype(np.float32)


def test_each_kind_gets_only_its_own_operator_options():
    config = digits_superres.get_config("tiny")
    config.operator.factor = 4
    problem = posterior_eval.observe_images(_images(), config, 0)
    assert problem.shared_operator and problem.operators.factor == 4
    np.testing.assert_array_equal(
        problem.y, posterior.super_resolution(0, _images(), noise_std=0.01, factor=4).y
    )
    config.operator.kind = "blur"
    config.operator.kernel_size, config.operator.blur_sigma = 3, 1.0
    assert posterior_eval.observe_images(_images(), config, 0).operators.kernel.shape == (3, 3)


def test_each_method_reads_its_own_group_over_its_defaults():
    config = digits_inpaint.get_config("tiny")
    assert posterior_eval.method_record(config.method) == {
        "name": "mmps",
        "cg_maxiter": 1,
        "cg_rtol": 0.0,
        "cg_max_residual_growth": 10.0,
        "safeguard": "trust_region",
        "trust_radius": 3.0,
        "symmetrise": False,
    }
    config.method.name = "pigdm"
    config.method.pigdm.data_var = 100.0
    # PiGDM's own CG options keep their defaults: MMPS's `cg_maxiter` is not PiGDM's.
    assert posterior_eval.method_record(config.method) == {
        "name": "pigdm",
        "data_var": 100.0,
        "cg_maxiter": None,
        "cg_rtol": 1e-6,
    }


def test_run_problem_scores_samples_and_records_its_grid():
    config = digits_inpaint.get_config("tiny")
    config.operator.box = (2, 2, 4, 4)
    images = _images()
    problem, samples, metrics = posterior_eval.run_problem(standard_normal, images, config)
    assert samples.shape == (2, 2, 8, 8, 1) and np.abs(samples).max() <= 1.0
    assert isinstance(problem, posterior.InverseProblem) and problem.num_observations == 2
    np.testing.assert_array_equal(problem.truth, images)
    assert metrics["all_finite"] and len(metrics["mean_psnr_per_image"]) == 2
    assert metrics["sigmas"] == {
        "grid": "karras",
        "num_steps": 4,
        "sigma_min": 0.002,
        "sigma_max": 80.0,
        "unit": "data",
    }
    assert metrics["method"]["name"] == "mmps"
    expected = posterior_eval.summarize(samples, images, posterior.observation_image(problem))
    for key in ("mean_psnr", "sample_ssim", "observed_psnr"):
        assert metrics[key] == pytest.approx(expected[key])
    # the box's 16 missing pixels: PSNR and calibration there, from 2 samples per observation
    region = np.ones((2, 8, 8, 1), bool)
    region[:, 2:6, 2:6] = False
    region = ~region
    np.testing.assert_array_equal(posterior_eval.unobserved_region(problem), region)
    err = np.square(samples - images[:, None])[:, :, 2:6, 2:6].mean(axis=(2, 3, 4))
    direct = 10 * np.log10(4.0 / err).mean(axis=1)
    assert metrics["region_psnr"] == pytest.approx(direct.mean(), rel=1e-6)
    assert metrics["calibration_region"] == "unobserved pixels"
    assert metrics["expected_coverage"] == pytest.approx(1 / 3)
    low, high = metrics["spread_skill_interval"]
    assert low <= metrics["spread_skill"] <= high
    again = posterior_eval.run_problem(standard_normal, images, config)[1]
    np.testing.assert_array_equal(again, samples)  # a function of config.seed
    other_seed = posterior_eval.run_problem(standard_normal, images, config, seed=1)[1]
    assert not np.allclose(other_seed, samples)


@pytest.mark.parametrize(
    "override, message",
    [
        (("method", "name", "ddrm"), "unknown posterior method"),
        (("operator", "kind", "inpaint"), "unknown observation kind"),
        (("method.pigdm", "data_var", -1.0), "pigdm needs data_var > 0"),
    ],
)
def test_bad_configs_fail_before_sampling(monkeypatch, override, message):
    def never(*args, **kwargs):
        raise AssertionError("sampling started")

    monkeypatch.setattr(posterior, "sample_posterior", never)
    config = digits_inpaint.get_config("tiny")
    config.operator.box = (2, 2, 4, 4)
    group, key, value = override
    if group == "method.pigdm":
        config.method.name = "pigdm"
        group = config.method.pigdm
    else:
        group = config[group]
    setattr(group, key, value)
    with pytest.raises(ValueError, match=message):
        posterior_eval.run_problem(standard_normal, jnp.asarray(_images()), config)


def test_held_out_images_must_fit_the_prior():
    config = digits_inpaint.get_config("tiny")
    images = posterior_eval.held_out_images(config.data, (16, 16, 1))
    assert images.shape == (2, 16, 16, 1) and images.dtype == np.float32
    with pytest.raises(ValueError, match="prior was trained on"):
        posterior_eval.held_out_images(config.data, (16, 16, 3))


def test_record_solves_logs_every_mmps_call_per_sigma_with_the_same_samples():
    config = digits_inpaint.get_config("tiny")
    config.operator.box = (2, 2, 4, 4)
    config.method.mmps.cg_maxiter = 2
    images = _images()
    _, plain, metrics = posterior_eval.run_problem(standard_normal, images, config)
    assert "mmps_solves" not in metrics
    config.record_solves = True
    _, recorded, metrics = posterior_eval.run_problem(standard_normal, images, config)
    np.testing.assert_allclose(recorded, plain, atol=1e-6)
    rows = metrics["mmps_solves"]
    assert len(rows) == config.sampling.num_steps  # one row per sigma of the grid
    assert [r["sigma"] for r in rows] == sorted((r["sigma"] for r in rows), reverse=True)
    for row in rows:  # 2 observations x 2 samples per call
        assert row["calls"] == 4 and 0.0 <= row["fire_rate"] <= 1.0
    json.dumps(metrics)  # JSON-ready
