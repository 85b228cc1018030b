"""Natural-image patches: split by photograph, the patches' pixels, determinism, heavy tails."""

import pickle

import numpy as np
import pytest
import scipy.stats

from diffssl_jax.configs.ddpm import patches as ddpm_patches
from diffssl_jax.data import patches
from diffssl_jax.data.patches import PatchSource
from diffssl_jax.data.sources import make_source, source_for

SPLIT_NAMES = ("train", "validation", "test")


@pytest.fixture(scope="module")
def splits():
    return {name: PatchSource(name) for name in SPLIT_NAMES}


def test_every_photograph_is_in_exactly_one_split():
    labels = [label for split in SPLIT_NAMES for label in patches.SPLITS[split]]
    assert sorted(labels) == list(range(len(patches.PHOTOS)))
    assert [patches.split_of(k) for k in (2, 0, 1)] == ["validation", "test", "train"]


def test_no_photograph_gives_patches_to_two_splits(splits):
    seen = {name: set(np.unique(source.labels).tolist()) for name, source in splits.items()}
    for name in SPLIT_NAMES:
        assert seen[name] == set(patches.SPLITS[name]), name  # every photograph contributes
    assert not seen["train"] & seen["validation"]
    assert not seen["train"] & seen["test"]
    assert not seen["validation"] & seen["test"]


def test_no_held_out_patch_equals_a_training_patch(splits):
    train = {image.tobytes() for image in splits["train"].images}
    for name in ("validation", "test"):
        held_out = [image.tobytes() for image in splits[name].images]
        assert not train.intersection(held_out), name
        assert len(set(held_out)) == len(held_out), name  # disjoint windows, distinct patches


def test_shapes_dtype_range_and_sizes(splits):
    for source in splits.values():
        assert source.images.shape[1:] == (16, 16, 1) and source.images.dtype == np.float32
        assert source.labels.dtype == np.int32 and source.labels.shape == (len(source),)
        assert source.corners.shape == (len(source), 2)
        assert source.images.min() >= -1.0 and source.images.max() <= 1.0
        example = source[3]
        assert example["image"].shape == (16, 16, 1) and example["label"].dtype == np.int32
    sizes = {name: len(source) for name, source in splits.items()}
    assert sizes["validation"] >= 300 and sizes["test"] >= 300, sizes
    assert sizes["train"] >= 4 * sizes["validation"], sizes


def test_patches_are_windows_of_the_downscaled_photographs(splits):
    source = splits["validation"]
    for i in (0, len(source) // 2, len(source) - 1):
        label, (top, left) = source.labels[i], source.corners[i]
        photo = patches.downscale(patches.load_photo(label), patches.DOWNSCALE)
        window = photo[top : top + 16, left : left + 16]
        np.testing.assert_allclose(source.images[i, ..., 0], 2 * window - 1, atol=1e-6)
    # Held-out windows are disjoint (stride 16), training ones half-overlapping (stride 8).
    assert np.all(source.corners % 16 == 0) and np.all(splits["train"].corners % 8 == 0)
    # A fixed random order: the first images of a split, what a posterior run takes, mix its
    # photographs.
    for name in ("validation", "test"):
        assert len(np.unique(splits[name].labels[:8])) == 3, name


def test_flat_windows_are_dropped(splits):
    for source in splits.values():
        std01 = source.images.std(axis=(1, 2, 3)) / 2  # back to [0, 1] units
        assert std01.min() >= patches.MIN_STD - 1e-6


def test_photographs_are_gray_in_unit_range():
    for label in range(len(patches.PHOTOS)):
        photo = patches.load_photo(label)
        assert photo.ndim == 2 and min(photo.shape) >= 300, patches.photo_name(label)
        assert 0.0 <= photo.min() and photo.max() <= 1.0


def test_deterministic_and_pickled_by_arguments(splits):
    patches.patch_arrays.cache_clear()
    patches.load_photo.cache_clear()
    again = PatchSource("test")
    np.testing.assert_array_equal(again.images, splits["test"].images)
    np.testing.assert_array_equal(again.labels, splits["test"].labels)
    payload = pickle.dumps(again)
    assert len(payload) < 1000
    np.testing.assert_array_equal(pickle.loads(payload).images, again.images)


def test_make_source_and_the_config_build_it(splits):
    source = make_source("patches", "validation")
    assert isinstance(source, PatchSource) and len(source) == len(splits["validation"])
    assert make_source("patches", "test", image_size=8).images.shape[1:] == (8, 8, 1)
    train = source_for(ddpm_patches.get_config().data)
    assert train.split == "train" and len(train) == len(splits["train"])
    with pytest.raises(ValueError, match="crop and attribute_keys apply to tfds"):
        make_source("patches", "train", crop=(0, 0, 8, 8))


@pytest.mark.parametrize(
    "split, size, message",
    [
        ("val", 16, "unknown patches split 'val'"),
        ("train", 1, "patch_size must be an integer from 2 to 150"),
        ("train", 16.0, "patch_size must be an integer from 2 to 150"),
        ("train", 151, "patch_size must be an integer from 2 to 150"),
    ],
)
def test_bad_arguments(split, size, message):
    with pytest.raises(ValueError, match=message):
        PatchSource(split, size)


def test_patch_statistics_are_heavy_tailed(splits):
    """Natural images' derivative histograms are sharply peaked with heavy tails (Field 1987;
    Simoncelli & Olshausen 2001): the excess kurtosis (0 for a Gaussian) is large for
    horizontal pixel differences (measured: train 11.8, validation 6.9, test 7.3) and for the
    training patches whitened by their covariance (median over the 256 components 6.1, every
    one > 0.7), so a Gaussian prior misses what a learned prior can catch."""
    for name, bound in (("train", 8.0), ("validation", 5.0), ("test", 5.0)):
        images = splits[name].images[..., 0].astype(np.float64)
        differences = (images[:, :, 1:] - images[:, :, :-1]).ravel()
        assert scipy.stats.kurtosis(differences) > bound, name
    flat = splits["train"].images.reshape(len(splits["train"]), -1)
    centred = flat.astype(np.float64) - flat.mean(axis=0)
    eigvals, eigvecs = np.linalg.eigh(np.cov(centred, rowvar=False))
    whitened = centred @ eigvecs / np.sqrt(eigvals)
    kurtosis = scipy.stats.kurtosis(whitened, axis=0)
    assert np.median(kurtosis) > 4.0 and kurtosis.min() > 0.0
