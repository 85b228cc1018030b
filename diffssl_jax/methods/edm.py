"""The EDM-preconditioned VE prior (Rozet et al. 2024, E.1): EM's prior, `config.method = "edm"`.

    D(x, sigma) = c_skip x + c_out net(c_in x, t(sigma))        (`sampling.denoisers.EDMDenoiser`)

trained with lambda(sigma) ||D(x0 + sigma eps, sigma) - x0||^2, lambda = 1/sigma^2 + 1/s_d^2
(Karras et al. 2022, Eq. 8; with s_d = 1 these are E.1's c's and lambda = 1/sigma^2 + 1), on
the log-linear VE process sigma(t) = exp(log a (1 - t) + log b t) with t ~ Beta(3, 3) (the toy)
or stratified uniform times. The network sees t(sigma), an affine function of log sigma, so
this is the reference's embedding of log sigma. The network is `models.mlp.MLP` for flat
vectors (`config.model_name = "mlp"`) or `models.unet.UNet` for images.

Units: the network works in network units, `corruption.sigma_min/max` (a, b) among them.
`sampling.sigma_*` are in data units = network units * `em.data_scale` (1 without an `em`
group; `em.options` checks that the two ranges correspond), so `sample` draws on
`samplers.sigmas_from_config(config.sampling, scale=1 / data_scale)`.
"""

import jax
import jax.numpy as jnp

from diffssl_jax.corruptions.schedules import LogLinearVE
from diffssl_jax.corruptions.times import stratified_times
from diffssl_jax.methods.recipe import Recipe
from diffssl_jax.models.mlp import MLP
from diffssl_jax.models.unet import UNet
from diffssl_jax.sampling import samplers
from diffssl_jax.sampling.denoisers import EDMDenoiser

TIME_DISTRIBUTIONS = ("beta33", "uniform")
NETWORKS = {"mlp": MLP, "unet": UNet}


def make_network(config):
    """The network of `config.model_name` built from `config.model`."""
    if config.model_name not in NETWORKS:
        raise ValueError(f"model_name must be 'mlp' or 'unet', got {config.model_name!r}.")
    return NETWORKS[config.model_name](**config.model)


def make_schedule(corruption_config) -> LogLinearVE:
    """The VE schedule of a `corruption` group (sigma_min, sigma_max in network units)."""
    return LogLinearVE(corruption_config.sigma_min, corruption_config.sigma_max)


def data_scale(config) -> float:
    """Data units per network unit: `config.em.data_scale`, or 1 without an `em` group."""
    return float(config.em.data_scale) if "em" in config else 1.0


def _apply_fn(network):
    return lambda params, x, t: network.apply({"params": params}, x, t)[0]


def sample_times(rng, num: int, distribution: str):
    """Training times `[num]`: Beta(3, 3) (E.4's toy) or stratified uniform."""
    if distribution == "beta33":
        return jax.random.beta(rng, 3.0, 3.0, (num,))
    if distribution == "uniform":
        return stratified_times(rng, num)
    raise ValueError(f"time_distribution must be one of {TIME_DISTRIBUTIONS}, got {distribution!r}")


def make_recipe(config, inputs=None) -> Recipe:
    """The EDM recipe for `config` (groups model, corruption, objective, sampling, data).

    EDM needs no `inputs`. Its `denoiser(params)` is the `EDMDenoiser` of `params`, in
    network units (EM wraps it in `ScaledDenoiser` for its data units).
    """
    del inputs
    network = make_network(config)
    schedule = make_schedule(config.corruption)
    sigma_data = config.objective.sigma_data
    distribution = config.objective.time_distribution
    image_shape = tuple(config.data.image_shape)
    # One function for every `denoiser(params)`: it is a static field of the denoiser, so
    # equal statics let EM's laps (new params each) reuse one compiled E-step sampler.
    apply_fn = _apply_fn(network)

    def denoiser(params) -> EDMDenoiser:
        """The denoiser contract of `params`, in network units."""
        return EDMDenoiser(params, apply_fn, schedule, sigma_data)

    def init(rng):
        x = jnp.zeros((1, *image_shape), jnp.float32)
        return network.init({"params": rng}, x, jnp.zeros((1,)))["params"]

    def loss(params, batch, rng):
        x0 = batch["image"]
        rng_time, rng_noise = jax.random.split(rng)
        sigma = schedule.sigma(sample_times(rng_time, x0.shape[0], distribution))
        eps = jax.random.normal(rng_noise, x0.shape, x0.dtype)
        x0_hat = jax.vmap(denoiser(params))(
            x0 + sigma.reshape(-1, *[1] * len(image_shape)) * eps, sigma
        )
        weight = 1.0 / sigma**2 + 1.0 / sigma_data**2
        per_example = weight * jnp.mean(jnp.square(x0_hat - x0).reshape(len(x0), -1), axis=1)
        return per_example.mean(), {}

    def features(params, images, rng, *, t=0.05, blocks=None):
        del rng, blocks
        _, feats = network.apply({"params": params}, images, jnp.full((len(images),), t))
        return feats

    def sample(params, rng, num):
        sigmas = samplers.sigmas_from_config(config.sampling, scale=1.0 / data_scale(config))
        sampler = samplers.make_sampler(config.sampling.sampler)
        x = samplers.sample(denoiser(params), rng, image_shape, sigmas, sampler, num)
        return jnp.clip(x, -1.0, 1.0)

    return Recipe(init=init, loss=loss, features=features, sample=sample, denoiser=denoiser)
