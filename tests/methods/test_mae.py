"""The MAE recipe: masked-only loss, masking ratio, features of the clean image, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax import methods
from diffssl_jax.configs.mae.digits import get_config
from diffssl_jax.methods.mae import masked_mse
from diffssl_jax.models.vit import ViT


def _images(batch=4, seed=0):
    return jax.random.uniform(jax.random.key(seed), (batch, 16, 16, 1), minval=-1.0, maxval=1.0)


def _perturb(params, scale=0.3):
    """Random parameters everywhere, so the zero-initialised head no longer outputs 0."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(9), len(leaves))
    noisy = [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(treedef, noisy)


def _recipe(**overrides):
    config = get_config("tiny")
    for key, value in overrides.items():
        group, name = key.split(".")
        setattr(config[group], name, value)
    return config, methods.make_recipe(config)


@pytest.fixture(scope="module")
def tiny():
    config, recipe = _recipe()
    params = _perturb(jax.jit(recipe.init)(jax.random.key(1)))
    return config, recipe, params


def test_masked_mse_counts_only_masked_pixels():
    x0 = jnp.zeros((4, 4, 1))
    mask = jnp.zeros((4, 4, 1)).at[:2].set(1.0)  # top half visible, bottom half masked
    wrong_where_visible = jnp.zeros((4, 4, 1)).at[:2].set(3.0)
    assert float(masked_mse(wrong_where_visible, x0, mask)) == 0.0
    assert float(masked_mse(wrong_where_visible, x0, mask, loss_on="all")) == 4.5
    wrong_where_masked = jnp.zeros((4, 4, 1)).at[2:].set(2.0)
    assert float(masked_mse(wrong_where_masked, x0, mask)) == 4.0  # mean over masked pixels
    assert float(masked_mse(wrong_where_masked, x0, jnp.ones((4, 4, 1)))) == 0.0  # none masked
    with pytest.raises(ValueError, match="loss_on"):
        masked_mse(x0, x0, mask, loss_on="visible")


def test_loss_is_finite_gradient_not_zero_and_ratio_is_exact(tiny):
    _, recipe, params = tiny
    grad_fn = jax.jit(jax.value_and_grad(recipe.loss, has_aux=True))
    (loss, metrics), grads = grad_fn(params, {"image": _images()}, jax.random.key(2))
    assert np.isfinite(loss) and loss > 0
    assert float(metrics["masked_fraction"]) == 0.75  # 12 of 16 patches, every example
    assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads)) > 0


def test_recipe_loss_ignores_visible_pixels_when_loss_on_masked(tiny):
    _, _, params = tiny
    batch, rng = {"image": _images()}, jax.random.key(3)
    _, nothing_masked = _recipe(**{"corruption.mask_ratio": 0.0})
    _, all_pixels = _recipe(**{"corruption.mask_ratio": 0.0, "objective.loss_on": "all"})
    # The perturbed network is a poor reconstructor, yet with no masked patch the loss is 0.
    assert float(jax.jit(nothing_masked.loss)(params, batch, rng)[0]) == 0.0
    assert float(jax.jit(all_pixels.loss)(params, batch, rng)[0]) > 0.01


def test_features_read_the_clean_image(tiny):
    config, recipe, params = tiny
    images = _images()
    features = jax.jit(recipe.features, static_argnames=("t", "blocks"))
    got = features(params, images, jax.random.key(4))
    assert {k: v.shape for k, v in got.items()} == {"encoder": (4, 4, 4, 16)}
    _, direct = ViT(**config.model).apply({"params": params}, images, jnp.zeros((4,)))
    np.testing.assert_allclose(got["encoder"], direct["encoder"], atol=1e-5)
    again = features(params, images, jax.random.key(5), t=0.5)  # rng and t play no part
    np.testing.assert_array_equal(again["encoder"], got["encoder"])
    chosen = features(params, images, jax.random.key(4), blocks=("block_1", "tokens"))
    assert {k: v.shape for k, v in chosen.items()} == {
        "block_1": (4, 4, 4, 16),
        "tokens": (4, 4, 4, 16),
    }
    with pytest.raises(ValueError, match="unknown feature block"):
        recipe.features(params, images, jax.random.key(4), blocks=("dec_0",))


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("objective.loss_on", "visible", "objective.loss_on"),
        ("model.time_conditioning", True, "time_conditioning"),
        ("corruption.patch_size", 2, "multiple of the ViT"),
        ("corruption.mask_ratio", 1.0, "mask_ratio"),
    ],
)
def test_bad_config_is_refused_by_name(key, value, message):
    with pytest.raises(ValueError, match=message):
        _recipe(**{key: value})
