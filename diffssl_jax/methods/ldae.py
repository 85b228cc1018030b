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

The roadmap's earlier stages (docs/methods.md C.4, C.5; formulas in `corruptions/pca_noise.py`)
are config keys whose defaults are the final l-DAE above:
- `corruption.latent_dim`: d, any of 1..D (d = D: the full basis, no PCA residual);
- `corruption.tokenizer`: "pca" or "pixel" (the identity basis: noise added in pixel space;
  needs d = D and no whitening);
- `corruption.gamma_scaling`: False (gamma_t = 1, sigma_t = sigma_max t) or True
  (gamma_t^2 = 1 - t, sigma_t^2 = t; lambda_t = gamma_t^2);
- `corruption.noise_levels`: "schedule" (t ~ U[0, 1)) or "single" (every example at the time
  whose sigma_t is `corruption.single_sigma`, the paper's 1/3);
- `objective.target`: "image" (Eq. 4 above) or "eps" (the latent noise read from the
  output, mean over patches of ||eps - V_d p(x_pred)||^2, unweighted).
The network always reads the image made by the inverse projection and writes an image, so the
paper's stages "remove input scaling", "image input via inverse PCA" and "image output via
inverse PCA" are one configuration here (`gamma_scaling=False`, target image,
`residual_weight=0`).

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

from diffssl_jax.corruptions import masking, pca_latent, pca_noise
from diffssl_jax.corruptions.times import stratified_times
from diffssl_jax.methods.mae import vit_features
from diffssl_jax.methods.recipe import Recipe, require_inputs
from diffssl_jax.models.vit import ViT

FEATURE_INPUTS = ("projected", "raw", "noisy")
TOKENIZERS = ("pca", "pixel")
NOISE_LEVELS = ("schedule", "single")
TARGETS = ("image", "eps")
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


def pixel_basis(config) -> pca_latent.PCABasis:
    """The pixel tokenizer's basis of `config`: `pca_latent.identity_basis(P P C)`."""
    return pca_latent.identity_basis(patch_dim(config))


def patch_dim(config) -> int:
    """D = P P C of `config`'s patches."""
    return config.corruption.patch_size**2 * int(tuple(config.data.image_shape)[-1])


def check_basis(config, basis: pca_latent.PCABasis) -> None:
    """Raises ValueError unless `basis` fits `config`: latent_dim in [1, basis.dim], and for
    the pixel tokenizer the identity basis."""
    c = config.corruption
    if not 1 <= c.latent_dim <= basis.dim:
        raise ValueError(
            f"corruption.latent_dim must be in [1, {basis.dim}] for {c.patch_size}x"
            f"{c.patch_size} patches of {config.data.image_shape[-1]} channel(s), got "
            f"{c.latent_dim}"
        )
    pixel = np.array_equal(np.asarray(basis.components), np.eye(basis.dim)) and not np.any(
        np.asarray(basis.mean)
    )
    if c.tokenizer == "pixel" and not pixel:
        raise ValueError(
            "corruption.tokenizer='pixel' needs the identity basis, but this basis is a fitted "
            "PCA (a workdir prepared with tokenizer='pca'); use a new workdir"
        )


