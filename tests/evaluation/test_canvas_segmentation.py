"""Segmentation of the digit canvases: their own per-pixel labels, raw pixels, a tiny DDPM."""

import numpy as np
import pytest

from diffssl_jax import methods, training
from diffssl_jax.configs.ddpm.canvases import get_config
from diffssl_jax.data import DigitsSource, make_source
from diffssl_jax.evaluation import digit_tasks, features, representation

FAST_EVAL = ("seg_seeds=1", "seg_num_models=2", "seg_num_labelled=4")


def _tiny_config():
    config = get_config("tiny")
    config.train.num_steps = 2
    config.train.sample_every_steps = 0
    return config


def test_masks_are_the_canvases_own_labels_and_the_digit_rule_otherwise():
    canvases = make_source("canvases", "validation")
    assert representation.segmentation_masks(canvases) is canvases.segmentation
    digits = DigitsSource("test")
    np.testing.assert_array_equal(
        representation.segmentation_masks(digits),
        digit_tasks.digit_segmentation_labels(digits.images, digits.labels),
    )


@pytest.mark.parametrize("split", ["validation", "test"])
def test_raw_pixels_segment_ink_but_not_class(split):
    config = representation.apply_eval_overrides(_tiny_config(), (*FAST_EVAL, f"split={split!r}"))
    results = representation.evaluate_representation(
        features.raw_pixel_features(), config, seg_max_epochs=3
    )
    assert results["linear_probe"] == {}
    seg = results["segmentation"]
    assert seg["num_labelled"] == 4 and len(seg["miou"]["values"]) == 1
    # One intensity per pixel: ink vs background is easy, the digit's class is not.
    assert seg["dice"]["mean"] > 0.8 and seg["miou"]["mean"] < 0.3
    assert "segmentation miou, 4 labelled" in representation.format_results(results)


def test_tiny_ddpm_on_canvases_is_evaluated(tmp_path):
    config = _tiny_config()
    workdir = str(tmp_path / "ddpm")
    training.train(config, workdir, methods.make_recipe(config))
    config = representation.apply_eval_overrides(training.load_config(workdir), FAST_EVAL)
    results = representation.evaluate_representation(workdir, config, seg_max_epochs=2)
    seg = results["segmentation"]
    assert 0.0 <= seg["miou"]["mean"] <= 1.0 and 0.0 <= seg["dice"]["mean"] <= 1.0
    assert results["feature_dims"] and results["linear_probe"] == {}
    assert results["config"]["data"]["name"] == "canvases"
