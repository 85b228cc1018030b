"""The digit classifier behind EM's Fréchet distance: training through the one loop, load,
features, errors."""

import json
import os

import jax
import numpy as np
import pytest

from diffssl_jax import training
from diffssl_jax.evaluation import digit_classifier, metrics


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("digit_classifier")
    digit_classifier.train_classifier(
        str(workdir), num_steps=120, channels=(8, 16, 16), features=16, seed=3
    )
    return str(workdir)


def test_short_training_classifies_the_held_out_digits(classifier_dir):
    with open(f"{classifier_dir}/classifier.json") as f:
        meta = json.load(f)
    assert meta["features"] == 16 and meta["num_steps"] == 120
    assert meta["test_accuracy"] > 0.8, meta  # chance is 0.1; the 600-step default gets 0.98


def test_reloaded_features_match_the_trained_network(classifier_dir):
    model, params, _ = digit_classifier.load_classifier(classifier_dir)
    images = digit_classifier.test_images()[:20]
    _, expected = model.apply(params, images)
    features = digit_classifier.load_feature_fn(classifier_dir)(images)
    assert features.shape == (20, 16)
    np.testing.assert_allclose(features, np.asarray(expected), rtol=1e-6, atol=1e-6)


def test_frechet_distance_separates_digits_from_noise(classifier_dir):
    feature_fn = digit_classifier.load_feature_fn(classifier_dir)
    test = digit_classifier.test_images()
    a, b = feature_fn(test[:225]), feature_fn(test[225:])
    noise = np.random.default_rng(0).uniform(-1, 1, test[:225].shape).astype(np.float32)
    same = metrics.frechet_distance(a, b)
    different = metrics.frechet_distance(a, feature_fn(noise))
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6 * different)
    assert different > 20 * same, (same, different)


def test_training_is_a_function_of_the_seed(tmp_path):
    runs = [
        digit_classifier.train_classifier(
            str(tmp_path / name), num_steps=3, channels=(4, 4, 4), features=4, seed=seed
        )
        for name, seed in (("a", 1), ("b", 1), ("c", 2))
    ]
    assert runs[0]["final_train_loss"] == runs[1]["final_train_loss"]
    assert runs[0]["final_train_loss"] != runs[2]["final_train_loss"]


def test_missing_classifier_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="diffssl_jax.evaluation.digit_classifier"):
        digit_classifier.load_feature_fn(str(tmp_path / "absent"))


def test_wrong_image_shape_is_rejected(classifier_dir):
    feature_fn = digit_classifier.load_feature_fn(classifier_dir)
    with pytest.raises(ValueError, match=r"\[N, H, W, 1\]"):
        feature_fn(np.zeros((4, 16, 16)))


def test_classifier_trains_through_the_one_loop_and_a_rerun_reuses_it(classifier_dir):
    config = training.load_config(classifier_dir)
    assert config.method == "digit_classifier" and config.train.num_steps == 120
    assert os.listdir(os.path.join(classifier_dir, "checkpoints")) == ["120"]
    _, params, meta = digit_classifier.load_classifier(classifier_dir)
    saved = training.load_params(classifier_dir, which="params")
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(saved), strict=True):
        np.testing.assert_array_equal(a, b)
    again = digit_classifier.train_classifier(
        classifier_dir, num_steps=120, channels=(8, 16, 16), features=16, seed=3
    )  # a finished run is not redone: the same parameters, the same numbers
    assert again == meta
