"""MAE: a ViT reconstructs the image from a fixed-ratio patch-masked input (He et al. 2022).

Corruption: `masking.fixed_ratio_corrupt` masks `corruption.mask_ratio` (MAE: 0.75) of the
`corruption.patch_size` patches, a new random set per example and step, filling them with
`corruption.fill`. Loss (He et al. 2022, Sec. 3, "Reconstruction target"): the mean squared
error between the reconstruction and the image, over the pixels of the MASKED patches only
(`objective.loss_on = "masked"`, MAE's default) or over every pixel (`"all"`).

Simplification, stated honestly: the reference MAE encoder DROPS the masked tokens and only
its light decoder sees mask tokens. Here one `models.vit.ViT` (`time_conditioning=False`)
sees the whole masked image, masked patches holding the fill value, like MDM's MAE baseline
and like the l-DAE recipe's network. This keeps one ViT class for MAE and l-DAE and one
masking module for MAE and MDM; the price is the encoder's compute on the masked 75% of
tokens (irrelevant at digits and CIFAR scale) and a train/test gap of its own kind (the
encoder sees fill-valued patches in training, none at feature time), instead of MAE's
(mask tokens only in the decoder). `norm_pix_loss` (per-patch normalised targets) is not
implemented.

Features: the ViT on the CLEAN image (no masking, as MAE's linear probe): `encoder` (the
token grid after `model.encoder_depth` blocks, `[B, H/P, W/P, hidden]`, the default),
`tokens`, and `block_i`. `t` is accepted for the common interface and ignored.
"""

import functools

import jax
import jax.numpy as jnp

from diffssl_jax.corruptions import masking
from diffssl_jax.methods.ddpm import select_features
from diffssl_jax.methods.recipe import Recipe
from diffssl_jax.models.vit import ViT

LOSS_ON = ("masked", "all")
DEFAULT_BLOCKS = ("encoder",)


def _check_config(config) -> None:
    """Raises ValueError on MAE settings that cannot run, naming the key."""
    c, model = config.corruption, config.model
    if config.objective.loss_on not in LOSS_ON:
        raise ValueError(
            f"objective.loss_on must be one of {LOSS_ON}, got {config.objective.loss_on!r}"
        )
    if model.time_conditioning:
        raise ValueError("MAE's ViT has no time input: set model.time_conditioning = False")
    if c.patch_size % model.patch_size:
        raise ValueError(
            f"corruption.patch_size={c.patch_size} must be a multiple of the ViT's "
            f"model.patch_size={model.patch_size}, so that a mask covers whole tokens"
        )
    if not 0.0 <= c.mask_ratio < 1.0:
        raise ValueError(f"corruption.mask_ratio must be in [0, 1), got {c.mask_ratio}")
    masking.count_patches(tuple(config.data.image_shape), c.patch_size)  # raises if indivisible


def masked_mse(x_pred, x0, mask, *, loss_on: str = "masked"):
    """MAE's reconstruction loss of one example.

    Maths: sum_pixels (1 - m) ||x_pred - x0||^2 / (C sum_pixels (1 - m)) for "masked"
    (He et al. 2022, Sec. 3), mean ||x_pred - x0||^2 for "all".

    Args:
        x_pred: reconstruction `[H, W, C]`.
        x0: clean image `[H, W, C]`.
        mask: `[H, W, 1]`, 1 on visible (kept) pixels and 0 on masked ones.
        loss_on: "masked" or "all".

    Returns:
        Scalar loss; 0 for "masked" when nothing is masked.
    """
    if loss_on not in LOSS_ON:
        raise ValueError(f"loss_on must be one of {LOSS_ON}, got {loss_on!r}")
    err = (x_pred - x0) ** 2
    if loss_on == "all":
        return jnp.mean(err)
    weight = jnp.broadcast_to(1.0 - mask, err.shape)
    return jnp.sum(weight * err) / jnp.maximum(jnp.sum(weight), 1.0)


def vit_features(model, params, images, t, blocks, default):
    """`select_features` of the ViT run on `images` `[B, H, W, C]` at time `t` (a float)."""
    t_batch = jnp.full((images.shape[0],), t, jnp.float32)
    _, feats = model.apply({"params": params}, images, t_batch)
    return select_features(feats, blocks, default)


def make_recipe(config, inputs=None) -> Recipe:
    """The MAE recipe for `config` (groups model, corruption, objective, data); no inputs.

    Raises:
        ValueError: on an unknown `loss_on`, a time-conditioned model, a mask ratio outside
            [0, 1), or patch sizes that do not fit the image or each other.
    """
    del inputs  # MAE needs none
    _check_config(config)
    model = ViT(**config.model)
    c = config.corruption
    image_shape = tuple(config.data.image_shape)
    corrupt = functools.partial(
        masking.fixed_ratio_corrupt, ratio=c.mask_ratio, patch_size=c.patch_size, fill=c.fill
    )
    per_example = functools.partial(masked_mse, loss_on=config.objective.loss_on)

    def init(rng):
        x = jnp.zeros((1, *image_shape), jnp.float32)
        return model.init({"params": rng}, x, jnp.zeros((1,)))["params"]

    def loss(params, batch, rng):
        x0 = batch["image"]
        rng_mask, rng_dropout = jax.random.split(rng)
        keys = jax.random.split(rng_mask, x0.shape[0])
        x_masked, mask = jax.vmap(corrupt)(keys, x0)
        t = jnp.zeros((x0.shape[0],), jnp.float32)  # validated by the ViT, otherwise unused
        x_pred, _ = model.apply(
            {"params": params}, x_masked, t, train=True, rngs={"dropout": rng_dropout}
        )
        per = jax.vmap(per_example)(x_pred, x0, mask)
        return per.mean(), {"masked_fraction": 1.0 - mask.mean()}

    def features(params, images, rng, *, t=0.0, blocks=None):
        """ViT tokens of the clean `images` `[B, H, W, C]` (`rng` and `t` unused).

        Returns:
            `{name: [B, H/P, W/P, hidden]}`; default `encoder`.
        """
        del rng
        return vit_features(model, params, images, t, blocks, DEFAULT_BLOCKS)

    return Recipe(init=init, loss=loss, features=features, sample=None)