def _choice(key: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{key} must be one of {allowed}, got {value!r}")


def check_config(config) -> None:
    """Raises ValueError, naming the key, for any l-DAE setting out of range (before work).

    Checks the roadmap keys of the module docstring, the feature input, sigma_max,
    residual_weight, latent_dim against D = P P C, and that P divides the image.
    """
    c, o = config.corruption, config.objective
    _choice("corruption.feature_input", c.feature_input, FEATURE_INPUTS)
    _choice("corruption.tokenizer", c.tokenizer, TOKENIZERS)
    _choice("corruption.noise_levels", c.noise_levels, NOISE_LEVELS)
    _choice("objective.target", o.target, TARGETS)
    if not isinstance(c.gamma_scaling, bool):
        raise ValueError(f"corruption.gamma_scaling must be True or False, got {c.gamma_scaling!r}")
    if not c.sigma_max > 0:
        raise ValueError(f"corruption.sigma_max must be positive, got {c.sigma_max}")
    if not 0.0 <= o.residual_weight:
        raise ValueError(f"objective.residual_weight must be >= 0, got {o.residual_weight}")
    masking.count_patches(tuple(config.data.image_shape), c.patch_size)  # raises
    dim = patch_dim(config)
    if not isinstance(c.latent_dim, int) or not 1 <= c.latent_dim <= dim:
        raise ValueError(
            f"corruption.latent_dim must be in [1, {dim}] for {c.patch_size}x{c.patch_size} "
            f"patches of {config.data.image_shape[-1]} channel(s), got {c.latent_dim!r}"
        )
    if c.tokenizer == "pixel" and (c.latent_dim != dim or c.pca_whiten):
        raise ValueError(
            f"corruption.tokenizer='pixel' puts the noise on every pixel: it needs "
            f"corruption.latent_dim = D = {dim} and pca_whiten=False, got latent_dim="
            f"{c.latent_dim}, pca_whiten={c.pca_whiten}"
        )
    if c.noise_levels == "single":
        try:
            pca_noise.time_of_sigma(
                c.single_sigma, gamma_scaling=c.gamma_scaling, sigma_max=c.sigma_max
            )
        except ValueError as error:
            raise ValueError(f"corruption.single_sigma: {error}") from None


def training_times(config):
    """`(rng, batch_size) -> t [B]`: stratified U[0, 1), or the single level's time."""
    c = config.corruption
    if c.noise_levels == "schedule":
        return lambda rng, batch_size: stratified_times(rng, batch_size, t_min=0.0)
    t = pca_noise.time_of_sigma(
        c.single_sigma, gamma_scaling=c.gamma_scaling, sigma_max=c.sigma_max
    )
    return lambda rng, batch_size: jnp.full((batch_size,), t, jnp.float32)


def make_recipe(config, inputs=None) -> Recipe:
    """The l-DAE recipe for `config` (groups model, corruption, objective, data).

    Args:
        config: the run's config.
        inputs: `{"pca_basis": PCABasis}` (`recipe_inputs.prepare` / `load`).

    Raises:
        ValueError: on bad corruption/objective settings (named by key), or without a basis.
    """
    check_config(config)
    c = config.corruption
    basis = require_inputs(inputs, ("pca_basis",), config.method)["pca_basis"]
    check_basis(config, basis)
    model = ViT(**config.model)
    image_shape = tuple(config.data.image_shape)
    num_patches = masking.count_patches(image_shape, c.patch_size)
    geometry = {"patch_size": c.patch_size, "latent_dim": c.latent_dim}
    corrupt = functools.partial(pca_noise.pca_latent_corrupt, basis, **geometry)
    scales = functools.partial(
        pca_noise.noise_scales, gamma_scaling=c.gamma_scaling, sigma_max=c.sigma_max
    )
    times = training_times(config)
    if config.objective.target == "image":
        image_loss = functools.partial(
            pca_noise.pca_weighted_loss,
            basis,
            residual_weight=config.objective.residual_weight,
            **geometry,
        )

        def per_example(x0, eps, out, gamma, sigma):
            return image_loss(x0, out, gamma=gamma, sigma=sigma)
    else:
        eps_loss = functools.partial(pca_noise.pca_eps_loss, basis, **geometry)

        def per_example(x0, eps, out, gamma, sigma):
            return eps_loss(eps, out)

    def noise(rng, batch_size):
        return jax.random.normal(rng, (batch_size, num_patches, c.latent_dim), jnp.float32)

    def corrupt_batch(x0, t, eps):
        gamma, sigma = scales(t)
        gamma = gamma if c.gamma_scaling else None  # gamma_t = 1: skip the product (exact)
        xt = jax.vmap(lambda x, e, g, s: corrupt(x, e, gamma=g, sigma=s))(x0, eps, gamma, sigma)
        return xt, gamma, sigma

    def init(rng):
        x = jnp.zeros((1, *image_shape), jnp.float32)
        return model.init({"params": rng}, x, jnp.zeros((1,)))["params"]

    def loss(params, batch, rng):
        x0 = batch["image"]
        rng_time, rng_noise, rng_dropout = jax.random.split(rng, 3)
        t = times(rng_time, x0.shape[0])
        eps = noise(rng_noise, x0.shape[0])
        xt, gamma, sigma = corrupt_batch(x0, t, eps)
        out, _ = model.apply({"params": params}, xt, t, train=True, rngs={"dropout": rng_dropout})
        return jax.vmap(per_example)(x0, eps, out, gamma, sigma).mean(), {}

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
            images = corrupt_batch(images, t_batch, eps)[0]
        return vit_features(model, params, images, t, blocks, DEFAULT_BLOCKS)

    return Recipe(init=init, loss=loss, features=features, sample=None)
