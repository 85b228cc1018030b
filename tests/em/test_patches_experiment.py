"""EM on masked natural patches (`em.patches`): the measures, the floor, the tiny run end to end."""

import json

import numpy as np
import pytest
import scipy.stats

from diffssl_jax import em
from diffssl_jax.configs.em.patches import get_config
from diffssl_jax.data.patches import PatchSource
from diffssl_jax.em import options, patches
from diffssl_jax.evaluation import metrics


def test_difference_kurtosis_is_the_fourth_standardised_moment_of_horizontal_differences():
    x = np.random.default_rng(0).laplace(size=(5, 4, 6, 2))
    d = np.concatenate([(x[:, :, j + 1] - x[:, :, j]).ravel() for j in range(5)])
    c = d - d.mean()
    direct = np.mean(c**4) / np.mean(c**2) ** 2 - 3.0
    assert patches.difference_kurtosis(x) == pytest.approx(direct, rel=1e-12)
    assert patches.difference_kurtosis(x) == pytest.approx(scipy.stats.kurtosis(d), rel=1e-12)
    y = np.random.default_rng(1).normal(size=(3, 4, 6, 1))
    gap = abs(patches.difference_kurtosis(x) - patches.difference_kurtosis(y))
    assert patches.kurtosis_gap(x, y) == pytest.approx(gap, rel=1e-12)


def test_difference_kurtosis_rejects_images_without_horizontal_neighbours():
    with pytest.raises(ValueError, match=r"W >= 2"):
        patches.difference_kurtosis(np.zeros((2, 4, 1, 1)))


def test_measures_of_the_test_patches_against_themselves():
    test = PatchSource("test").images[:64]
    k = patches.difference_kurtosis(test)
    out = patches.patch_measures(test, test, k)
    assert out["eval/sinkhorn"] == pytest.approx(0.0, abs=1e-3)  # debiased: S(a, a) = 0
    assert out["eval/kurtosis_gap"] == 0.0 and out["eval/kurtosis"] == k
    assert out["eval/num_nonfinite_prior"] == 0
    # Non-finite images are left out and counted; the measures are those of the others.
    spoilt = np.concatenate([test, np.full((2, *test.shape[1:]), np.nan, np.float32)])
    out_spoilt = patches.patch_measures(spoilt, test, k)
    assert out_spoilt["eval/num_nonfinite_prior"] == 2
    assert out_spoilt["eval/kurtosis_gap"] == 0.0
    # Translating a cloud by t moves the divergence to |t|^2 (exact for debiased Sinkhorn).
    shifted = patches.patch_measures(test + 0.05, test, k)["eval/sinkhorn"]
    assert shifted == pytest.approx(0.05**2 * 256, rel=2e-2)


def test_too_many_observations_are_refused_with_the_number_available():
    config = get_config("tiny")
    config.em.num_observations = 6000
    with pytest.raises(ValueError, match=r"em.num_observations=6000 .* 5676 patches training"):
        em.make_experiment(config).clean_data()


def test_a_bad_mask_rate_fails_before_the_workdir_is_written(tmp_path):
    config = get_config("tiny")
    config.em.mask_rate = 1.0
    with pytest.raises(ValueError, match=r"rate is the fraction of pixels removed"):
        em.run_experiment(config, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_non_square_or_colour_shapes_are_refused():
    config = get_config("tiny")
    config.data.image_shape = (16, 16, 3)
    with pytest.raises(ValueError, match=r"data.image_shape=\(S, S, 1\)"):
        em.make_experiment(config).clean_data()


def test_configs_choose_one_rate_and_state_sigmas_in_corresponding_units():
    assert get_config().em.mask_rate == 0.75 and get_config("rate50").em.mask_rate == 0.5
    for variant in (None, "rate50", "tiny"):
        options.check_units(get_config(variant))
    with pytest.raises(ValueError, match="rate50 or rate75"):
        get_config("rate50,rate75")


@pytest.mark.slow
def test_tiny_patches_em_logs_both_measures_ceiling_and_floor(tmp_path):
    config = get_config("tiny")
    config.em.clean_baseline = True
    result = em.run_experiment(config, str(tmp_path))

    assert len(result["laps"]) == 2  # the Gaussian lap 0 and one learned lap
    keys = ("eval/psnr_posterior", "eval/sinkhorn", "eval/kurtosis_gap", "eval/kurtosis")
    for info in (*result["laps"], result["clean"]):
        assert all(np.isfinite(info[k]) for k in keys), info
        assert info["num_kept"] == config.em.num_observations

    # The floor scores the zero-filled observations in the same units as every lap.
    experiment = em.make_experiment(config)
    x = experiment.clean_data()
    y = np.asarray(experiment.observe(x).y)
    test = PatchSource("test").images
    floor = result["zero_filled"]
    assert floor["eval/psnr_posterior"] == pytest.approx(
        float(np.mean(metrics.psnr(y, x))), rel=1e-6
    )
    filled = np.clip(y, -1, 1)
    assert floor["eval/kurtosis_gap"] == pytest.approx(patches.kurtosis_gap(filled, test), rel=1e-9)
    expected = metrics.sinkhorn_divergence(
        filled.reshape(len(y), -1), test.reshape(len(test), -1), epsilon=1.0
    )
    assert floor["eval/sinkhorn"] == pytest.approx(expected, rel=1e-5)
    with open(tmp_path / "baseline_zero_filled.json") as f:
        assert json.load(f) == floor
    for name in ("em_curve.png", "observations.png", "samples_lap_001.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 0
