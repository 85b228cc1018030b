"""The posterior methods by name: the one switch from a method's name to its denoiser.

Every method wraps a prior denoiser `D(x, sigma)` into a posterior denoiser for one
observation `y = A x0 + n` (docs/methods.md E.2, E.5): MMPS (Rozet et al. 2024), DPS (Chung
et al. 2023), PiGDM (Song et al. 2023), TMPD (Boys et al. 2023) and DiffPIR (Zhu et al. 2023).
`posterior_method(name, **options)` checks the name and the options at once and returns a
`PosteriorMethod`, a hashable value `(denoiser, A, y, noise_var) -> posterior denoiser`:
equal methods compare equal, so `sample_posterior` reuses its compiled program across calls.
Two DPS: `dps`, a posterior denoiser whose guidance a VE step scales by `sigma_t^2 - sigma_s^2`
(`DPSDenoiser`), and `dps_published`, Chung et al.'s Alg. 1, a `samplers.Guided` whose step
`ddpm_ancestral` applies in its own variable, the same size on any grid (`DPSGuide`; other
samplers refuse it).
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from diffssl_jax.posterior.baselines import diffpir, dps, dps_published, pigdm, tmpd
from diffssl_jax.posterior.checks import keyword_defaults
from diffssl_jax.posterior.mmps import mmps

_WRAPPERS = {
    "mmps": mmps,
    "dps": dps,
    "pigdm": pigdm,
    "tmpd": tmpd,
    "diffpir": diffpir,
    "dps_published": dps_published,
}
METHODS = tuple(_WRAPPERS)


def method_options(name: str) -> dict[str, Any]:
    """`{option: default}` of the method `name` (its keyword-only arguments but `x_like`)."""
    if name not in _WRAPPERS:
        raise ValueError(f"unknown posterior method {name!r}; valid methods are {list(METHODS)}.")
    skip = ("denoiser", "A", "y", "noise_var", "x_like")
    return keyword_defaults(_WRAPPERS[name], skip)


@dataclasses.dataclass(frozen=True)
class PosteriorMethod:
    """A posterior method and its options: `(denoiser, A, y, noise_var) -> posterior denoiser`
    (a `samplers.Guided` for `dps_published`).

    Attributes:
      name: one of `METHODS`.
      options: `((option, value), ...)`, sorted, only the method's own options.
    """

    name: str
    options: tuple = ()

    def __call__(self, denoiser, A, y, noise_var, *, x_like=None):
        return _WRAPPERS[self.name](denoiser, A, y, noise_var, x_like=x_like, **dict(self.options))


def posterior_method(name: str, **options) -> PosteriorMethod:
    """The method `name` with `options` (each method reads only its own; see `method_options`).

    Raises:
      ValueError: an unknown method or an option the method does not take (before any work).
    """
    valid = method_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"{name} takes the options {sorted(valid)}, not {unknown}.")
    return PosteriorMethod(name, tuple(sorted(options.items())))


def make_posterior(name: str, denoiser, problem, *, index: int = 0, **options):
    """The posterior denoiser of observation `index` of `problem` under the prior `denoiser`.

    Every construction-time check runs now (the operator against `y` and `problem.shape`, the
    noise variance, the method's options).
    """
    A, y, noise_var = problem.observation(index)
    x_like = jax.ShapeDtypeStruct(tuple(problem.shape), jnp.finfo(y.dtype).dtype)
    return posterior_method(name, **options)(denoiser, A, y, noise_var, x_like=x_like)
