"""The canvases configs: their digits config with canvas data, and each recipe fits 32x32."""

import importlib

import jax
import numpy as np
import pytest

from diffssl_jax import methods, recipe_inputs
from diffssl_jax.data import source_for

CASES = [("ddpm", "tiny"), ("mdm", "tiny"), ("mdm", "fixed_t"), ("mae", "tiny"), ("ldae", "tiny")]


def _configs(method, variant):
    load = lambda name: importlib.import_module(f"configs.{method}.{name}").get_config  # noqa: E731
    return load("canvases")(variant), load("digits")(variant)


def _flat(config):
    return dict(_flatten(config.to_dict()))


def _flatten(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("method, variant", [*CASES, ("ddpm", ""), ("mae", "all_pixels")])
def test_canvases_config_is_the_digits_config_with_canvas_data(method, variant):
    canvases, digits = (_flat(c) for c in _configs(method, variant))
    changed = {key for key in canvases if canvases[key] != digits[key]}
    assert set(canvases) == set(digits)
    assert changed == {"data.name", "data.image_shape", "eval.seg_num_labelled"}
    assert canvases["data.name"] == "canvases" and canvases["data.image_shape"] == (32, 32, 1)
    assert canvases["eval.seg_num_labelled"] == 10


@pytest.mark.parametrize("method, variant", CASES)
def test_each_recipe_takes_a_canvas_batch(method, variant):
    config, _ = _configs(method, variant)
    source = source_for(config.data)
    batch = {"image": source.images[:2], "segmentation": source.segmentation[:2]}
    recipe = methods.make_recipe(config, recipe_inputs.compute(config))
    params = jax.eval_shape(recipe.init, jax.random.key(0))
    loss, _ = jax.eval_shape(recipe.loss, params, batch, jax.random.key(1))
    assert loss.shape == () and np.issubdtype(loss.dtype, np.floating)
    feats = jax.eval_shape(
        lambda p, x: recipe.features(p, x, jax.random.key(2)), params, batch["image"]
    )
    assert all(f.shape[0] == 2 and f.ndim == 4 for f in feats.values())
