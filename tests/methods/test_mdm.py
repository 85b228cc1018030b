"""The MDM recipe: times, masking at t, the objective, features, config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax import methods
from diffssl_jax.configs.mdm.digits import get_config
from diffssl_jax.corruptions import masking
from diffssl_jax.methods.mdm import reconstruction_loss, sample_steps
from diffssl_jax.models.unet import UNet
from diffssl_jax.objectives.ssim import ssim_loss


def _images(batch=4, seed=0):
    return jax.random.uniform(jax.random.key(seed), (batch, 16, 16, 1), minval=-1.0, maxval=1.0)


@pytest.fixture(scope="module")
def tiny():
    config = get_config("tiny")
    recipe = methods.make_recipe(config)
    params = jax.jit(recipe.init)(jax.random.key(1))
    return config, recipe, params


def _features(recipe):
    return jax.jit(recipe.features, static_argnames=("t", "blocks"))


def test_sample_steps_are_uniform_integer_steps_over_the_batch():
    t = np.asarray(jax.jit(sample_steps, static_argnums=(1, 2))(jax.random.key(0), 1000, 1000))
    steps = t * 1000
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)
    # Stratified: with B = T, every step in {0..999} exactly once.
    assert sorted(np.round(steps).astype(int)) == list(range(1000))
    np.testing.assert_array_equal(masking.discrete_step(t), np.round(steps).astype(int))
    fixed = sample_steps(jax.random.key(0), 5, 1000, fixed_t=0.75)
    np.testing.assert_array_equal(fixed, np.full(5, 0.75, np.float32))


@pytest.mark.parametrize("variant", ["", "mse", "fixed_t"])
def test_loss_is_finite_and_its_gradient_is_not_zero(tiny, variant):
    _, _, params = tiny
    config = get_config(",".join(["tiny", variant]) if variant else "tiny")
    recipe = methods.make_recipe(config)
    grad_fn = jax.jit(jax.value_and_grad(recipe.loss, has_aux=True))
    (loss, _), grads = grad_fn(params, {"image": _images()}, jax.random.key(2))
    assert np.isfinite(loss) and 0 < loss
    assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads)) > 0


def test_perfect_prediction_has_zero_loss_and_the_ssim_default_is_the_reference():
    x0 = _images(batch=1)[0]
    for loss in ("ssim", "mse"):
        assert float(reconstruction_loss(x0, x0, loss=loss)) == pytest.approx(0.0, abs=1e-6)
    x_masked, _ = masking.mask_corrupt(jax.random.key(3), x0, 0.5, patch_size=4)
    worse = reconstruction_loss(x_masked, x0, loss="ssim")
    assert float(worse) > 0.01
    np.testing.assert_allclose(worse, ssim_loss(x_masked, x0, data_range_convention="reference"))
    other = reconstruction_loss(x_masked, x0, loss="ssim", ssim_data_range="data_range")
    assert float(other) != pytest.approx(float(worse))
    with pytest.raises(ValueError, match="loss must be one of"):
        reconstruction_loss(x0, x0, loss="l1")


def test_features_at_t_zero_read_the_unmasked_image(tiny):
    config, recipe, params = tiny
    images = _images()
    got = _features(recipe)(params, images, jax.random.key(4), t=0.0)
    _, direct = UNet(**config.model).apply({"params": params}, images, jnp.zeros((4,)))
    assert set(got) == {"dec_0", "dec_1", "dec_2", "dec_3"}
    for name, value in got.items():
        np.testing.assert_allclose(value, direct[name], atol=1e-5)


def test_features_mask_the_image_at_ratio_t_with_the_given_key(tiny):
    config, recipe, params = tiny
    image, rng, t = _images(batch=1), jax.random.key(5), 0.5
    got = _features(recipe)(params, image, rng, t=t)
    # Example i of a batch is masked with split(rng, B)[i].
    xt, mask = masking.mask_corrupt(jax.random.split(rng, 1)[0], image[0], t, patch_size=4)
    assert float(1.0 - mask.mean()) == 0.5  # 8 of the 16 patches of 4x4
    _, direct = UNet(**config.model).apply({"params": params}, xt[None], jnp.full((1,), t))
    for name, value in got.items():
        np.testing.assert_allclose(value, direct[name], atol=1e-5)
    clean = _features(recipe)(params, image, rng, t=0.0)
    assert not np.allclose(got["dec_3"], clean["dec_3"], atol=1e-3)


def test_feature_names_shapes_and_selection_of_the_digits_unet():
    config = get_config()
    recipe = methods.make_recipe(config)
    params = jax.eval_shape(recipe.init, jax.random.key(0))

    def shapes(blocks):
        out = jax.eval_shape(
            lambda p, x: recipe.features(p, x, jax.random.key(0), t=0.05, blocks=blocks),
            params,
            jax.ShapeDtypeStruct((2, 16, 16, 1), jnp.float32),
        )
        return {k: v.shape for k, v in out.items()}

    assert shapes(None) == {
        "dec_1": (2, 8, 8, 64),
        "dec_2": (2, 8, 8, 64),
        "dec_3": (2, 16, 16, 64),
        "dec_4": (2, 16, 16, 32),
        "dec_5": (2, 16, 16, 32),
    }
    assert shapes(("dec_0", "mid")) == {"dec_0": (2, 4, 4, 64), "mid": (2, 4, 4, 64)}


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("objective.loss", "l1", "objective.loss"),
        ("objective.ssim_data_range", "full", "objective.ssim_data_range"),
        ("corruption.fixed_t", 1.5, "corruption.fixed_t"),
        ("corruption.patch_size", 5, "not divisible by patch_size=5"),
        ("corruption.mask_convention", "ceil", "Unknown masking convention"),
    ],
)
def test_bad_config_is_refused_by_name(key, value, message):
    config = get_config("tiny")
    group, name = key.split(".")
    setattr(config[group], name, value)
    with pytest.raises(ValueError, match=message):
        methods.make_recipe(config)


def test_unused_ddpm_keys_are_removed_so_overrides_fail():
    config = get_config()
    config.lock()
    with pytest.raises(AttributeError):
        config.objective.prediction = "x0"
    assert methods.make_recipe(config).sample is None
