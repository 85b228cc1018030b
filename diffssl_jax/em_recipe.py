"""The EM prior's recipe: an EDM-preconditioned VE denoiser (Rozet et al. 2024, E.1).

    D(x, sigma) = c_skip x + c_out net(c_in x, t(sigma)),
    c_skip = s_d^2 / (sigma^2 + s_d^2), c_out = sigma s_d / sqrt(sigma^2 + s_d^2),
    c_in = 1 / sqrt(sigma^2 + s_d^2)                       (Karras et al. 2022, Table 1)

trained with lambda(sigma) ||D(x0 + sigma eps, sigma) - x0||^2, lambda = 1/sigma^2 + 1/s_d^2
(Karras et al. 2022, Eq. 8; with s_d = 1 these are E.1's c's and lambda = 1/sigma^2 + 1), on
the log-linear VE process sigma(t) = exp(log a (1 - t) + log b t) with t ~ Beta(3, 3) (the toy)
or stratified uniform times. The network sees t(sigma), an affine function of log sigma, so
this is the reference's embedding of log sigma. The network is `models.mlp.MLP` for flat
vectors (`config.model_name = "mlp"`) or `models.unet.UNet` for images.

This is a recipe like those in `methods/` (init, loss, sample) trained by the one loop;
`make_denoiser(config, params)` gives the denoiser contract that EM consumes.
"""

import flax.struct
import jax
import jax.numpy as jnp

from diffssl_jax.corruptions.schedules import LogLinearVE
from diffssl_jax.corruptions.times import stratified_times
from diffssl_jax.methods.recipe import Recipe
from diffssl_jax.models.mlp import MLP
from diffssl_jax.models.unet import UNet
from diffssl_jax.sampling import samplers

TIME_DISTRIBUTIONS = ("beta33", "uniform")


def make_network(config):
    """The network of `config.model_name` built from `config.model`."""
    if config.model_name == "mlp":
        return MLP(**config.model)
    if config.model_name == "unet":
        return UNet(**config.model)
    raise ValueError(f"model_name must be 'mlp' or 'unet', got {config.model_name!r}.")


def make_schedule(config) -> LogLinearVE:
    """The VE schedule of `config.corruption` (sigma_min, sigma_max in network units)."""
    return LogLinearVE(config.corruption.sigma_min, config.corruption.sigma_max)


@flax.struct.dataclass
class EDMDenoiser:
    """`(x, sigma) -> x0_hat` on one example, E.1's preconditioning around a network.

    Attributes:
      params: network parameters (pytree leaves).
      apply_fn: `(params, x [1, ...], t [1]) -> output [1, ...]` (static).
      schedule: the `LogLinearVE` giving `t(sigma)` (static fields only).
      sigma_data: `s_d` of the module docstring (static).
    """

    params: object
    apply_fn: object = flax.struct.field(pytree_node=False)
    schedule: LogLinearVE = flax.struct.field(pytree_node=False)
    sigma_data: float = flax.struct.field(pytree_node=False, default=0.5)

    def __call__(self, x, sigma):
        sigma = jnp.asarray(sigma, x.dtype)
        if jnp.ndim(sigma) != 0:
            raise ValueError(f"sigma must be a scalar (one example), got {jnp.shape(sigma)}.")
        skip, out, inp = preconditioning(sigma, self.sigma_data)
        t = self.schedule.t_from_ve_sigma(sigma)
        net = self.apply_fn(self.params, (inp * x)[None].astype(jnp.float32), t[None])[0]
        return (skip * x + out * net.astype(x.dtype)).astype(x.dtype)


def preconditioning(sigma, sigma_data):
    """`(c_skip, c_out, c_in)` of Karras et al. 2022, Table 1 (E.1 with s_d = 1)."""
    total = sigma**2 + sigma_data**2
    return sigma_data**2 / total, sigma * sigma_data / jnp.sqrt(total), 1.0 / jnp.sqrt(total)


def _apply_fn(network):
    return lambda params, x, t: network.apply({"params": params}, x, t)[0]


def make_denoiser(config, params) -> EDMDenoiser:
    """The denoiser contract of trained `params` (network units; see `em.ScaledDenoiser`)."""
    return EDMDenoiser(
        params, _apply_fn(make_network(config)), make_schedule(config), config.objective.sigma_data
    )


def sample_times(rng, num: int, distribution: str):
    """Training times `[num]`: Beta(3, 3) (E.4's toy) or stratified uniform."""
    if distribution == "beta33":
        return jax.random.beta(rng, 3.0, 3.0, (num,))
    if distribution == "uniform":
        return stratified_times(rng, num)
    raise ValueError(f"time_distribution must be one of {TIME_DISTRIBUTIONS}, got {distribution!r}")


def make_recipe(config) -> Recipe:
    """The EDM recipe for `config` (groups model, corruption, objective, sampling, data)."""
    network = make_network(config)
    schedule = make_schedule(config)
    sigma_data = config.objective.sigma_data
    distribution = config.objective.time_distribution
    image_shape = tuple(config.data.image_shape)

    def init(rng, batch):
        del batch
        x = jnp.zeros((1, *image_shape), jnp.float32)
        return network.init({"params": rng}, x, jnp.zeros((1,)))["params"]

    def loss(params, batch, rng):
        x0 = batch["image"]
        rng_time, rng_noise = jax.random.split(rng)
        sigma = schedule.sigma(sample_times(rng_time, x0.shape[0], distribution))
        eps = jax.random.normal(rng_noise, x0.shape, x0.dtype)
        denoiser = EDMDenoiser(params, _apply_fn(network), schedule, sigma_data)
        x0_hat = jax.vmap(denoiser)(x0 + sigma.reshape(-1, *[1] * len(image_shape)) * eps, sigma)
        weight = 1.0 / sigma**2 + 1.0 / sigma_data**2
        per_example = weight * jnp.mean(jnp.square(x0_hat - x0).reshape(len(x0), -1), axis=1)
        return per_example.mean(), {}

    def features(params, images, rng, *, t=0.05, blocks=None):
        del rng, blocks
        _, feats = network.apply({"params": params}, images, jnp.full((len(images),), t))
        return feats

    def sample(params, rng, num):
        sigmas = samplers.sigma_grid(
            config.sampling.grid,
            config.sampling.num_steps,
            config.corruption.sigma_min,
            config.corruption.sigma_max,
        )
        sampler = samplers.make_sampler(config.sampling.sampler)
        x = samplers.sample(make_denoiser(config, params), rng, image_shape, sigmas, sampler, num)
        return jnp.clip(x, -1.0, 1.0)

    return Recipe(init=init, loss=loss, features=features, sample=sample)
