"""The l-DAE recipe: the fitted PCA basis, the loss, features per input mode, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax import methods, recipe_inputs
from diffssl_jax.configs.ldae.digits import get_config
from diffssl_jax.corruptions import pca_latent, pca_noise
from diffssl_jax.data import DigitsSource
from diffssl_jax.methods import ldae
from diffssl_jax.models.vit import ViT


def _config(**overrides):
    config = get_config("tiny")
    for key, value in overrides.items():
        group, name = key.split(".")
        setattr(config[group], name, value)
    return config


@pytest.fixture(scope="module")
def basis():
    return recipe_inputs.compute(_config())["pca_basis"]


@pytest.fixture(scope="module")
def tiny(basis):
    config = _config()
    recipe = ldae.make_recipe(config, {"pca_basis": basis})
    params = jax.jit(recipe.init)(jax.random.key(1))
    images = jnp.asarray(DigitsSource("test").images[:4])
    return config, recipe, params, images


def test_sample_patches_are_real_patches_and_deterministic():
    source = DigitsSource("train")
    patches = ldae.sample_patches(source, 4, 300, seed=0)
    assert patches.shape == (300, 16) and patches.dtype == np.float32
    np.testing.assert_array_equal(patches, ldae.sample_patches(source, 4, 300, seed=0))
    assert not np.array_equal(patches, ldae.sample_patches(source, 4, 300, seed=1))
    every = np.asarray(pca_latent.extract_patches(source.images, 4)).reshape(-1, 16)
    rows = {row.tobytes() for row in every}
    assert all(row.tobytes() in rows for row in patches)
    assert len(ldae.sample_patches(source, 4, 10**6, seed=0)) == len(every)  # all available
    with pytest.raises(ValueError, match="pca_num_patches"):
        ldae.sample_patches(source, 4, 1, seed=0)


def test_fitted_basis_is_orthonormal_and_deterministic_given_the_seed(basis):
    v = np.asarray(basis.components)
    assert v.shape == (16, 16)
    np.testing.assert_allclose(v @ v.T, np.eye(16), atol=1e-5)
    assert np.all(np.diff(np.asarray(basis.eigenvalues)) <= 1e-7)
    again = recipe_inputs.compute(_config())["pca_basis"]
    np.testing.assert_array_equal(again.components, basis.components)
    np.testing.assert_array_equal(again.mean, basis.mean)
    other = recipe_inputs.compute(_seeded(1))["pca_basis"]
    assert not np.array_equal(other.mean, basis.mean)


def _seeded(seed):
    config = _config()
    config.seed = seed
    return config


def test_loss_is_finite_and_its_gradient_is_not_zero(tiny):
    _, recipe, params, images = tiny
    grad_fn = jax.jit(jax.value_and_grad(recipe.loss, has_aux=True))
    (loss, _), grads = grad_fn(params, {"image": images}, jax.random.key(2))
    assert np.isfinite(loss) and loss > 0
    assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads)) > 0


def test_loss_of_the_zero_initialised_network_matches_the_objective(tiny, basis):
    # At initialisation the ViT outputs 0, so the loss is the mean over examples of
    # pca_weighted_loss(x0, 0, gamma_t = 1, sigma_t) at the recipe's times; it is at most the
    # t = 0 value.
    config, recipe, params, images = tiny
    loss, _ = jax.jit(recipe.loss)(params, {"image": images}, jax.random.key(3))
    zero = jnp.zeros_like(images[0])
    c = config.corruption

    def objective(x0, sigma):
        return pca_noise.pca_weighted_loss(
            basis,
            x0,
            zero,
            gamma=jnp.float32(1.0),
            sigma=sigma,
            patch_size=c.patch_size,
            latent_dim=c.latent_dim,
        )

    at_zero = jnp.mean(jax.vmap(objective)(images, jnp.zeros(4)))
    at_max = jnp.mean(jax.vmap(objective)(images, jnp.full(4, c.sigma_max)))
    assert float(at_max) < float(loss) < float(at_zero)


def test_features_default_names_shapes_and_input_modes(tiny, basis):
    config, recipe, params, images = tiny
    model, t = ViT(**config.model), 0.01
    features = jax.jit(recipe.features, static_argnames=("t", "blocks"))
    got = features(params, images, jax.random.key(4), t=t)
    assert {k: v.shape for k, v in got.items()} == {"encoder": (4, 4, 4, 16)}
    projected = pca_latent.merge_patches(
        pca_latent.decode(
            basis, pca_latent.encode(basis, pca_latent.extract_patches(images, 4), 4)
        ),
        4,
        (16, 16, 1),
    )
    _, direct = model.apply({"params": params}, projected, jnp.full((4,), t))
    np.testing.assert_allclose(got["encoder"], direct["encoder"], atol=1e-5)
    raw = ldae.make_recipe(_config(**{"corruption.feature_input": "raw"}), {"pca_basis": basis})
    _, direct_raw = model.apply({"params": params}, images, jnp.full((4,), t))
    np.testing.assert_allclose(
        raw.features(params, images, jax.random.key(4), t=t)["encoder"],
        direct_raw["encoder"],
        atol=1e-5,
    )
    noisy = ldae.make_recipe(_config(**{"corruption.feature_input": "noisy"}), {"pca_basis": basis})
    noisy_features = jax.jit(noisy.features, static_argnames=("t", "blocks"))
    a = noisy_features(params, images, jax.random.key(5), t=0.5)["encoder"]
    b = noisy_features(params, images, jax.random.key(6), t=0.5)["encoder"]
    assert not np.allclose(a, b, atol=1e-4)
    chosen = features(params, images, jax.random.key(4), t=t, blocks=("block_0", "tokens"))
    assert set(chosen) == {"block_0", "tokens"}


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("corruption.latent_dim", 17, "latent_dim must be in"),
        ("corruption.feature_input", "clean", "feature_input"),
        ("corruption.sigma_max", 0.0, "sigma_max"),
        ("corruption.patch_size", 3, "not divisible by patch_size=3"),
    ],
)
def test_bad_config_is_refused_by_name(key, value, message):
    config = _config(**{key: value})
    with pytest.raises(ValueError, match=message):
        methods.make_recipe(config, recipe_inputs.compute(config))


def test_recipe_without_its_basis_names_how_to_prepare_it():
    with pytest.raises(ValueError, match=r"needs the recipe input\(s\) \['pca_basis'\].*prepare"):
        methods.make_recipe(_config())
