"""The l-DAE roadmap through the recipe: each variant's loss against a direct evaluation, the
pixel tokenizer's basis, and refusals (docs/methods.md C.4, C.5; configs/ldae/digits.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax import recipe_inputs
from diffssl_jax.configs.ldae import digits
from diffssl_jax.corruptions import pca_latent
from diffssl_jax.corruptions.times import stratified_times
from diffssl_jax.data import DigitsSource
from diffssl_jax.methods import ldae
from diffssl_jax.models.vit import ViT

VARIANTS = ("ldae", "eps", "clean_latent", "no_scaling", "single", "eps,single", "pixel", "d16")


@pytest.fixture(scope="module")
def pca_basis():
    return recipe_inputs.compute(digits.get_config("tiny"))["pca_basis"]


def _basis_of(config, pca_basis):
    return (
        recipe_inputs.compute(config)["pca_basis"]
        if config.corruption.tokenizer == "pixel"
        else pca_basis
    )


def _zero_output_loss(config, basis, images, rng):
    """The recipe's loss when the network outputs 0, evaluated directly in numpy."""
    c, o = config.corruption, config.objective
    batch, num_patches = len(images), 16
    rng_time, rng_noise, _ = jax.random.split(rng, 3)
    if c.noise_levels == "single":
        t = np.full(batch, c.single_sigma**2 if c.gamma_scaling else c.single_sigma / c.sigma_max)
    else:
        t = np.asarray(stratified_times(rng_time, batch, t_min=0.0), np.float64)
    gamma2, sigma2 = (1.0 - t, t) if c.gamma_scaling else (np.ones(batch), (c.sigma_max * t) ** 2)
    if o.target == "eps":
        eps = np.asarray(jax.random.normal(rng_noise, (batch, num_patches, c.latent_dim)))
        return np.mean(np.sum(eps.astype(np.float64) ** 2, axis=-1))
    v = np.asarray(basis.components, np.float64)
    w = np.where(np.arange(v.shape[0]) < c.latent_dim, 1.0, o.residual_weight)
    per_image = []
    for image in np.asarray(images, np.float64):
        patches = [
            image[i : i + 4, j : j + 4].reshape(-1)
            for i in range(0, 16, 4)
            for j in range(0, 16, 4)
        ]
        per_image.append(np.mean([np.sum(w * (v @ p) ** 2) for p in patches]))
    return np.mean(np.asarray(per_image) * gamma2 / (gamma2 + sigma2))


@pytest.mark.parametrize("variant", VARIANTS)
def test_loss_of_each_variant_matches_its_formula(variant, pca_basis):
    # The ViT outputs 0 at initialisation, so the loss is the target's error against 0.
    config = digits.get_config(f"tiny,{variant}")
    basis = _basis_of(config, pca_basis)
    recipe = ldae.make_recipe(config, {"pca_basis": basis})
    params = recipe.init(jax.random.key(0))
    images = jnp.asarray(DigitsSource("test").images[:8])
    rng = jax.random.key(3)
    loss, _ = jax.jit(recipe.loss)(params, {"image": images}, rng)
    np.testing.assert_allclose(loss, _zero_output_loss(config, basis, images, rng), rtol=2e-5)


def test_variants_set_the_roadmap_keys():
    get = digits.get_config
    assert get("eps").corruption.gamma_scaling and get("eps").objective.target == "eps"
    latent = get("clean_latent")
    assert latent.corruption.gamma_scaling and latent.objective.residual_weight == 0.0
    assert latent.objective.target == "image"
    plain = get("no_scaling")
    assert not plain.corruption.gamma_scaling and plain.objective.residual_weight == 0.0
    assert get("ldae").to_dict() == get(None).to_dict() == get("d4").to_dict()
    single = get("eps,single")
    assert single.corruption.noise_levels == "single"
    assert single.eval.feature_t == pytest.approx(1 / 9)  # sigma^2 = t with gamma scaling
    assert get("single").eval.feature_t == pytest.approx((1 / 3) / np.sqrt(2))
    assert get("d16").corruption.latent_dim == 16 and get("d1").corruption.latent_dim == 1
    for bad, message in (
        ("eps,no_scaling", "at most one roadmap stage"),
        ("pixel,d8", "pixel"),
        ("d1,d2", "at most one latent dim"),
        ("stage9", "unknown config variant"),
    ):
        with pytest.raises(ValueError, match=message):
            get(bad)


def test_pixel_tokenizer_basis_is_the_identity_and_its_features_read_the_image(pca_basis):
    config = digits.get_config("tiny,pixel")
    basis = recipe_inputs.compute(config)["pca_basis"]
    np.testing.assert_array_equal(basis.components, np.eye(16))
    np.testing.assert_array_equal(basis.mean, 0.0)
    recipe = ldae.make_recipe(config, {"pca_basis": basis})
    params = recipe.init(jax.random.key(1))
    images = jnp.asarray(DigitsSource("test").images[:4])
    got = recipe.features(params, images, jax.random.key(2), t=0.01)["encoder"]
    _, direct = ViT(**config.model).apply({"params": params}, images, jnp.full((4,), 0.01))
    np.testing.assert_allclose(got, direct["encoder"], atol=1e-5)
    with pytest.raises(ValueError, match="needs the identity basis"):
        ldae.make_recipe(config, {"pca_basis": pca_basis})
    assert isinstance(basis, pca_latent.PCABasis)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("corruption.tokenizer", "vqgan", "corruption.tokenizer must be one of"),
        ("corruption.noise_levels", "two", "corruption.noise_levels must be one of"),
        ("objective.target", "v", "objective.target must be one of"),
        ("corruption.latent_dim", 0, "latent_dim must be in"),
        ("corruption.single_sigma", 2.0, "corruption.single_sigma"),
    ],
)
def test_bad_roadmap_values_are_refused_before_any_work(key, value, message, monkeypatch):
    config = digits.get_config("tiny,single")
    group, name = key.split(".")
    setattr(config[group], name, value)

    def no_work(*args, **kwargs):
        raise AssertionError("patches were sampled before the config was checked")

    monkeypatch.setattr(ldae, "sample_patches", no_work)
    with pytest.raises(ValueError, match=message):
        recipe_inputs.compute(config)


def test_pixel_tokenizer_needs_d_equal_D_and_no_whitening():
    for key, value in (("latent_dim", 4), ("pca_whiten", True)):
        config = digits.get_config("tiny,pixel")
        setattr(config.corruption, key, value)
        with pytest.raises(ValueError, match="tokenizer='pixel'"):
            ldae.check_config(config)
