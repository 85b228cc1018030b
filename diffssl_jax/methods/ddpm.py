"""DDPM / DDAE: Gaussian denoising with a U-Net (Ho et al. 2020; Xiang et al. 2023, DDAE).

The baseline of every comparison and the frozen prior of DiTi. Loss (Ho et al. 2020,
Eq. 14, generalised to eps/x0/v targets and weightings): E_{t, x0, eps} w(t) ||f(x_t, t) -
target||^2 with x_t = alpha(t) x0 + sigma(t) eps. Features: the U-Net's decoder-block
activations on a noised image at time t (Baranchuk et al. 2022); by default the blocks at the
two finest output resolutions (`finest_decoder_blocks`), the same rule as MDM so that the two
U-Net recipes are compared on the same blocks.
"""

import functools

import jax
import jax.numpy as jnp

from diffssl_jax.corruptions import gaussian
from diffssl_jax.corruptions.schedules import make_schedule
from diffssl_jax.corruptions.times import stratified_times
from diffssl_jax.methods.recipe import Recipe
from diffssl_jax.models.unet import UNet, unet_decoder_channels
from diffssl_jax.objectives.denoising import denoising_loss
from diffssl_jax.sampling import denoisers, samplers


def make_recipe(config, inputs=None) -> Recipe:
    """The DDPM recipe for `config` (groups model, corruption, objective, sampling, data).

    DDPM needs no `inputs`. Its `denoiser(params)` is the U-Net in VP form
    (`sampling.denoisers.make_vp_denoiser`): the network estimates E[x0 | x_t] of Gaussian
    noise, so it is a denoiser of the VE contract.
    """
    del inputs
    model = UNet(**config.model)
    schedule = make_schedule(config.corruption.schedule)
    kind, weighting = config.objective.prediction, config.objective.weighting
    image_shape = tuple(config.data.image_shape)
    default_blocks = finest_decoder_blocks(model)

    def init(rng):
        x = jnp.zeros((1, *image_shape), jnp.float32)
        return model.init({"params": rng}, x, jnp.zeros((1,)))["params"]

    def denoiser(params) -> denoisers.VPDenoiser:
        """The denoiser contract `(x, sigma) -> x0_hat` of the U-Net with `params`."""
        return denoisers.make_vp_denoiser(_apply_fn(model), params, schedule, kind)

    def loss(params, batch, rng):
        x0 = batch["image"]
        rng_time, rng_noise, rng_dropout = jax.random.split(rng, 3)
        t = stratified_times(rng_time, x0.shape[0])
        eps = jax.random.normal(rng_noise, x0.shape, x0.dtype)
        xt = _corrupt(schedule, x0, t, eps)
        prediction, _ = model.apply(
            {"params": params}, xt, t, train=True, rngs={"dropout": rng_dropout}
        )
        per_example = jax.vmap(functools.partial(denoising_loss, kind=kind, weighting=weighting))(
            prediction, x0, eps, schedule.alpha(t), schedule.sigma(t)
        )
        return per_example.mean(), {}

    def features(params, images, rng, *, t=0.05, blocks=None):
        """Decoder activations at time `t` of the noised `images` (ddpm-segmentation)."""
        t_batch = jnp.full((images.shape[0],), t, images.dtype)
        eps = jax.random.normal(rng, images.shape, images.dtype)
        xt = _corrupt(schedule, images, t_batch, eps)
        _, feats = model.apply({"params": params}, xt, t_batch)
        return select_features(feats, blocks, default_blocks)

    def sample(params, rng, num):
        sigmas = samplers.sigmas_from_config(config.sampling)
        sampler = samplers.make_sampler(config.sampling.sampler)
        images = samplers.sample(denoiser(params), rng, image_shape, sigmas, sampler, num)
        return jnp.clip(images, -1.0, 1.0)

    return Recipe(init=init, loss=loss, features=features, sample=sample, denoiser=denoiser)


def finest_decoder_blocks(model: UNet, num_resolutions: int = 2) -> tuple[str, ...]:
    """The decoder blocks whose output lies at the `num_resolutions` finest resolutions.

    The default feature blocks of the U-Net recipes. MDM's medical choice (blocks 8-12 of the
    256-px U-Net, docs/methods.md A.4) reads the mid-to-fine decoder and skips the coarse blocks;
    on the small digit U-Nets this rule keeps the full- and half-resolution blocks (for the
    digits config, channel_mult (1, 2, 2) and one residual block: `dec_1 ... dec_5`, dropping
    the 4x4 `dec_0`). Paper-scale configs name their blocks in `config.eval.feature_blocks`.

    Args:
        model: the U-Net.
        num_resolutions: how many of the finest output resolutions to keep.

    Returns:
        Block names `dec_i` in decoder order.
    """
    blocks = unet_decoder_channels(model.model_channels, model.channel_mult, model.num_res_blocks)
    factors = sorted({factor for _, factor in blocks})[:num_resolutions]
    return tuple(f"dec_{i}" for i, (_, factor) in enumerate(blocks) if factor in factors)


def select_features(feats: dict, blocks, default: tuple[str, ...]) -> dict:
    """`{name: feats[name]}` for the requested `blocks` (None or empty: `default`), in order.

    Raises:
        ValueError: for a block name the network does not produce.
    """
    names = tuple(blocks) if blocks else default
    unknown = [name for name in names if name not in feats]
    if unknown:
        raise ValueError(f"unknown feature block(s) {unknown}; this network has {sorted(feats)}")
    return {name: feats[name] for name in names}


def _apply_fn(model):
    """`(params, x [B, ...], t [B]) -> prediction`: the network seen by the denoiser wrapper."""
    return lambda params, x, t: model.apply({"params": params}, x, t)[0]


def _corrupt(schedule, x0, t, eps):
    """`gaussian.corrupt` over a batch: x_t = alpha(t) x0 + sigma(t) eps, per example."""
    return jax.vmap(functools.partial(gaussian.corrupt, schedule))(x0, t, eps)
