"""Counterfactual evaluation: pair picking and the attribute-transfer measure on cases with a
known answer (the DDIM generation is DiTi's: tests/methods/test_diti_counterfactuals.py)."""

import numpy as np
import pytest

from diffssl_jax.data import DigitsSource
from diffssl_jax.evaluation import counterfactuals


def test_pairs_have_different_classes():
    labels = np.array([3, 1, 0, 5, 2, 4, 6, 7, 8, 9, 0, 1])
    first, second = counterfactuals.pick_pairs(labels, 4)
    assert np.all(labels[first] != labels[second])
    assert labels[first].tolist() == [0, 1, 2, 3] and labels[second].tolist() == [5, 6, 7, 8]


def test_pairs_beyond_one_per_class_are_distinct():
    labels = np.repeat(np.arange(10), 3)
    first, second = counterfactuals.pick_pairs(labels, 25)
    assert len(set(zip(first.tolist(), second.tolist(), strict=True))) == 25
    assert np.all(labels[first] != labels[second])
    with pytest.raises(ValueError, match="at most 30"):
        counterfactuals.pick_pairs(labels, 31)


def test_transfer_fraction_is_the_share_of_the_change_achieved():
    a1, a2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 5.0])
    alphas = np.array([0.0, 0.5, 1.0])
    half_way = a1[:, None] + 0.5 * alphas * (a2 - a1)[:, None] + 7.0  # offset: baseline g(0)
    np.testing.assert_allclose(counterfactuals.transfer_fractions(a1, a2, half_way), 0.5 * alphas)
    assert np.isnan(counterfactuals.transfer_fractions(a1, a1, half_way)).all()


def test_pixel_blends_transfer_every_attribute_fully_and_ink_linearly():
    # Strips that blend the pixels of image 2 into image 1 ("swap" group) reach image 2 at
    # weight 1, so every measured attribute moves all the way (f(1) = 1); ink mass is linear
    # in the pixels, so f(alpha) = alpha. Strips that keep image 1 ("keep") move nothing.
    train, test = DigitsSource("train"), DigitsSource("test")
    first, second = counterfactuals.pick_pairs(test.labels, 12)
    x1, x2 = test.images[first], test.images[second]
    alphas = np.array([0.0, 0.25, 0.5, 1.0])
    w = alphas[None, :, None, None, None]
    generated = {
        "keep": np.repeat(x1[:, None], len(alphas), 1),
        "swap": (1 - w) * x1[:, None] + w * x2[:, None],
    }
    probe = counterfactuals.fit_class_probe(train.images, train.labels)
    out = counterfactuals.attribute_transfer(x1, x2, generated, test.labels[second], probe)
    assert set(out["swap"]) == set(counterfactuals.MEASURES)
    for name in counterfactuals.MEASURES:
        np.testing.assert_allclose(out["keep"][name], 0.0, atol=1e-12)
        np.testing.assert_allclose(out["swap"][name][-1], 1.0, atol=1e-5)
    np.testing.assert_allclose(out["swap"]["ink_mass"], alphas, atol=1e-5)
    table = counterfactuals.format_transfer(out, alphas)
    assert "p_class" in table and "swap" in table
