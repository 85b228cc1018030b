"""The calibration measures against direct evaluations and exchangeable Gaussian draws."""

import itertools

import numpy as np
import pytest
import scipy.stats

from diffssl_jax.evaluation import calibration


def test_mean_interval_is_scipys_t_interval():
    values = np.random.default_rng(0).normal(3.0, 2.0, 40)
    mean, half = calibration.mean_interval(values)
    low, high = scipy.stats.t.interval(0.95, 39, loc=values.mean(), scale=scipy.stats.sem(values))
    np.testing.assert_allclose([mean - half, mean + half], [low, high], rtol=1e-12)
    assert np.isnan(calibration.mean_interval([1.0])[1])
    with pytest.raises(ValueError, match="finite"):
        calibration.mean_interval([1.0, np.inf])


def test_spread_and_skill_match_a_direct_evaluation():
    rng = np.random.default_rng(1)
    samples, truth = rng.normal(size=(3, 4, 5, 2)), rng.normal(size=(3, 5, 2))
    region = rng.random((3, 5, 2)) < 0.6
    region[:, 0, 0] = True
    skill, spread = calibration.spread_and_skill(samples, truth, region)
    for i in range(3):
        r = region[i]
        expected_skill = np.mean([np.mean((s[r] - truth[i][r]) ** 2) for s in samples[i]])
        pairs = [(a, b) for a, b in itertools.product(range(4), repeat=2) if a != b]
        expected_spread = np.mean(
            [np.mean((samples[i, a][r] - samples[i, b][r]) ** 2) for a, b in pairs]
        )
        np.testing.assert_allclose(skill[i], expected_skill, rtol=1e-12)
        np.testing.assert_allclose(spread[i], expected_spread, rtol=1e-12)


@pytest.mark.parametrize("k", [2, 4])
def test_exchangeable_draws_are_calibrated(k):
    """Truth and samples drawn from the same Gaussian posterior (a different one per image):
    spread-skill 1 and range coverage (K - 1) / (K + 1), within sampling error."""
    rng = np.random.default_rng(2)
    n, d = 3000, 6
    centre, scale = rng.normal(size=(n, 1, d)), rng.uniform(0.1, 2.0, (n, 1, d))
    draws = centre + scale * rng.normal(size=(n, k + 1, d))
    truth, samples = draws[:, 0], draws[:, 1:]
    ratio, low, high = calibration.ratio_interval(*calibration.spread_and_skill(samples, truth))
    assert low < 1.0 < high and abs(ratio - 1.0) < 0.05
    coverage = calibration.range_coverage(samples, truth).mean()
    assert abs(coverage - calibration.expected_coverage(k)) < 0.01


def test_over_confident_and_deterministic_samplers_score_above_one():
    rng = np.random.default_rng(3)
    centre = rng.normal(size=(2000, 1, 6))
    truth = centre[:, 0] + rng.normal(size=(2000, 6))
    narrow = centre + 0.5 * rng.normal(size=(2000, 2, 6))
    ratio, low, _ = calibration.ratio_interval(*calibration.spread_and_skill(narrow, truth))
    assert low > 1.0 and ratio == pytest.approx(2.5, rel=0.05)  # (1 + 1/4) / (2 / 4)
    assert calibration.range_coverage(narrow, truth).mean() < 1 / 3 - 0.05
    same = np.repeat(centre, 2, axis=1)
    assert calibration.ratio_interval(*calibration.spread_and_skill(same, truth))[0] == np.inf


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least 2 samples"):
        calibration.spread_and_skill(np.zeros((2, 1, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"must be \[N, K"):
        calibration.spread_and_skill(np.zeros((2, 2, 4)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="empty"):
        calibration.spread_and_skill(np.zeros((2, 2, 3)), np.zeros((2, 3)), np.zeros((2, 3), bool))
