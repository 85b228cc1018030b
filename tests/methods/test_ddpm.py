"""The DDPM recipe: loss and gradient, default feature blocks, names, shapes and selection."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax import methods
from diffssl_jax.configs.ddpm.digits import get_config
from diffssl_jax.corruptions import gaussian
from diffssl_jax.corruptions.schedules import make_schedule
from diffssl_jax.methods.ddpm import finest_decoder_blocks, select_features
from diffssl_jax.models.unet import UNet, unet_decoder_channels


@pytest.fixture(scope="module")
def tiny():
    config = get_config("tiny")
    recipe = methods.make_recipe(config)
    images = jax.random.uniform(jax.random.key(0), (3, 16, 16, 1), minval=-1.0, maxval=1.0)
    params = jax.jit(recipe.init)(jax.random.key(1))
    return config, recipe, params, images


def test_loss_is_finite_and_its_gradient_is_not_zero(tiny):
    _, recipe, params, images = tiny
    grad_fn = jax.jit(jax.value_and_grad(recipe.loss, has_aux=True))
    (loss, _), grads = grad_fn(params, {"image": images}, jax.random.key(2))
    assert np.isfinite(loss) and loss > 0
    assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads)) > 0


def test_default_blocks_are_the_two_finest_resolutions():
    # digits: mult (1, 2, 2), one res block -> factors 4, 2, 2, 1, 1, 1; the 4x4 dec_0 is dropped.
    digits = UNet(**get_config().model)
    assert finest_decoder_blocks(digits) == tuple(f"dec_{i}" for i in range(1, 6))
    # The 256-px U-Net of docs/methods.md A.4: 18 blocks; factors 2 (blocks 11-13) and 1 (14-17).
    mdm = UNet(model_channels=192, channel_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2)
    assert finest_decoder_blocks(mdm) == tuple(f"dec_{i}" for i in range(11, 18))
    factors = [f for _, f in unet_decoder_channels(192, (1, 1, 2, 2, 4, 4), 2)]
    assert [factors[i] for i in range(11, 18)] == [2, 2, 2, 1, 1, 1, 1] and factors[10] == 4


def test_feature_names_shapes_and_selection(tiny):
    config, recipe, params, images = tiny
    features = jax.jit(recipe.features, static_argnames=("t", "blocks"))
    default = features(params, images, jax.random.key(3), t=0.05)
    # tiny: mult (1, 2) -> dec_0 at 8x8 (16 ch), dec_1 upsampled to 16x16, dec_2, dec_3 (8 ch).
    assert {k: v.shape for k, v in default.items()} == {
        "dec_0": (3, 8, 8, 16),
        "dec_1": (3, 16, 16, 16),
        "dec_2": (3, 16, 16, 8),
        "dec_3": (3, 16, 16, 8),
    }
    chosen = features(params, images, jax.random.key(3), t=0.05, blocks=("dec_3", "dec_0"))
    assert set(chosen) == {"dec_3", "dec_0"}  # jit returns dicts with sorted keys
    eager = recipe.features(
        params, images[:1], jax.random.key(3), t=0.05, blocks=["dec_3", "dec_0"]
    )
    assert list(eager) == ["dec_3", "dec_0"]  # without jit, in the requested order
    np.testing.assert_array_equal(chosen["dec_0"], default["dec_0"])
    with pytest.raises(ValueError, match="unknown feature block.*dec_9"):
        recipe.features(params, images, jax.random.key(3), t=0.05, blocks=("dec_9",))


def test_features_read_the_noised_image_at_t(tiny):
    config, recipe, params, images = tiny
    rng, t = jax.random.key(4), 0.3
    got = jax.jit(recipe.features, static_argnames=("t", "blocks"))(params, images, rng, t=t)
    schedule = make_schedule(config.corruption.schedule)
    eps = jax.random.normal(rng, images.shape)
    t_batch = jnp.full((3,), t)
    xt = jax.vmap(functools.partial(gaussian.corrupt, schedule))(images, t_batch, eps)
    _, direct = UNet(**config.model).apply({"params": params}, xt, t_batch)
    for name, value in got.items():
        np.testing.assert_allclose(value, direct[name], atol=1e-5)
    other = recipe.features(params, images, jax.random.key(5), t=t)
    assert not np.allclose(other["dec_3"], got["dec_3"])


def test_select_features_uses_the_default_for_none_and_empty():
    feats = {"a": 1, "b": 2, "c": 3}
    assert select_features(feats, None, ("b",)) == {"b": 2}
    assert select_features(feats, (), ("b", "a")) == {"b": 2, "a": 1}
    assert list(select_features(feats, ["c", "a"], ("b",))) == ["c", "a"]
