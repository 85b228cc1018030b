"""Checks of an EM config that run before anything is written to the workdir.

`em.run` writes `config.json` and then lap 0; an option that can only fail later (a chunk
size of 0 in the E-step, an image shape the M-step cannot reshape the samples to, a network
that does not build) would leave a workdir whose corrected command is refused as a config
change. `check_em_config` raises every such error first, each saying which `--config.` key
to change.

Units: `sampling.sigma_*` are in EM (data) units, those of the operators and of the
denoiser the E-step calls; the network's training range `corruption.sigma_*` is in network
units = EM units / `em.data_scale`. `check_units` requires the two ranges to correspond
(`corruption.sigma_* * em.data_scale == sampling.sigma_*`, relative tolerance 1e-6), so the
E-step queries the network exactly over the noise levels it was trained on.
"""

import math

import jax

from diffssl_jax import parallel
from diffssl_jax.posterior.checks import check_cg_options
from diffssl_jax.posterior.mmps import check_safeguard
from diffssl_jax.sampling import samplers
from diffssl_jax.training import validation

_UNIT_RTOL = 1e-6


def _at_least(config, key: str, low, *, strict: bool = False, integer: bool = True) -> None:
    """Raises `validation.ConfigError` unless `config.<key>` is a number `>= low` (`> low`
    if `strict`)."""
    group, name = key.split(".")
    value = config[group][name]
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if is_number and integer and int(value) != value:
        is_number = False
    ok = is_number and (value > low if strict else value >= low)
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = f"> {low}" if strict else f">= {low}"
        raise validation.ConfigError(
            f"{key} must be {kind} {bound}, got {value!r}; set --config.{key}."
        )


def check_em_options(config) -> None:
    """Ranges of the `em` group, the units (`check_units`), then those of the M-step's
    training keys (`validation`). The task is checked by `experiments.make_experiment`."""
    _at_least(config, "em.num_laps", 0)
    _at_least(config, "em.num_observations", 1)
    _at_least(config, "em.chunk_size", 1)
    _at_least(config, "em.gaussian_iterations", 1)
    _at_least(config, "em.num_eval_samples", 1)
    _at_least(config, "em.data_seed", 0)
    _at_least(config, "em.data_scale", 0, strict=True, integer=False)
    _at_least(config, "em.sample_bound", 0, integer=False)  # 0: no bound
    if not isinstance(config.em.warm_start, bool):
        raise validation.ConfigError(
            f"em.warm_start must be True or False, got {config.em.warm_start!r}."
        )
    check_units(config)
    validation.check_config(config)  # seed, train.*, optim.*: what every M-step trains with


def check_units(config) -> None:
    """`corruption.sigma_* * em.data_scale == sampling.sigma_*` (module docstring).

    Skipped for a recipe without a `corruption.sigma_*` range.

    Raises:
      validation.ConfigError: naming both keys and the value to set.
    """
    scale = config.em.data_scale
    for name in ("sigma_min", "sigma_max"):
        if name not in config.corruption:
            continue
        network, em_units = config.corruption[name], config.sampling[name]
        want = network * scale
        if not math.isclose(em_units, want, rel_tol=_UNIT_RTOL):
            raise validation.ConfigError(
                f"sampling.{name}={em_units!r} (EM data units) does not match "
                f"corruption.{name}={network!r} (network units) times em.data_scale={scale!r}"
                f" = {want!r}; set --config.sampling.{name}={want!r} (or change "
                f"corruption.{name} to {em_units / scale!r})."
            )


def check_em_config(config, obs_shape: tuple, num_observations: int, recipe) -> None:
    """Every check of an EM run that can fail on its config, before the workdir is written.

    Args:
      config: the EM config.
      obs_shape: the shape of one latent `x` (what the operators act on).
      num_observations: how many observations there are (each M-step trains on as many).
      recipe: the prior's recipe; its network is built abstractly (`jax.eval_shape`).

    Raises:
      validation.ConfigError: (a ValueError) naming the key to change.
    """
    check_em_options(config)
    if recipe is not None and recipe.denoiser is None:
        raise validation.ConfigError(
            f"method={config.method!r} has no denoiser: EM's prior must be a recipe with one "
            "(set --config.method=edm)."
        )
    image_shape = tuple(config.data.image_shape)
    if math.prod(image_shape) != math.prod(obs_shape):
        raise validation.ConfigError(
            f"data.image_shape={image_shape} has {math.prod(image_shape)} entries but each "
            f"latent has shape {tuple(obs_shape)} ({math.prod(obs_shape)} entries); the "
            "M-step reshapes the posterior samples to data.image_shape: make them agree."
        )
    if config.train.batch_size > num_observations:
        raise validation.ConfigError(
            f"train.batch_size={config.train.batch_size} asks for more samples per M-step "
            f"batch than there are observations ({num_observations}); lower it or add "
            "observations."
        )
    parallel.check_batch_size(config.train.batch_size, parallel.make_mesh(config.mesh.num_devices))
    c = config.sampling
    try:
        p = config.posterior
        check_cg_options(p.cg_maxiter, 0.0, p.cg_max_residual_growth)
        check_safeguard(p.safeguard, p.trust_radius, p.symmetrise)
        samplers.make_sampler(c.sampler)
        samplers.check_sigmas(samplers.sigmas_from_config(c))
    except ValueError as error:  # one line naming the group, through the launchers
        raise validation.ConfigError(f"posterior.* or sampling.*: {error}") from error
    # The network of the M-step, built without computing anything (a bad model key fails here).
    jax.eval_shape(recipe.init, jax.random.key(0))
