"""DiTi: time-step-partitioned features on a frozen diffusion model (Yue et al., ICLR 2024).

An encoder z = E(x0) (`models/encoder.py`) and PDAE's shift branch G (`models/shift_unet.py`)
learn to correct a FROZEN ε-prediction DDPM (docs/methods.md B.2-B.4). With integer steps
n ~ U{0..T-1} (stratified over the batch), x_n = sqrt(ab_n) x0 + sqrt(1 - ab_n) eps and the
subset i(n) = floor(n k / T) (`diti_partition`), the loss (docs/methods.md B.3; PDAE, Zhang et al.
2022, Eq. 9 with DiTi's masked feature, Yue et al. 2024, Eq. 5) is

    L = mean_{B, H, W, C} w_n || eps - eps_hat ||^2,  eps_hat = eps_θ(x_n, n) + c_n G(x_n, z_n, n)
    c_n = -sqrt(alpha_n) (1 - ab_{n-1}) / sqrt(1 - ab_n),  alpha_n = ab_n / ab_{n-1}, ab_{-1} = 1
    w_n = SNR_n^gamma / (1 + SNR_n),  SNR_n = ab_n / (1 - ab_n),  gamma = 0.1,

with z_n = z * m_i(n) (mode "base"), sg(z) * r_i(n) + z * k_i(n) ("stop_grad"), or both
losses summed ("dual").

Discrete steps and the library's continuous prior: step n is the prior's time (n + 1) / T,
so ab_n = alpha_bar((n + 1) / T) of the prior's own schedule and ab_{-1} = alpha_bar(0) = 1.
For the linear VP schedule this is the continuous limit of DDPM's betas (schedules.py), not
DDPM's product; using the prior's schedule keeps eps_θ consistent with the ab_n of the loss.

Frozen prior: an input of the recipe (`inputs["prior"]`, a `Prior`: the EMA parameters and
architecture of the DDPM workdir `config.diti.prior_workdir`, read once and saved in the DiTi
workdir by `diffssl_jax.recipe_inputs`), closed over; it never enters the train state, so the
optimiser, the EMA and the checkpoints only hold the trainable `{"encoder", "shift"}` (the
strongest form of a parameter partition: the prior is bit-identical after training; tested).
Features: z itself, as a `[B, 1, 1, D]` map named "z" (pooling gives z); `feature_groups`
maps named subset ranges to their dims. `sample` is None: generation needs a feature;
`counterfactuals` generates with mixed features (`diti_counterfactuals`).
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffssl_jax.corruptions.schedules import make_schedule
from diffssl_jax.corruptions.times import stratified_times
from diffssl_jax.methods import diti_counterfactuals, diti_partition
from diffssl_jax.methods.recipe import Recipe, require_inputs
from diffssl_jax.models.encoder import Encoder
from diffssl_jax.models.shift_unet import ShiftDecoder, shift_decoder_for
from diffssl_jax.models.unet import UNet

MODES = ("base", "stop_grad", "dual")


class Prior(NamedTuple):
    """The frozen ε-prediction DDPM DiTi corrects (the recipe's input "prior").

    Attributes:
        model: the prior's `config.model` (`UNet` keyword arguments).
        schedule: the prior's `config.corruption.schedule` name.
        params: its EMA parameters.
    """

    model: dict
    schedule: str
    params: Any


class DiTiModel(NamedTuple):
    """Everything DiTi computes with, built once from a config (static tables as arrays).

    Attributes:
        encoder: the feature encoder E.
        shift: the shift branch G.
        prior: the frozen U-Net.
        prior_params: its parameters (never trained).
        partition: the static subset tables.
        alpha_bar: `[T]` ab_n; alpha_bar_prev: `[T]` ab_{n-1}.
        num_steps: T.
    """

    encoder: Encoder
    shift: ShiftDecoder
    prior: UNet
    prior_params: Any
    partition: diti_partition.Partition
    alpha_bar: jax.Array
    alpha_bar_prev: jax.Array
    num_steps: int


def step_alpha_bars(schedule, num_steps: int, dtype=jnp.float32):
    """(ab_n, ab_{n-1}) for n = 0..T-1: ab_n = alpha_bar((n + 1) / T), ab_{-1} = 1."""
    ab = schedule.alpha_bar(jnp.arange(1, num_steps + 1, dtype=dtype) / num_steps)
    return ab, jnp.concatenate([jnp.ones((1,), ab.dtype), ab[:-1]])


def shift_coefficient(alpha_bar, alpha_bar_prev):
    """c_n = -sqrt(ab_n / ab_{n-1}) (1 - ab_{n-1}) / sqrt(1 - ab_n) (docs/methods.md B.3; c_0 = 0).

    PDAE (Zhang et al. 2022, Eq. 9): the mean shift Sigma_n G written in eps units,
    -(sqrt(alpha_n) sqrt(1 - ab_n) / beta_n) * beta~_n with beta~_n = (1 - ab_{n-1}) beta_n /
    (1 - ab_n).
    """
    return -jnp.sqrt(alpha_bar / alpha_bar_prev) * (1.0 - alpha_bar_prev) / jnp.sqrt(1 - alpha_bar)


def loss_weight(alpha_bar, gamma: float = 0.1):
    """w_n = SNR^gamma / (1 + SNR), SNR = ab / (1 - ab) (PDAE's weighting, docs/methods.md B.3)."""
    snr = alpha_bar / (1.0 - alpha_bar)
    return snr**gamma / (1.0 + snr)


def mask_feature(z, partition, subset, mode: str):
    """The feature the decoder sees at subset i (per example): `[B, D]`.

    "base": z * m_i; "stop_grad": sg(z) * r_i + z * k_i (docs/methods.md B.3).
    """
    if mode == "base":
        return z * partition.masks[subset]
    if mode == "stop_grad":
        earlier, own = partition.earlier_masks[subset], partition.own_masks[subset]
        return jax.lax.stop_gradient(z) * earlier + z * own
    raise ValueError(f"mask_feature mode must be 'base' or 'stop_grad', got {mode!r}")


def prior_outputs(model: DiTiModel, xt, step):
    """eps_θ(x_n, n), the skips and the time embedding of the frozen prior, gradient-free."""
    t = (step.astype(jnp.float32) + 1.0) / model.num_steps
    eps, feats = model.prior.apply({"params": model.prior_params}, xt, t)
    hs = [feats[f"enc_{i}"] for i in range(sum(k.startswith("enc_") for k in feats))]
    return jax.lax.stop_gradient((eps, hs, feats["emb"]))


def guided_eps(model: DiTiModel, params, xt, step, z, *, coefficient: str = "train"):
    """eps_θ + c G(x_n, z * m_i(n), n) with c = c_n ("train") or -sqrt(1 - ab_n) ("sample").

    The "sample" coefficient is the reference's guided DDIM step (docs/methods.md B.6).

    Args:
        model: the DiTi model.
        params: `{"encoder", "shift"}`.
        xt: `[B, H, W, C]`; step: `[B]` int steps n; z: `[B, D]` unmasked features.
        coefficient: "train" or "sample".

    Returns:
        `[B, H, W, C]`.
    """
    ab = model.alpha_bar[step]
    if coefficient == "train":
        c = shift_coefficient(ab, model.alpha_bar_prev[step])
    elif coefficient == "sample":
        c = -jnp.sqrt(1.0 - ab)
    else:
        raise ValueError(f"coefficient must be 'train' or 'sample', got {coefficient!r}")
    eps, hs, emb = prior_outputs(model, xt, step)
    subset = diti_partition.step_subset(step, len(model.partition.end_dims), model.num_steps)
    g = model.shift.apply({"params": params["shift"]}, hs, emb, z * model.partition.masks[subset])
    return eps + c[:, None, None, None] * g


def _check_config(config) -> None:
    if config.diti.mode not in MODES:
        raise ValueError(f"diti.mode must be one of {MODES}, got {config.diti.mode!r}")
    if tuple(config.data.image_shape)[-1] < 1 or config.diti.num_subsets < 1:
        raise ValueError("need diti.num_subsets >= 1 and a channel axis in data.image_shape")


def make_model(config, prior: Prior) -> DiTiModel:
    """The encoder, shift branch and tables of `config` around the frozen `prior`."""
    _check_config(config)
    d = config.diti
    prior_params = jax.device_put(prior.params)
    schedule = make_schedule(prior.schedule)
    prior = UNet(**prior.model)
    encoder = Encoder(**config.model)
    partition = diti_partition.make_partition(
        d.partition, d.num_subsets, encoder.latent_dim, d.num_steps, d.stages, d.dims_per_stage
    )
    partition = diti_partition.Partition(*(jnp.asarray(a) for a in partition))
    ab, ab_prev = step_alpha_bars(schedule, d.num_steps)
    shift = shift_decoder_for(prior, out_channels=tuple(config.data.image_shape)[-1])
    return DiTiModel(encoder, shift, prior, prior_params, partition, ab, ab_prev, d.num_steps)


def sample_steps(rng, batch_size: int, num_steps: int):
    """n = floor(u T) with u stratified on [0, 1): uniform on {0..T-1}, even over the batch."""
    u = stratified_times(rng, batch_size, t_min=0.0)
    return jnp.clip(jnp.floor(u * num_steps), 0, num_steps - 1).astype(jnp.int32)


def diti_loss(model: DiTiModel, params, x0, step, eps, *, mode: str, gamma: float, rngs=None):
    """The loss of the module docstring on a batch, and the prior's own weighted loss (G = 0).

    Args:
        model, params: as `guided_eps`.
        x0: `[B, H, W, C]`; step: `[B]` int; eps: `[B, H, W, C]` noise.
        mode: "base", "stop_grad" or "dual".
        gamma: the weighting exponent.
        rngs: dropout keys of the shift branch (None: no dropout).

    Returns:
        (scalar loss, scalar prior loss).
    """
    ab = model.alpha_bar[step][:, None, None, None]
    xt = jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * eps
    eps_prior, hs, emb = prior_outputs(model, xt, step)
    z = model.encoder.apply({"params": params["encoder"]}, x0)
    subset = diti_partition.step_subset(step, len(model.partition.end_dims), model.num_steps)
    c = shift_coefficient(model.alpha_bar[step], model.alpha_bar_prev[step])[:, None, None, None]
    w = loss_weight(model.alpha_bar[step], gamma)

    def weighted(eps_hat):
        return jnp.mean(w * jnp.mean((eps - eps_hat) ** 2, axis=(1, 2, 3)))

    total = 0.0
    for part in ("base", "stop_grad") if mode == "dual" else (mode,):
        z_masked = mask_feature(z, model.partition, subset, part)
        g = model.shift.apply(
            {"params": params["shift"]}, hs, emb, z_masked, train=rngs is not None, rngs=rngs
        )
        total = total + weighted(eps_prior + c * g)
    return total, weighted(eps_prior)


def make_recipe(config, inputs=None) -> Recipe:
    """The DiTi recipe (groups model = encoder, diti, data) around `inputs["prior"]` (`Prior`)."""
    prior = require_inputs(inputs, ("prior",), config.method)["prior"]
    model = make_model(config, prior)
    image_shape = tuple(config.data.image_shape)
    mode, gamma = config.diti.mode, config.diti.gamma

    def init(rng):
        rng_encoder, rng_shift = jax.random.split(rng)
        x = jnp.zeros((1, *image_shape), jnp.float32)
        z = model.encoder.init({"params": rng_encoder}, x)["params"]
        _, hs, emb = prior_outputs(model, x, jnp.zeros((1,), jnp.int32))
        z_dim = jnp.zeros((1, model.encoder.latent_dim), jnp.float32)
        shift = model.shift.init({"params": rng_shift}, hs, emb, z_dim)["params"]
        return {"encoder": z, "shift": shift}

    def loss(params, batch, rng):
        x0 = batch["image"]
        rng_step, rng_noise, rng_dropout = jax.random.split(rng, 3)
        step = sample_steps(rng_step, x0.shape[0], model.num_steps)
        eps = jax.random.normal(rng_noise, x0.shape, x0.dtype)
        rngs = {"dropout": rng_dropout}
        value, prior_value = diti_loss(
            model, params, x0, step, eps, mode=mode, gamma=gamma, rngs=rngs
        )
        return value, {"prior_loss": prior_value}

    def features(params, images, rng, *, t=0.0, blocks=None):
        """`{"z": [B, 1, 1, D]}`: the encoder's feature of the clean images (t is unused)."""
        del rng, t
        if blocks and tuple(blocks) != ("z",):
            raise ValueError(f"unknown feature block(s) {list(blocks)}; DiTi has ['z']")
        z = model.encoder.apply({"params": params["encoder"]}, images)
        return {"z": z[:, None, None, :]}

    return Recipe(
        init=init,
        loss=loss,
        features=features,
        sample=None,
        feature_groups=functools.partial(subset_groups_dims, config),
        counterfactuals=functools.partial(counterfactuals, model),
    )


def subset_groups_dims(config, groups) -> dict[str, np.ndarray]:
    """`{name: dims}` of named subset ranges `{name: (first, last)}` under `config`'s partition."""
    d = config.diti
    partition = diti_partition.make_partition(
        d.partition, d.num_subsets, config.model.latent_dim, d.num_steps, d.stages, d.dims_per_stage
    )
    return {name: diti_partition.subset_dims(partition, *span) for name, span in groups.items()}


def sample_eps(model: DiTiModel, params, x, n, z):
    """The guided noise of the reference's sampler at the scalar step n (docs/methods.md B.6)."""
    step = jnp.full((x.shape[0],), n, jnp.int32)
    return guided_eps(model, params, x, step, z, coefficient="sample")


def counterfactuals(model: DiTiModel, params, x1, x2, groups, *, alphas, num_steps: int):
    """`{name: [P, A, H, W, C]}`: images `x1 [P, H, W, C]` regenerated with each group's dims
    of z (`groups {name: dims}`) moved towards `x2`'s by each weight of `alphas`, by guided
    DDIM with `num_steps` steps (`diti_counterfactuals`); `params` `{"encoder", "shift"}`."""
    run = diti_counterfactuals.make_counterfactual_fn(
        lambda p, x: model.encoder.apply({"params": p["encoder"]}, x),
        functools.partial(sample_eps, model),
        model.alpha_bar,
        diti_counterfactuals.step_grid(model.num_steps, num_steps),
    )
    alphas = jnp.asarray(alphas, jnp.float32)
    latent_dim = model.encoder.latent_dim
    out = {}
    for name, dims in groups.items():
        mask = jnp.zeros((latent_dim,), jnp.float32).at[np.asarray(dims)].set(1.0)
        out[name] = np.asarray(run(params, jnp.asarray(x1), jnp.asarray(x2), mask, alphas))
    return out
