"""Samplers over any denoiser: pure ``lax.scan`` loops on ONE example.

Every sampler has the signature ``sampler(denoiser, rng, x_T, sigmas) -> x0`` where
``denoiser(x, sigma) -> x0_hat`` follows ``sampling.denoisers``, ``x_T`` is a draw of
``N(mean, sigmas[0]^2 I)`` and ``sigmas`` is a strictly decreasing 1-D array of VE noise
levels ending in 0. The step from the smallest ``sigma > 0`` to 0 returns the denoiser's
``x0_hat`` there (no noise is added at the end). Batch with ``jax.vmap`` over
``(rng, x_T)``, or use ``sample``. ``ddpm_ancestral`` also takes a ``Guided`` denoiser, whose
guidance step it applies in its own variable after each step (DPS as published); the other
samplers refuse one.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

GRID_KINDS = ("karras", "loglinear")


def sigma_grid(kind, num_steps, sigma_min, sigma_max, rho=7.0):
    """A decreasing grid of ``num_steps + 1`` noise levels ending with 0.

    Maths: ``"karras"``: ``sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) -
    sigma_max^(1/rho)))^rho`` for ``i < N`` (Karras et al. 2022, Eq. 5); ``"loglinear"``:
    geometric from ``sigma_max`` to ``sigma_min`` (Song & Ermon 2019); then ``sigma_N = 0``.

    Args:
      kind: ``"karras"`` or ``"loglinear"``.
      num_steps: number of sampler steps ``N >= 1``.
      sigma_min: smallest positive level (the last denoiser call).
      sigma_max: largest level, the prior's standard deviation.
      rho: the Karras exponent (7 in the paper); unused by ``"loglinear"``.

    Returns:
      ``[num_steps + 1]`` noise levels, ``sigma_max`` first and ``0`` last.

    Raises:
      ValueError: for an unknown kind or invalid numbers.
    """
    if kind not in GRID_KINDS:
        raise ValueError(f"Unknown sigma grid kind {kind!r}; valid kinds are {list(GRID_KINDS)}.")
    if not (isinstance(num_steps, (int, np.integer)) and num_steps >= 1):
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}.")
    if not 0.0 < sigma_min < sigma_max:
        raise ValueError(
            f"sigma_grid needs 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, "
            f"sigma_max={sigma_max}."
        )
    if not rho > 0.0:
        raise ValueError(f"rho must be positive, got {rho}.")
    ramp = jnp.linspace(0.0, 1.0, num_steps)
    if kind == "karras":
        lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
        sigmas = (hi + ramp * (lo - hi)) ** rho
    else:
        sigmas = jnp.exp(np.log(sigma_max) + ramp * (np.log(sigma_min) - np.log(sigma_max)))
    # Pin the ends, which the power and exp round off by an ulp.
    sigmas = sigmas.at[-1].set(sigma_min).at[0].set(sigma_max)
    return jnp.append(sigmas, jnp.zeros((), sigmas.dtype))


def sigmas_from_config(sampling_config, *, num_steps=None, scale=1.0):
    """The noise levels of a config's ``sampling`` group: the one place a grid is built.

    ``sigma_grid(grid, num_steps, sigma_min, sigma_max)`` with the group's keys, in the units
    the denoiser is called in; ``scale`` multiplies every level (a denoiser called in units
    ``scale`` times those of the config, e.g. EM's data units against its network units).

    Args:
      sampling_config: a group with ``grid``, ``num_steps``, ``sigma_min``, ``sigma_max``.
      num_steps: overrides ``sampling_config.num_steps``.
      scale: a positive factor on every level.
    """
    c = sampling_config
    grid = sigma_grid(c.grid, num_steps or c.num_steps, c.sigma_min, c.sigma_max)
    return grid if scale == 1.0 else grid * scale


def describe_sigmas(sampling_config, *, num_steps=None, scale=1.0, unit="data") -> dict:
    """The grid of ``sigmas_from_config`` as a JSON record for a run's outputs."""
    c = sampling_config
    return {
        "grid": c.grid,
        "num_steps": int(num_steps or c.num_steps),
        "sigma_min": float(c.sigma_min) * scale,
        "sigma_max": float(c.sigma_max) * scale,
        "unit": unit,
    }


def check_sigmas(sigmas, dtype=None):
    """Validates a noise-level grid and returns it as an array of ``dtype``.

    The shape is always checked; the values (strictly decreasing, positive, ending with
    exactly 0) only when ``sigmas`` is concrete, i.e. not traced inside ``jit``.

    Raises:
      ValueError: naming what is wrong with the grid.
    """
    sigmas = jnp.asarray(sigmas, dtype=dtype)
    if sigmas.ndim != 1 or sigmas.shape[0] < 2:
        raise ValueError(
            f"sigmas must be a 1-D array of at least 2 noise levels ending with 0, got shape "
            f"{sigmas.shape}; build one with sigma_grid."
        )
    try:
        values = np.asarray(sigmas)
    except jax.errors.TracerArrayConversionError:
        return sigmas
    if values[-1] != 0.0:
        raise ValueError(f"sigmas must end with exactly 0, got last value {values[-1]}.")
    if not (np.all(np.isfinite(values)) and np.all(np.diff(values) < 0.0)):
        raise ValueError(
            f"sigmas must be finite and strictly decreasing, got {values}; "
            "sigma_grid(kind, num_steps, sigma_min, sigma_max) builds a valid grid."
        )
    return sigmas


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Guided:
    """A denoiser with a guidance step in the sampler's own variable (Chung et al. 2023, Alg. 1).

    ``guide(x_t, sigma_t) -> (x0_hat, shift)`` gives the denoiser's ``x0_hat`` and, from the
    same pass, the ``shift`` that the sampler subtracts from its next state:
    ``x_s = step(x_t, x0_hat) - shift`` (Alg. 1, line 7). The step's size is the guide's own,
    whatever ``sigma_s``: unlike a posterior denoiser's correction, it is not scaled by the
    sampler's coefficient on ``x0_hat``. Only ``ddpm_ancestral`` (Alg. 1's sampler) takes one.
    """

    guide: Callable


def _unguided(denoiser, sampler_name):
    """``denoiser``; a ``Guided`` one raises (only ``ddpm_ancestral`` applies its shift)."""
    if isinstance(denoiser, Guided):
        raise ValueError(
            f"{sampler_name} cannot apply a guided denoiser's step (DPS as published, Chung et "
            "al. 2023 Alg. 1, is defined on ancestral steps); use sampler='ddpm_ancestral'."
        )
    return denoiser


def _prepare(x_T, sigmas):
    x_T = jnp.asarray(x_T)
    return x_T, check_sigmas(sigmas, dtype=x_T.dtype)


def ddpm_ancestral_step(denoiser, x, sigma_t, sigma_s, key):
    """One step of ``ddpm_ancestral`` from ``x`` at ``sigma_t`` to ``sigma_s``.

    Maths: ``x_s = x0_hat + (s^2 / t^2)(x - x0_hat) + s sqrt(1 - s^2 / t^2) z - shift``,
    ``z = normal(key)``; ``x0_hat, shift = denoiser.guide(x, t)`` for a ``Guided`` denoiser,
    else ``x0_hat = denoiser(x, t)`` and ``shift = 0``. Returns ``x``'s dtype.
    """
    if isinstance(denoiser, Guided):
        x0_hat, shift = denoiser.guide(x, sigma_t)
    else:
        x0_hat, shift = denoiser(x, sigma_t), 0.0
    ratio2 = (sigma_s / sigma_t) ** 2
    z = jax.random.normal(key, x.shape, x.dtype)
    x_s = x0_hat + ratio2 * (x - x0_hat) + sigma_s * jnp.sqrt(1.0 - ratio2) * z
    return (x_s - shift).astype(x.dtype)


def ddpm_ancestral(denoiser, rng, x_T, sigmas):
    """Ancestral sampling of the VE process (DDPM, Ho et al. 2020, Eq. 6-7, in VE form).

    Maths: ``x_s = x0_hat + (s^2 / t^2)(x_t - x0_hat) + s sqrt(1 - s^2 / t^2) z``, the mean
    and variance of ``q(x_s | x_t, x0 = x0_hat)`` for ``x_sigma = x0 + sigma eps`` (with ``t``,
    ``s`` the current and next noise levels); minus a ``Guided`` denoiser's shift after every
    step, the last included (``ddpm_ancestral_step``).

    Args:
      denoiser: ``denoiser(x, sigma) -> x0_hat`` on one example, or a ``Guided`` one.
      rng: a JAX key (used for the per-step noise).
      x_T: ``[...]`` initial draw at ``sigmas[0]``.
      sigmas: ``[N + 1]`` strictly decreasing levels ending with 0.

    Returns:
      ``x0`` ``[...]``.
    """
    x_T, sigmas = _prepare(x_T, sigmas)
    keys = jax.random.split(rng, sigmas.shape[0] - 1)

    def step(x, inputs):
        return ddpm_ancestral_step(denoiser, x, *inputs), None

    x, _ = lax.scan(step, x_T, (sigmas[:-1], sigmas[1:], keys))
    return x


def ddim(denoiser, rng, x_T, sigmas):
    """Deterministic DDIM (eta = 0) in VE form (Song et al. 2021, DDIM, Eq. 12).

    Maths: ``x_s = x0_hat + (s / t)(x_t - x0_hat)``, an Euler step of the probability-flow
    ODE ``dx / dsigma = (x - D(x, sigma)) / sigma`` (Karras et al. 2022, Eq. 4).

    Args:
      denoiser: ``denoiser(x, sigma) -> x0_hat`` on one example.
      rng: unused (may be None); kept so that all samplers share one signature.
      x_T: ``[...]`` initial draw at ``sigmas[0]``.
      sigmas: ``[N + 1]`` strictly decreasing levels ending with 0.

    Returns:
      ``x0`` ``[...]``, a deterministic function of ``x_T``.
    """
    del rng
    denoiser = _unguided(denoiser, "ddim")
    x_T, sigmas = _prepare(x_T, sigmas)

    def step(x, inputs):
        sigma_t, sigma_s = inputs
        x0_hat = denoiser(x, sigma_t)
        return (x0_hat + (sigma_s / sigma_t) * (x - x0_hat)).astype(x_T.dtype), None

    x, _ = lax.scan(step, x_T, (sigmas[:-1], sigmas[1:]))
    return x


def edm_heun(denoiser, rng, x_T, sigmas):
    """Heun's second-order solver of the probability-flow ODE (Karras et al. 2022, Alg. 1).

    Maths: ``d_t = (x_t - D(x_t, t)) / t``, ``x' = x_t + (s - t) d_t``,
    ``x_s = x_t + (s - t)(d_t + d'_s) / 2``; the last step, to ``sigma = 0``, is Euler, which
    returns ``D(x, sigma_{N-1})`` exactly. Uses ``2N - 1`` denoiser calls; deterministic
    (``S_churn = 0``).

    Args:
      denoiser: ``denoiser(x, sigma) -> x0_hat`` on one example.
      rng: unused (may be None); kept so that all samplers share one signature.
      x_T: ``[...]`` initial draw at ``sigmas[0]``.
      sigmas: ``[N + 1]`` strictly decreasing levels ending with 0.

    Returns:
      ``x0`` ``[...]``, a deterministic function of ``x_T``.
    """
    del rng
    denoiser = _unguided(denoiser, "edm_heun")
    x_T, sigmas = _prepare(x_T, sigmas)

    def step(x, inputs):
        sigma_t, sigma_s = inputs
        d_t = (x - denoiser(x, sigma_t)) / sigma_t
        x_euler = x + (sigma_s - sigma_t) * d_t
        d_s = (x_euler - denoiser(x_euler, sigma_s)) / sigma_s
        return (x + (sigma_s - sigma_t) * 0.5 * (d_t + d_s)).astype(x_T.dtype), None

    x, _ = lax.scan(step, x_T, (sigmas[:-2], sigmas[1:-1]))
    return denoiser(x, sigmas[-2]).astype(x_T.dtype)


def euler_maruyama(denoiser, rng, x_T, sigmas):
    """Euler-Maruyama on the reverse VE SDE (Song et al. 2021, score SDE, Eq. 6 and 9).

    Maths: with the score ``(x0_hat - x_t) / t^2``,
    ``x_s = x_t + (t^2 - s^2) score + sqrt(t^2 - s^2) z``; the last step returns
    ``x0_hat`` at ``sigma_{N-1}`` (no final noise).

    Args:
      denoiser: ``denoiser(x, sigma) -> x0_hat`` on one example.
      rng: a JAX key (used for the per-step noise).
      x_T: ``[...]`` initial draw at ``sigmas[0]``.
      sigmas: ``[N + 1]`` strictly decreasing levels ending with 0.

    Returns:
      ``x0`` ``[...]``.
    """
    denoiser = _unguided(denoiser, "euler_maruyama")
    x_T, sigmas = _prepare(x_T, sigmas)
    keys = jax.random.split(rng, sigmas.shape[0] - 1)

    def step(x, inputs):
        sigma_t, sigma_s, key = inputs
        x0_hat = denoiser(x, sigma_t)
        dvar = sigma_t**2 - sigma_s**2
        z = jax.random.normal(key, x.shape, x.dtype)
        x = x + dvar * (x0_hat - x) / sigma_t**2 + jnp.sqrt(dvar) * z
        return x.astype(x_T.dtype), None

    x, _ = lax.scan(step, x_T, (sigmas[:-2], sigmas[1:-1], keys[:-1]))
    return denoiser(x, sigmas[-2]).astype(x_T.dtype)


_SAMPLERS = {
    "ddpm_ancestral": ddpm_ancestral,
    "ddim": ddim,
    "edm_heun": edm_heun,
    "euler_maruyama": euler_maruyama,
}


def make_sampler(name):
    """Returns the sampler called ``name`` (one of ``ddpm_ancestral``, ``ddim``,
    ``edm_heun``, ``euler_maruyama``).

    Raises:
      ValueError: for an unknown name.
    """
    if name not in _SAMPLERS:
        raise ValueError(f"Unknown sampler {name!r}; valid names are {sorted(_SAMPLERS)}.")
    return _SAMPLERS[name]


def _broadcasts_to(shape_a, shape):
    try:
        return np.broadcast_shapes(shape_a, shape) == shape
    except ValueError:
        return False


def sample(denoiser, rng, shape, sigmas, sampler, num, mean=None):
    """Draws ``num`` samples: ``x_T = mean + sigmas[0] z``, then the sampler, vmapped.

    Args:
      denoiser: ``denoiser(x, sigma) -> x0_hat`` on one example of ``shape`` (or a ``Guided``
        one, for ``ddpm_ancestral``).
      rng: a JAX key.
      shape: the shape of one example, e.g. ``(H, W, C)`` or ``(D,)``.
      sigmas: ``[N + 1]`` strictly decreasing levels ending with 0 (from ``sigma_grid``).
      sampler: a sampler function or its name.
      num: number of samples ``>= 1``.
      mean: optional prior mean, broadcastable to ``shape`` (e.g. the data mean).

    Returns:
      ``[num, *shape]`` samples, in the dtype of ``sigmas``.
    """
    if isinstance(sampler, str):
        sampler = make_sampler(sampler)
    if not (isinstance(num, (int, np.integer)) and num >= 1):
        raise ValueError(f"num must be an integer >= 1, got {num!r}.")
    shape = tuple(shape)
    sigmas = check_sigmas(sigmas)
    if mean is not None and not _broadcasts_to(jnp.shape(mean), shape):
        raise ValueError(
            f"mean of shape {jnp.shape(mean)} does not broadcast to the example shape {shape}."
        )
    rng_init, rng_run = jax.random.split(rng)
    x_T = sigmas[0] * jax.random.normal(rng_init, (num, *shape), sigmas.dtype)
    if mean is not None:
        x_T = x_T + mean
    keys = jax.random.split(rng_run, num)
    return jax.vmap(lambda key, x: sampler(denoiser, key, x, sigmas))(keys, x_T)
