"""l-DAE: a ViT denoises images whose noise lives in a patch-wise PCA latent (Chen et al. 2024).

The PCA basis is an input of the recipe (`inputs["pca_basis"]`), fitted ONCE per workdir by
`diffssl_jax.recipe_inputs` (`basis_from_patches` on `sample_patches` of
`corruption.pca_num_patches` random `corruption.patch_size` patches of the training images,
drawn with `config.seed`), saved in the workdir and read back by every later reader; the
recipe closes over it as a constant (never trained) and does no I/O.

Loss (Chen et al. 2024, Sec. 4.3-4.4 and Eq. 4; docs/methods.md C.4, C.6): t ~ U[0, 1)
stratified over the batch (continuous; the paper's s / 999 grid is its discretisation),
sigma_t = `sigma_max` t (sqrt(2) t), z_t = V_d (p(x0) - mu) + sigma_t eps with gamma_t = 1,
x_t = inverse PCA of z_t (the PCA residual is absent from the input), a DiT-style ViT with
adaLN time conditioning predicts x0, and
lambda_t sum_i w_i (V_full (p(x0) - p(x_pred)))_i^2 with w = 1 on the first d components and
`objective.residual_weight` (0.1) on the rest, lambda_t = 1 / (1 + sigma_t^2), mean over patches.

Features: the ViT at t = `eval.feature_t` (paper: step 10 of 1000, "clean input") on an input
chosen by `corruption.feature_input`. The paper does not say whether its "clean input" is
the image itself or the noise-free latent decoded by the inverse PCA (the network's training
input at sigma = 0, without the PCA residual). Default "projected" (the latter: no
train/test shift); "raw" feeds the image; "noisy" adds latent noise at t with the features'
`rng` (the paper's "noisy input" rows). Default block `encoder`; `tokens` and `block_i` too.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from diffssl_jax.corruptions import masking, pca_latent
from diffssl_jax.corruptions.times import stratified_times
from diffssl_jax.methods.mae import vit_features
from diffssl_jax.methods.recipe import Recipe, require_inputs
from diffssl_jax.models.vit import ViT

FEATURE_INPUTS = ("projected", "raw", "noisy")
DEFAULT_BLOCKS = ("encoder",)


def sample_patches(source, patch_size: int, num_patches: int, seed: int) -> np.ndarray:
    """Random flattened patches of a source's images, deterministic given `seed`.

    Draws min(len(source), 4 ceil(N / L)) distinct images, then N of their L patches each
    (without replacement; all of them if there are fewer). Images are read one at a time and
    only the chosen patches are kept, so memory is bounded by N patches plus one image.

    Args:
        source: random-access source of `{"image": [H, W, C]}` examples.
        patch_size: P.
        num_patches: N.
        seed: root of both draws.

    Returns:
        `[min(N, available), P P C]` float32 patches, image-major.
    """
    if num_patches < 2:
        raise ValueError(f"corruption.pca_num_patches must be >= 2, got {num_patches}")
    rng = np.random.default_rng(seed)
    per_image = masking.count_patches(np.shape(source[0]["image"]), patch_size)
    num_images = min(len(source), 4 * -(-num_patches // per_image))
    indices = np.sort(rng.choice(len(source), size=num_images, replace=False))
    total = num_images * per_image
    keep = np.sort(rng.choice(total, size=min(num_patches, total), replace=False))
    bounds = np.searchsorted(keep, np.arange(num_images + 1) * per_image)
    chosen = []
    for j, index in enumerate(indices):
        within = keep[bounds[j] : bounds[j + 1]] - j * per_image
        if within.size:
            image = np.asarray(source[int(index)]["image"], np.float32)
            chosen.append(np.asarray(pca_latent.extract_patches(image, patch_size))[within])
    return np.concatenate(chosen).astype(np.float32)


def basis_from_patches(config, patches) -> pca_latent.PCABasis:
    """The PCA basis of `config` fitted on `patches` `[N, P P C]` (`sample_patches`).

    Maths: Sigma = V^T diag(lambda) V over random training patches (Chen et al. 2024, Sec. 4.1).

    Raises:
        ValueError: if `corruption.latent_dim` is not in [1, P P C].
    """
    c = config.corruption
    basis = pca_latent.fit_pca_basis(jnp.asarray(patches), center=c.pca_center, whiten=c.pca_whiten)
    check_basis(config, basis)
    return basis


def check_basis(config, basis: pca_latent.PCABasis) -> None:
    """Raises ValueError unless `corruption.latent_dim` lies in [1, basis.dim]."""
    c = config.corruption
    if not 1 <= c.latent_dim <= basis.dim:
        raise ValueError(
            f"corruption.latent_dim must be in [1, {basis.dim}] for {c.patch_size}x"
            f"{c.patch_size} patches of {config.data.image_shape[-1]} channel(s), got "
            f"{c.latent_dim}"
        )


def _check_config(config) -> None:
    c = config.corruption
    if c.feature_input not in FEATURE_INPUTS:
        raise ValueError(
            f"corruption.feature_input must be one of {FEATURE_INPUTS}, got {c.feature_input!r}"
        )
    if not c.sigma_max > 0:
        raise ValueError(f"corruption.sigma_max must be positive, got {c.sigma_max}")
    if not 0.0 <= config.objective.residual_weight:
        raise ValueError(
            f"objective.residual_weight must be >= 0, got {config.objective.residual_weight}"
        )
    masking.count_patches(tuple(config.data.image_shape), c.patch_size)  # raises


def make_recipe(config, inputs=None) -> Recipe:
    """The l-DAE recipe for `config` (groups model, corruption, objective, data).

    Args:
        config: the run's config.
        inputs: `{"pca_basis": PCABasis}` (`recipe_inputs.prepare` / `load`).

    Raises:
        ValueError: on bad corruption/objective settings (named by key), or without a basis.
    """
    _check_config(config)
    c = config.corruption
    basis = require_inputs(inputs, ("pca_basis",), config.method)["pca_basis"]
    check_basis(config, basis)
    model = ViT(**config.model)
    image_shape = tuple(config.data.image_shape)
    num_patches = masking.count_patches(image_shape, c.patch_size)
    corrupt = functools.partial(
        pca_latent.pca_latent_corrupt,
        basis,
        patch_size=c.patch_size,
        latent_dim=c.latent_dim,
        sigma_max=c.sigma_max,
    )
    per_example = functools.partial(
        pca_latent.pca_weighted_loss,
        basis,
        patch_size=c.patch_size,
        latent_dim=c.latent_dim,
        residual_weight=config.objective.residual_weight,
    )

    def noise(rng, batch_size):
        return jax.random.normal(rng, (batch_size, num_patches, c.latent_dim), jnp.float32)

    def init(rng):
        x = jnp.zeros((1, *image_shape), jnp.float32)
        return model.init({"params": rng}, x, jnp.zeros((1,)))["params"]

    def loss(params, batch, rng):
        x0 = batch["image"]
        rng_time, rng_noise, rng_dropout = jax.random.split(rng, 3)
        t = stratified_times(rng_time, x0.shape[0], t_min=0.0)
        xt = jax.vmap(corrupt)(x0, t, noise(rng_noise, x0.shape[0]))
        x_pred, _ = model.apply(
            {"params": params}, xt, t, train=True, rngs={"dropout": rng_dropout}
        )
        sigma = pca_latent.pca_sigma(t, sigma_max=c.sigma_max)
        per = jax.vmap(lambda a, b, s: per_example(a, b, sigma=s))(x0, x_pred, sigma)
        return per.mean(), {}

    def features(params, images, rng, *, t=0.01, blocks=None):
        """ViT tokens at time `t` of `images` `[B, H, W, C]` (input: `feature_input`).

        Returns:
            `{name: [B, H/P, W/P, hidden]}`; default `encoder`.
        """
        batch_size = images.shape[0]
        if c.feature_input != "raw":
            t_batch = jnp.full((batch_size,), t, jnp.float32)
            eps = noise(rng, batch_size)
            if c.feature_input == "projected":
                eps = jnp.zeros_like(eps)
            images = jax.vmap(corrupt)(images, t_batch, eps)
        return vit_features(model, params, images, t, blocks, DEFAULT_BLOCKS)

    return Recipe(init=init, loss=loss, features=features, sample=None)
