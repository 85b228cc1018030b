"""Readout choices on validation: candidate blocks, the pool-grid sweep, the selection rule."""

from types import SimpleNamespace

import numpy as np
import pytest

from diffssl_jax.configs.ddpm import digits as ddpm_digits
from diffssl_jax.configs.ldae import digits as ldae_digits
from diffssl_jax.evaluation import readout
from diffssl_jax.evaluation.features import FeatureExtractor
from diffssl_jax.models.unet import unet_decoder_channels


def _quadrant_digits(num_per_class: int, seed: int):
    """Four classes that differ only in which quadrant of an 8x8 image is bright: their
    global means are equal, so only a pooling that keeps the layout can tell them apart."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), num_per_class)
    images = 0.1 * rng.standard_normal((len(labels), 8, 8, 1))
    for i, c in enumerate(labels):
        row, col = divmod(int(c), 2)
        images[i, 4 * row : 4 * row + 4, 4 * col : 4 * col + 4] += 1.0
    return SimpleNamespace(images=images.astype(np.float32), labels=labels.astype(np.int32))


def _features(params, images, rng, *, t, blocks):
    """Block "layout" is the image; block "mean" keeps only the image mean at every pixel."""
    del params, rng
    maps = {"layout": images * (1.0 - t), "mean": images.mean((1, 2), keepdims=True) + 0 * images}
    return {name: maps[name] for name in blocks}


def test_sweep_finds_the_layout_only_a_grid_pooling_keeps():
    extractor = FeatureExtractor(features_fn=_features, params={}, t=0.0, batch_size=64)
    train, validation = _quadrant_digits(12, seed=0), _quadrant_digits(10, seed=1)
    rows = readout.sweep_probe(
        extractor,
        train,
        validation,
        blocks=("layout", "mean"),
        ts=(0.0,),
        grids=(1, 2, 4),
        seeds=(0, 1),
    )
    score = {(r["block"], r["grid"]): r["per_class"] for r in rows}
    assert {r["dim"] for r in rows if r["block"] == "layout"} == {1, 4, 16}
    assert score[("layout", 2)] == 1.0 and score[("layout", 4)] == 1.0
    assert score[("layout", 1)] < 0.6 and max(score[("mean", g)] for g in (1, 2, 4)) < 0.6
    best = readout.choose(rows, "per_class")
    assert (best["block"], best["grid"]) == ("layout", 2)  # the first of the tied candidates


def test_choose_takes_the_highest_and_the_first_on_ties():
    rows = [{"name": "a", "s": 0.5}, {"name": "b", "s": 0.7}, {"name": "c", "s": 0.7}]
    assert readout.choose(rows, "s")["name"] == "b"
    with pytest.raises(ValueError, match="no candidates"):
        readout.choose([], "s")


def test_candidate_blocks_of_the_digits_networks():
    config = ddpm_digits.get_config()
    m = config.model
    decoder = unet_decoder_channels(m.model_channels, tuple(m.channel_mult), m.num_res_blocks)
    assert readout.network_blocks(config) == tuple(f"dec_{i}" for i in range(len(decoder)))
    below = readout.below_full_resolution(config)
    assert below and all(decoder[int(b[4:])][1] > 1 for b in below)
    full = set(readout.network_blocks(config)) - set(below)
    assert full and all(decoder[int(b[4:])][1] == 1 for b in full)
    vit = ldae_digits.get_config()
    assert readout.network_blocks(vit) == (*(f"block_{i}" for i in range(6)), "encoder")


def test_l2_choice_scores_every_strength():
    train, validation = _quadrant_digits(12, seed=0), _quadrant_digits(10, seed=1)
    flat = lambda s: s.images.reshape(len(s.images), -1)  # noqa: E731
    choice = readout.choose_l2(
        flat(train),
        train.labels,
        flat(validation),
        validation.labels,
        seeds=(0,),
        l2s=(1e-3, 1e3),
    )
    assert [s["l2"] for s in choice["scores"]] == [1e-3, 1e3]
    for budget in ("all", "per_class"):
        best = max(s[budget] for s in choice["scores"])
        first_best = next(s["l2"] for s in choice["scores"] if s[budget] == best)
        assert choice[budget] == first_best
