"""The grain pipeline: shapes, seeded order, epochs, process shards, resumption, flips."""

import json

import numpy as np
import pytest

from diffssl_jax.data import pipeline
from diffssl_jax.data.arrays import ArraySource

N, H, W = 12, 3, 4


def _source(n=N):
    """Example `i` has label `i` and an image that no flip maps to another image."""
    ramp = np.arange(H * W, dtype=np.float32).reshape(1, H, W, 1)
    images = (ramp + H * W * np.arange(n).reshape(n, 1, 1, 1)) / (n * H * W) * 2 - 1
    return ArraySource(images, labels=np.arange(n))


def _labels(dataset, num_batches):
    return np.stack([dataset[i]["label"] for i in range(num_batches)])


def test_batch_shapes_and_dtypes():
    batch = pipeline.make_dataset(_source(), global_batch_size=4, seed=0)[0]
    assert batch["image"].shape == (4, H, W, 1) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (4,) and batch["label"].dtype == np.int32


def test_order_is_a_function_of_the_seed():
    first = _labels(pipeline.make_dataset(_source(), global_batch_size=4, seed=3), 6)
    again = _labels(pipeline.make_dataset(_source(), global_batch_size=4, seed=3), 6)
    other = _labels(pipeline.make_dataset(_source(), global_batch_size=4, seed=4), 6)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_each_epoch_is_a_new_permutation():
    labels = _labels(pipeline.make_dataset(_source(), global_batch_size=4, seed=0), 6)
    epoch_0, epoch_1 = labels[:3].ravel(), labels[3:].ravel()
    np.testing.assert_array_equal(np.sort(epoch_0), np.arange(N))
    np.testing.assert_array_equal(np.sort(epoch_1), np.arange(N))
    assert not np.array_equal(epoch_0, epoch_1)


def test_finite_epochs_and_remainder():
    kept = pipeline.make_dataset(_source(10), global_batch_size=4, seed=0, num_epochs=1)
    assert len(kept) == 2
    ds = pipeline.make_dataset(
        _source(10), global_batch_size=4, seed=0, num_epochs=1, drop_remainder=False
    )
    labels = [ds[i]["label"] for i in range(len(ds))]
    assert [len(b) for b in labels] == [4, 4, 2]
    np.testing.assert_array_equal(np.sort(np.concatenate(labels)), np.arange(10))


def test_no_shuffle_keeps_source_order():
    ds = pipeline.make_dataset(_source(), global_batch_size=4, seed=0, shuffle=False)
    np.testing.assert_array_equal(_labels(ds, 4).ravel(), np.arange(16) % N)


def test_processes_see_disjoint_shards_of_the_same_global_batches():
    kwargs = dict(global_batch_size=4, seed=1, random_flip=True, process_count=2)
    one = pipeline.make_dataset(
        _source(), global_batch_size=4, seed=1, random_flip=True, process_index=0, process_count=1
    )
    p0 = pipeline.make_dataset(_source(), process_index=0, **kwargs)
    p1 = pipeline.make_dataset(_source(), process_index=1, **kwargs)
    for step in range(5):
        b0, b1, whole = p0[step], p1[step], one[step]
        assert len(b0["label"]) == len(b1["label"]) == 2
        assert not set(b0["label"]) & set(b1["label"])
        images = np.concatenate([b0["image"], b1["image"]])
        labels = np.concatenate([b0["label"], b1["label"]])
        order = np.argsort(labels)
        np.testing.assert_array_equal(labels[order], np.sort(whole["label"]))
        np.testing.assert_array_equal(images[order], whole["image"][np.argsort(whole["label"])])


def test_iterator_state_round_trip_through_json():
    ds = pipeline.make_dataset(_source(), global_batch_size=4, seed=0, random_flip=True)
    iterator = pipeline.make_iterator(ds)
    for _ in range(3):
        next(iterator)
    state = json.loads(json.dumps(iterator.get_state()))
    expected = [next(iterator) for _ in range(2)]
    resumed = pipeline.make_iterator(ds)
    resumed.set_state(state)
    for want, got in zip(expected, [next(resumed) for _ in range(2)], strict=True):
        np.testing.assert_array_equal(got["label"], want["label"])
        np.testing.assert_array_equal(got["image"], want["image"])
    np.testing.assert_array_equal(expected[0]["label"], ds[3]["label"])


def test_flips_are_horizontal_and_seeded():
    src = _source()
    ds = pipeline.make_dataset(src, global_batch_size=4, seed=0, random_flip=True)
    again = pipeline.make_dataset(src, global_batch_size=4, seed=0, random_flip=True)
    flipped = []
    for step in range(30):
        batch = ds[step]
        np.testing.assert_array_equal(batch["image"], again[step]["image"])
        for image, label in zip(batch["image"], batch["label"], strict=True):
            original = src.images[label]
            is_flipped = np.array_equal(image, original[:, ::-1])
            assert is_flipped or np.array_equal(image, original)
            flipped.append(is_flipped)
    assert 0.3 < np.mean(flipped) < 0.7


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(global_batch_size=6, process_index=0, process_count=4), "multiple of the process"),
        (dict(global_batch_size=4, process_index=2, process_count=2), "process_index"),
        (dict(global_batch_size=4, seed=-1), "seed"),
        (dict(global_batch_size=4, num_epochs=0), "num_epochs"),
    ],
)
def test_make_dataset_rejects_bad_arguments(kwargs, message):
    kwargs = {"seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        pipeline.make_dataset(_source(), **kwargs)


def _batch(**overrides):
    batch = {"image": np.zeros((2, 16, 16, 1), np.float32), "label": np.zeros(2, np.int32)}
    return {**batch, **overrides}


def test_validate_batch_accepts_the_contract():
    pipeline.validate_batch(
        _batch(image=np.full((2, 16, 16, 1), 1 + 1e-6, np.float32)), (16, 16, 1)
    )


@pytest.mark.parametrize(
    "batch, message",
    [
        (_batch(image=np.zeros((16, 16, 1), np.float32)), r"shape \(16, 16, 1\)"),
        (_batch(image=np.zeros((2, 32, 32, 3), np.float32)), r"\(2, 32, 32, 3\).*\(16, 16, 1\)"),
        (_batch(image=np.zeros((2, 16, 16, 1))), "float32; got float64"),
        (_batch(image=np.full((2, 16, 16, 1), 255, np.float32)), r"range \[255, 255\]"),
        (_batch(image=np.full((2, 16, 16, 1), np.nan, np.float32)), r"\[-1, 1\]"),
        (_batch(label=np.zeros(2, np.int64)), "int32"),
        ({"x": np.zeros((2, 16, 16, 1), np.float32)}, "no 'image'"),
    ],
)
def test_validate_batch_rejects_off_contract(batch, message):
    with pytest.raises(ValueError, match=message):
        pipeline.validate_batch(batch, (16, 16, 1))
