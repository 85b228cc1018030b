"""EM on images end to end (tiny): masked digits and MRI: per-lap metrics, ceiling, floor."""

import json

import numpy as np
import pytest

from diffssl_jax import em
from diffssl_jax.configs.em import mri
from diffssl_jax.configs.em.digits import get_config
from diffssl_jax.evaluation import digit_classifier, metrics


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("classifier"))
    digit_classifier.train_classifier(workdir, num_steps=10, channels=(4, 8, 8), features=8, seed=0)
    return workdir


def _tiny(classifier_dir, **em_overrides):
    config = get_config("tiny")
    config.em.classifier_workdir = classifier_dir
    config.em.update(em_overrides)
    return config


@pytest.mark.slow
def test_tiny_digits_em_logs_metrics_ceiling_and_floor(tmp_path, classifier_dir):
    config = _tiny(classifier_dir, clean_baseline=True)
    result = em.run_experiment(config, str(tmp_path))

    assert len(result["laps"]) == 2  # the Gaussian lap 0 and one learned lap
    for info in (*result["laps"], result["clean"]):
        assert np.isfinite(info["eval/psnr_posterior"]) and info["eval/frechet"] > 0
        assert info["num_kept"] == config.em.num_observations

    # The floor is the zero-filled observation itself, in the same units as every lap.
    experiment = em.make_experiment(config)
    x = experiment.clean_data()
    y = np.asarray(experiment.observe(x).y)
    assert (y == 0).mean() >= config.em.mask_rate  # removed pixels are exactly 0
    expected = float(np.mean(metrics.psnr(y, x)))
    assert result["zero_filled"]["eval/psnr_posterior"] == pytest.approx(expected, rel=1e-6)
    with open(tmp_path / "baseline_zero_filled.json") as f:
        assert json.load(f) == result["zero_filled"]
    for name in ("em_curve.png", "observations.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 0

    # A finished run is not redone: the ceiling is read back, not retrained.
    again = em.run_experiment(config, str(tmp_path))
    assert again["clean"] == result["clean"] and again["laps"] == result["laps"]


def test_missing_classifier_fails_before_any_lap(tmp_path):
    config = _tiny(str(tmp_path / "no_classifier"))
    with pytest.raises(FileNotFoundError, match="digit_classifier"):
        em.run_experiment(config, str(tmp_path / "run"))
    assert not (tmp_path / "run" / "em").exists()


def test_both_masking_rates_at_once_are_rejected():
    with pytest.raises(ValueError, match="rate50 or rate75"):
        get_config("rate50,rate75")


@pytest.mark.slow
def test_tiny_mri_em_floor_is_the_inverse_fft_of_zero_filled_kspace(tmp_path):
    config = mri.get_config("tiny")
    config.em.clean_baseline = True
    result = em.run_experiment(config, str(tmp_path))
    assert len(result["laps"]) == 2
    # The ceiling scores posterior samples under the clean-data prior, not the clean images.
    for info in (result["laps"][-1], result["clean"]):
        assert np.isfinite(info["eval/psnr_posterior"])

    experiment = em.make_experiment(config)
    x = experiment.clean_data()
    y = np.asarray(experiment.observe(x).y).reshape(x.shape[:3])
    # Centred orthonormal DFT (fastMRI layout): x = ifftshift-ifft2-fftshift of k-space.
    shifted = np.fft.ifftshift(y, axes=(1, 2))
    zero_filled = np.fft.fftshift(np.fft.ifft2(shifted, axes=(1, 2), norm="ortho"), axes=(1, 2))
    zero_filled = zero_filled.real[..., None]
    expected = float(np.mean(metrics.psnr(zero_filled, x)))
    assert result["zero_filled"]["eval/psnr_posterior"] == pytest.approx(expected, rel=1e-5)
