"""Canvases of several digits: labels against the placed digits, disjoint splits, determinism."""

import pickle

import numpy as np
import pytest

from diffssl_jax.data import canvases
from diffssl_jax.data.canvases import CanvasSource, digit_pool
from diffssl_jax.data.sources import DIGITS_VALIDATION_SIZE, DigitsSource, make_source
from diffssl_jax.evaluation import digit_tasks

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def sources():
    return {split: make_source("canvases", split) for split in SPLITS}


@pytest.fixture(scope="module")
def small_digits():
    return DigitsSource("all", image_size=canvases.DIGIT_SIZE)


def _render_by_hand(source, small_digits, n):
    """Canvas n pixel by pixel: the max over the digits covering a pixel, its first argmax."""
    size, side = canvases.DIGIT_SIZE, source.canvas_size
    image = np.full((side, side), -1.0)
    labels = np.zeros((side, side), np.int64)
    for i in range(side):
        for j in range(side):
            best, owner = -1.0, None
            for index, top, left in zip(
                source.digit_indices[n], source.top[n], source.left[n], strict=True
            ):
                if index < 0 or not (top <= i < top + size and left <= j < left + size):
                    continue
                value = float(small_digits.images[index, i - top, j - left, 0])
                if owner is None or value > best:  # strict: ties stay with the earlier digit
                    best, owner = value, index
            image[i, j] = best
            if owner is not None and (best + 1.0) / 2.0 >= 0.5:
                labels[i, j] = 1 + small_digits.labels[owner]
    return image, labels


@pytest.mark.parametrize("split", SPLITS)
def test_labels_match_the_placed_digits_pixel_by_pixel(sources, small_digits, split):
    source = sources[split]
    for n in range(12):
        image, labels = _render_by_hand(source, small_digits, n)
        np.testing.assert_array_equal(source.images[n, ..., 0], image)
        np.testing.assert_array_equal(source.segmentation[n], labels)


def test_ink_rule_is_the_single_digit_tasks(sources):
    source = sources["test"]
    assert canvases.INK_THRESHOLD == digit_tasks.INK_THRESHOLD
    assert canvases.NUM_CLASSES == digit_tasks.NUM_SEGMENTATION_CLASSES
    single = digit_tasks.digit_segmentation_labels(source.images, np.zeros(len(source), int))
    np.testing.assert_array_equal(single > 0, source.segmentation > 0)


def test_splits_never_share_a_source_digit(sources):
    used = {s: set(sources[s].digit_indices[sources[s].digit_indices >= 0]) for s in SPLITS}
    pools = {s: set(digit_pool(DigitsSource, s)) for s in SPLITS}
    for s in SPLITS:
        assert used[s] <= pools[s]
    assert not pools["train"] & pools["validation"]
    assert not pools["train"] & pools["test"] and not pools["validation"] & pools["test"]
    assert pools["train"] | pools["validation"] == set(DigitsSource("train").indices)
    assert pools["test"] == set(DigitsSource("test").indices)
    assert len(pools["validation"]) == DIGITS_VALIDATION_SIZE
    labels = DigitsSource("all").labels
    assert (
        np.bincount(labels[digit_pool(DigitsSource, "validation")], minlength=10).min() >= 26
    )  # stratified


def test_shapes_ranges_and_slots(sources):
    for split, source in sources.items():
        assert len(source) == canvases.SIZES[split]
        assert source.images.shape == (len(source), 32, 32, 1)
        assert source.images.dtype == np.float32
        assert source.images.min() == -1.0 and source.images.max() <= 1.0
        seg = source.segmentation
        assert seg.shape == (len(source), 32, 32) and seg.dtype == np.int32
        assert seg.min() == 0 and seg.max() < 11 and len(np.unique(seg)) == 11
        used = source.digit_indices >= 0
        counts = used.sum(1)
        assert set(np.unique(counts)) == {2, 3, 4}
        np.testing.assert_array_equal(used, np.arange(4) < counts[:, None])  # empties last
        for row in source.digit_indices:
            assert len(set(row[row >= 0])) == (row >= 0).sum()  # distinct digits per canvas
        inside = (source.top >= 0) & (source.top + canvases.DIGIT_SIZE <= 32)
        assert inside.all() and ((source.left >= 0) & (source.left <= 20)).all()
        example = source[3]
        assert sorted(example) == ["image", "segmentation"]
        np.testing.assert_array_equal(example["segmentation"], seg[3])


def test_digits_touch_and_overlap_but_keep_most_of_their_ink(sources, small_digits):
    source, size = sources["train"], canvases.DIGIT_SIZE
    overlapping, shared_fractions = 0, []
    for n in range(300):
        drawn = np.zeros((32, 32), int)
        for index, top, left in zip(
            source.digit_indices[n], source.top[n], source.left[n], strict=True
        ):
            if index < 0:
                continue
            ink = canvases.is_ink(small_digits.images[index, ..., 0])
            window = drawn[top : top + size, left : left + size]
            shared_fractions.append((window.astype(bool) & ink).sum() / ink.sum())
            window += ink
        overlapping += (drawn > 1).any()
    shared = np.array(shared_fractions)
    assert 0.2 < overlapping / 300 < 0.95  # some canvases have overlapping ink, not all
    assert np.mean(shared <= canvases.MAX_SHARED_INK) > 0.99


def test_generation_is_deterministic_and_pickles_by_arguments(sources):
    source = sources["validation"]
    canvases._canvases.cache_clear()
    again = CanvasSource("validation", DigitsSource)
    assert again.images is not source.images
    np.testing.assert_array_equal(again.images, source.images)
    np.testing.assert_array_equal(again.segmentation, source.segmentation)
    np.testing.assert_array_equal(again.digit_indices, source.digit_indices)
    clone = pickle.loads(pickle.dumps(source))
    assert (clone.split, clone.digits, clone.canvas_size) == ("validation", DigitsSource, 32)
    np.testing.assert_array_equal(clone.images, source.images)


def test_bad_splits_and_sizes_raise():
    with pytest.raises(ValueError, match="unknown canvases split 'all'"):
        make_source("canvases", "all")
    with pytest.raises(ValueError, match="unknown canvases split"):
        digit_pool(DigitsSource, "valid")
    with pytest.raises(ValueError, match="canvas_size must be >= 12"):
        CanvasSource("test", DigitsSource, canvas_size=8)
    with pytest.raises(ValueError, match="crop and attribute_keys"):
        make_source("canvases", "test", crop=(0, 0, 8, 8))
