"""Sources: digits protocol (docs/methods.md F), array validation, tfds conversion, errors."""

import pickle

import jax
import numpy as np
import pytest
import sklearn.datasets
import tensorflow_datasets as tfds

from diffssl_jax.data import sources
from diffssl_jax.data.arrays import ArraySource
from diffssl_jax.data.sources import DigitsSource, TfdsSource, make_source


@pytest.fixture(scope="module")
def train():
    return DigitsSource("train")


@pytest.fixture(scope="module")
def test():
    return DigitsSource("test")


def test_digits_split_sizes_partition_all(train, test):
    assert (len(train), len(test), len(DigitsSource("all"))) == (1347, 450, 1797)
    both = np.concatenate([train.indices, test.indices])
    np.testing.assert_array_equal(np.sort(both), np.arange(1797))
    np.testing.assert_array_equal(
        train.labels, sklearn.datasets.load_digits().target[train.indices]
    )


def test_digits_validation_split_partitions_train_by_class(train):
    validation = DigitsSource("validation")
    rest = DigitsSource("train_minus_validation")
    assert (len(validation), len(rest)) == (sources.DIGITS_VALIDATION_SIZE, 1347 - 270)
    assert not set(validation.indices) & set(rest.indices)
    np.testing.assert_array_equal(
        np.sort(np.concatenate([validation.indices, rest.indices])), train.indices
    )
    proportional = np.bincount(train.labels, minlength=10) * 270 / 1347
    assert np.abs(np.bincount(validation.labels, minlength=10) - proportional).max() <= 1


def test_digits_split_is_stratified(train, test):
    all_counts = np.bincount(DigitsSource("all").labels, minlength=10)
    for split in (train, test):
        proportional = all_counts * len(split) / 1797
        assert np.abs(np.bincount(split.labels, minlength=10) - proportional).max() <= 1


def test_digits_examples_shape_dtype_range(train):
    example = train[5]
    assert example["image"].shape == (16, 16, 1) and example["image"].dtype == np.float32
    assert example["label"].shape == () and example["label"].dtype == np.int32
    assert train.images.shape == (1347, 16, 16, 1) and train.labels.shape == (1347,)
    assert train.images.min() == -1.0 and 0.9 < train.images.max() <= 1.0
    np.testing.assert_array_equal(example["image"], train.images[5])


def test_digits_pixels_are_bilinear_resize_of_raw():
    raw = sklearn.datasets.load_digits().images[:7, :, :, None]
    expected = jax.image.resize(raw / 16.0 * 2 - 1, (7, 16, 16, 1), "bilinear")
    np.testing.assert_allclose(DigitsSource("all").images[:7], expected, atol=1e-6)


@pytest.mark.parametrize(
    "shape_in, shape_out", [((2, 8, 8, 1), (2, 16, 16, 1)), ((5, 11, 3), (3, 7, 3))]
)
def test_resize_bilinear_matches_jax(shape_in, shape_out):
    x = np.random.default_rng(0).normal(size=shape_in)
    expected = jax.image.resize(x, shape_out, "bilinear")
    actual = sources.resize_bilinear(x, *shape_out[-3:-1])
    np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_digits_are_deterministic(train):
    sources._digits_images.cache_clear()
    sources._digits_indices.cache_clear()
    again = DigitsSource("train")
    np.testing.assert_array_equal(again.indices, train.indices)
    np.testing.assert_array_equal(again.images, train.images)


def test_digits_pickle_rebuilds_from_arguments(test):
    payload = pickle.dumps(test)
    assert len(payload) < 1000
    np.testing.assert_array_equal(pickle.loads(payload).images, test.images)


def test_digits_bad_split_lists_valid_splits():
    with pytest.raises(ValueError, match="'train', 'test', 'all'"):
        DigitsSource("valid")


def _images(n=4):
    return np.linspace(-1, 1, n * 12, dtype=np.float32).reshape(n, 2, 3, 2)


def test_array_source_examples():
    src = ArraySource(_images(), labels=np.arange(4, dtype=np.int64), mask=np.eye(4, dtype=bool))
    example = src[2]
    assert len(src) == 4 and sorted(example) == ["image", "label", "mask"]
    np.testing.assert_array_equal(example["image"], _images()[2])
    assert example["label"].dtype == np.int32 and int(example["label"]) == 2
    np.testing.assert_array_equal(example["mask"], np.eye(4, dtype=bool)[2])
    assert "label" not in ArraySource(_images())[0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(images=np.zeros((4, 2, 3), np.float32)), r"\[N, H, W, C\]"),
        (dict(images=np.zeros((0, 2, 3, 1), np.float32)), "empty"),
        (dict(images=np.zeros((4, 2, 3, 1), np.uint8)), "x/127.5 - 1"),
        (dict(images=np.full((4, 2, 3, 1), 255.0)), r"got range \[255, 255\]"),
        (dict(images=np.full((4, 2, 3, 1), np.nan)), "in \\[-1, 1\\]"),
        (dict(images=_images(), labels=np.arange(3)), r"shape \(4,\)"),
        (dict(images=_images(), labels=np.zeros(4)), "integers"),
        (dict(images=_images(), extra=np.zeros(5)), "'extra' must have 4 rows"),
    ],
)
def test_array_source_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ArraySource(**kwargs)


def test_tfds_source_converts_mock_mnist(tmp_path):
    with tfds.testing.mock_data(num_examples=6):
        src = make_source("mnist", "train", data_dir=str(tmp_path))
        small = make_source("mnist", "train", data_dir=str(tmp_path), image_size=8)
        raw = src._source[3]
        example, resized = src[3], small[3]
    assert isinstance(src, TfdsSource) and len(src) == 6
    assert example["image"].shape == (28, 28, 1) and example["image"].dtype == np.float32
    np.testing.assert_allclose(example["image"], raw["image"] / 127.5 - 1, atol=1e-6)
    assert example["label"].dtype == np.int32 and int(example["label"]) == int(raw["label"])
    assert resized["image"].shape == (8, 8, 1)
    np.testing.assert_allclose(
        resized["image"], jax.image.resize(example["image"], (8, 8, 1), "bilinear"), atol=1e-5
    )


def test_tfds_source_wrong_label_key_is_named(tmp_path):
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(ValueError, match="no label key 'digit'"):
            TfdsSource("mnist", "train", data_dir=str(tmp_path), label_key="digit")


def test_missing_tfds_dataset_says_how_to_prepare_it(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        make_source("mnist", "train", data_dir=str(tmp_path))
    message = str(info.value)
    assert "'mnist'" in message and str(tmp_path) in message
    assert f"tfds build mnist --data_dir={tmp_path} --file_format=array_record" in message


def test_unknown_dataset_name_suggests_digits():
    with pytest.raises(ValueError, match="Did you mean 'digits'"):
        make_source("digit", "train")
