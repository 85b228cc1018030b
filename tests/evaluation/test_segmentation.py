"""Pixel-classifier segmentation (docs/methods.md A.6) on a synthetic per-pixel linear task."""

import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax.evaluation import segmentation as seg

NUM_CLASSES = 3


def _make_task(seed: int, num: int):
    """Random [num, 8, 8, 4] images; a pixel's label is argmax(x_pixel @ A) for a fixed A."""
    a = np.random.default_rng(123).normal(size=(4, NUM_CLASSES))
    x = np.random.default_rng(seed).normal(size=(num, 8, 8, 4)).astype(np.float32)
    return x, np.argmax(x @ a, -1).astype(np.int32)


class CountingIdentity:
    """Identity features (D = 4) that record how often, and on how many images, it ran."""

    def __init__(self):
        self.calls, self.max_batch = 0, 0

    def __call__(self, images):
        self.calls += 1
        self.max_batch = max(self.max_batch, images.shape[0])
        return images


@pytest.fixture(scope="module")
def task():
    return _make_task(0, 20), _make_task(1, 8)


@pytest.fixture(scope="module")
def cached(task):
    (x, y), _ = task
    feature_fn = CountingIdentity()
    ensemble = seg.train_pixel_ensemble(
        feature_fn,
        x,
        y,
        num_classes=NUM_CLASSES,
        num_models=3,
        max_epochs=8,
        min_pixels_per_class=0,
        early_stop_patience=10_000,
        seed=0,
    )
    return ensemble, feature_fn


def test_ensemble_learns_linear_pixel_task(task, cached):
    _, (x_test, y_test) = task
    ensemble, feature_fn = cached
    # One probing call for D, then ceil(20 / 8) chunks into the cache: never per epoch.
    assert feature_fn.calls == 4 and feature_fn.max_batch <= 8
    assert ensemble.num_updates.tolist() == [8 * 20] * 3  # 1280 pixels / 64, no early stop
    pred = seg.predict_ensemble(ensemble, lambda im: im, x_test, batch_size=3)
    assert pred.shape == y_test.shape
    assert np.mean(pred == y_test) >= 0.95


def test_memory_bounded_path_recomputes_features_per_chunk(task, cached):
    (x, y), (x_test, y_test) = task
    feature_fn = CountingIdentity()
    bytes_per_image = 8 * 8 * 4 * 4
    ensemble = seg.train_pixel_ensemble(
        feature_fn,
        x,
        y,
        num_classes=NUM_CLASSES,
        num_models=3,
        max_epochs=8,
        min_pixels_per_class=0,
        early_stop_patience=10_000,
        cache_bytes=5 * bytes_per_image,
        seed=0,
    )
    # 1 probing call + 8 epochs x 4 chunks of 5 images.
    assert feature_fn.calls == 1 + 8 * 4 and feature_fn.max_batch <= 5
    acc = np.mean(seg.predict_ensemble(ensemble, lambda im: im, x_test) == y_test)
    cached_acc = np.mean(seg.predict_ensemble(cached[0], lambda im: im, x_test) == y_test)
    assert acc >= 0.9 and abs(acc - cached_acc) < 0.05


def test_protocol_ii_l2_features_early_stopping_and_independent_scores(task):
    (x, y), (x_test, y_test) = task
    steps_per_epoch, max_epochs = 20, 60
    ensemble = seg.train_pixel_ensemble(
        lambda im: im,
        x,
        y,
        num_classes=NUM_CLASSES,
        num_models=2,
        max_epochs=max_epochs,
        min_pixels_per_class=0,
        feature_norm="l2_image",
        seed=1,
    )
    assert ensemble.feature_norm == "l2_image"
    # Early stop counts only after epoch 3 and needs > 50 non-improving steps.
    updates = np.asarray(ensemble.num_updates)
    assert np.all(updates > 4 * steps_per_epoch + 50)
    assert np.all(updates < max_epochs * steps_per_epoch)
    scores = seg.evaluate_independent(ensemble, lambda im: im, x_test, y_test, batch_size=3)
    assert set(scores) == {"miou", "dice", "derived_iou", "aji"}
    assert len(scores["miou"]["per_model"]) == 2
    assert scores["miou"]["mean"] >= 0.8
    d = np.array(scores["dice"]["per_model"])
    np.testing.assert_allclose(scores["derived_iou"]["per_model"], d / (2 - d))


def test_majority_vote_breaks_ties_towards_lowest_class():
    preds = jnp.array([[0, 1, 2, 2], [1, 1, 0, 2], [2, 0, 1, 1]])
    np.testing.assert_array_equal(seg.majority_vote(preds, 3), [0, 1, 0, 2])
    np.testing.assert_array_equal(seg.majority_vote(jnp.array([[2], [2], [1], [1]]), 3), [1])
    np.testing.assert_array_equal(seg.majority_vote(jnp.array([[[3]], [[0]], [[3]]]), 4), [[3]])


def test_relabel_rare_classes_and_normalisation():
    labels = np.zeros((2, 4, 4), np.int32)
    labels[0, 0, :3] = 2  # 3 pixels of class 2 in image 0
    labels[0, 3, 3] = 255
    labels[1, :2] = 2  # 8 pixels of class 2 in image 1
    out = seg.relabel_rare_classes(labels, min_pixels=5, ignore_label=255)
    np.testing.assert_array_equal(out[0, 0, :3], 255)
    assert out[0, 3, 3] == 255 and (out[0, 1:3] == 0).all()
    np.testing.assert_array_equal(out[1], labels[1])
    feats = jnp.arange(2 * 3 * 3 * 2, dtype=jnp.float32).reshape(2, 3, 3, 2)
    norms = jnp.sqrt(jnp.sum(seg.normalize_image_features(feats) ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(norms, 1.0, rtol=1e-6)


def test_bad_input_raises(task):
    (x, y), _ = task
    identity = lambda im: im  # noqa: E731
    with pytest.raises(ValueError, match="labels shape"):
        seg.train_pixel_ensemble(identity, x, y[:, :4], num_classes=3)
    with pytest.raises(ValueError, match="num_classes too small"):
        seg.train_pixel_ensemble(identity, x, y, num_classes=2)
    with pytest.raises(ValueError, match="ignore_label"):
        seg.train_pixel_ensemble(identity, x, y, num_classes=3, ignore_label=1)
    with pytest.raises(ValueError, match="feature_norm"):
        seg.train_pixel_ensemble(identity, x, y, num_classes=3, feature_norm="l1")
    with pytest.raises(ValueError, match="feature_fn"):
        seg.train_pixel_ensemble(lambda im: im[:, ::2], x, y, num_classes=3)
    with pytest.raises(ValueError, match="images"):
        seg.train_pixel_ensemble(identity, x[..., 0], y, num_classes=3)
