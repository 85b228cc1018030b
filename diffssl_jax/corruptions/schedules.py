"""Noise schedules in continuous time ``t ∈ [0, 1]``.

A schedule defines the Gaussian forward process ``x_t = alpha(t) * x0 + sigma(t) * eps``.
Every method is elementwise in ``t`` (shape ``[]`` per example or ``[B]`` per batch) and
jit/vmap/grad friendly. Hyper-parameters are static fields: a schedule is a pytree with no
leaves, fixed by the config, and is validated when it is built.

``ve_sigma(t) = sigma(t) / alpha(t)`` is the noise level of the equivalent variance-exploding
process ``x = x0 + ve_sigma * eps`` used by the denoiser contract; ``t_from_ve_sigma`` is its
exact closed-form inverse, which is how a VP network is queried at a VE noise level.
"""

import math

import flax.struct
import jax.numpy as jnp


@flax.struct.dataclass
class LinearVP:
    """Continuous-time DDPM schedule with a linear ``beta(t)``.

    ``alpha_bar(t) = exp(-(beta_min t + (beta_max - beta_min) t^2 / 2))``,
    ``alpha = sqrt(alpha_bar)``, ``sigma = sqrt(1 - alpha_bar)`` (Song et al. 2021, score SDE,
    Eqs. 11 and 29). With ``beta_min = 0.1``, ``beta_max = 20`` it is the continuous limit of
    Ho et al. 2020's linear ``beta_i`` from 1e-4 to 0.02 with T = 1000, at ``t = i / T``, to
    first order in ``1/T``: it matches ``exp(-sum beta_i)`` to 0.25% relative, but misses the
    factor ``exp(-sum beta_i^2 / 2)`` of the product ``prod (1 - beta_i)``, so ``alpha_bar``
    is up to 7% larger near ``t = 1`` (0.1% for ``t <= 0.2``).

    Attributes:
      beta_min: ``beta(0) > 0``.
      beta_max: ``beta(1) >= beta_min``.
    """

    beta_min: float = flax.struct.field(pytree_node=False, default=0.1)
    beta_max: float = flax.struct.field(pytree_node=False, default=20.0)

    def __post_init__(self):
        if not 0.0 < self.beta_min <= self.beta_max:
            raise ValueError(
                f"LinearVP needs 0 < beta_min <= beta_max, got beta_min={self.beta_min}, "
                f"beta_max={self.beta_max}; the DDPM defaults are beta_min=0.1, beta_max=20."
            )

    def _integral(self, t):
        """``B(t) = ∫_0^t beta(u) du = -log alpha_bar(t)``."""
        t = jnp.asarray(t)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def alpha_bar(self, t):
        """``alpha_bar(t) = exp(-B(t))``, shape of ``t``."""
        return jnp.exp(-self._integral(t))

    def alpha(self, t):
        """``alpha(t) = exp(-B(t) / 2)``, shape of ``t``."""
        return jnp.exp(-0.5 * self._integral(t))

    def sigma(self, t):
        """``sigma(t) = sqrt(1 - exp(-B(t)))`` (via ``expm1``, exact near ``t = 0``)."""
        return jnp.sqrt(-jnp.expm1(-self._integral(t)))

    def ve_sigma(self, t):
        """``sigma / alpha = sqrt(exp(B(t)) - 1)``, shape of ``t``."""
        return jnp.sqrt(jnp.expm1(self._integral(t)))

    def t_from_ve_sigma(self, s):
        """Exact inverse of ``ve_sigma``: solves ``B(t) = log(1 + s^2)``.

        The root of ``(beta_max - beta_min) t^2 / 2 + beta_min t - c = 0`` is written as
        ``t = 2c / (beta_min + sqrt(beta_min^2 + 2 (beta_max - beta_min) c))``, which has no
        cancellation for small ``c`` and also covers ``beta_max = beta_min``.
        """
        c = jnp.log1p(jnp.asarray(s) ** 2)
        disc = self.beta_min**2 + 2.0 * (self.beta_max - self.beta_min) * c
        return 2.0 * c / (self.beta_min + jnp.sqrt(disc))

    def snr(self, t):
        """``alpha^2 / sigma^2 = 1 / expm1(B(t))`` (infinite at ``t = 0``)."""
        return 1.0 / jnp.expm1(self._integral(t))


@flax.struct.dataclass
class CosineVP:
    """Cosine schedule of Nichol & Dhariwal 2021 (Eq. 17), clipped by a time rescaling.

    With ``phi0 = pi/2 * s / (1 + s)``, Nichol & Dhariwal's ``alpha_bar = cos^2(phi) / cos^2(phi0)``
    reaches 0 at ``phi = pi/2``, where ``ve_sigma`` is infinite. Instead of clipping ``beta``
    (their discrete fix), the angle runs linearly from ``phi0`` at ``t = 0`` to ``phi_max`` at
    ``t = 1``, where ``phi_max`` solves ``alpha_bar = alpha_bar_min``. The schedule is thus the
    original one with ``t`` scaled by about 0.998 (for the defaults); it stays smooth and
    ``ve_sigma : [0, 1] -> [0, sqrt(1 / alpha_bar_min - 1)]`` stays a bijection
    (``ve_sigma(1) ≈ 316`` for ``alpha_bar_min = 1e-5``).

    Attributes:
      s: offset ``s > 0`` (Nichol & Dhariwal 2021 use 0.008).
      alpha_bar_min: ``alpha_bar(1)``, in ``(0, 1)``.
    """

    s: float = flax.struct.field(pytree_node=False, default=0.008)
    alpha_bar_min: float = flax.struct.field(pytree_node=False, default=1e-5)

    def __post_init__(self):
        if not self.s > 0.0:
            raise ValueError(f"CosineVP needs s > 0, got s={self.s}; the usual value is 0.008.")
        if not 0.0 < self.alpha_bar_min < 1.0:
            raise ValueError(
                f"CosineVP needs 0 < alpha_bar_min < 1, got {self.alpha_bar_min}; it sets "
                "ve_sigma(1) = sqrt(1 / alpha_bar_min - 1), e.g. 1e-5 gives about 316."
            )

    @property
    def _phi0(self):
        return 0.5 * math.pi * self.s / (1.0 + self.s)

    @property
    def _phi_max(self):
        return math.acos(math.sqrt(self.alpha_bar_min) * math.cos(self._phi0))

    def _dphi(self, t):
        """``phi(t) - phi0``, kept apart so that ``sigma`` stays exact near ``t = 0``."""
        return (self._phi_max - self._phi0) * jnp.asarray(t)

    def alpha(self, t):
        """``alpha(t) = cos(phi(t)) / cos(phi0)``, shape of ``t``."""
        return jnp.cos(self._phi0 + self._dphi(t)) / math.cos(self._phi0)

    def alpha_bar(self, t):
        """``alpha_bar(t) = alpha(t)^2``."""
        return self.alpha(t) ** 2

    def _sin_product(self, t):
        """``sin(phi - phi0) sin(phi + phi0) = cos^2(phi0) - cos^2(phi)``, without cancellation."""
        dphi = self._dphi(t)
        return jnp.sin(dphi) * jnp.sin(2.0 * self._phi0 + dphi)

    def sigma(self, t):
        """``sqrt(1 - alpha^2) = sqrt(sin(phi - phi0) sin(phi + phi0)) / cos(phi0)``."""
        return jnp.sqrt(self._sin_product(t)) / math.cos(self._phi0)

    def ve_sigma(self, t):
        """``sigma / alpha = sqrt(sin(phi - phi0) sin(phi + phi0)) / cos(phi)``."""
        return jnp.sqrt(self._sin_product(t)) / jnp.cos(self._phi0 + self._dphi(t))

    def t_from_ve_sigma(self, s):
        """Exact inverse of ``ve_sigma``.

        ``cos(phi) = cos(phi0) / sqrt(1 + s^2)`` (the arccos closed form). Evaluated as
        ``phi - phi0 = arctan2(s^2 cos(phi0) / (r + sin(phi0)), cos^2(phi0) + r sin(phi0))``
        with ``r = sqrt(s^2 + sin^2(phi0))`` (the tangent subtraction formula), which is the
        same angle without arccos's loss of precision for small ``s``.
        """
        s = jnp.asarray(s)
        sin0, cos0 = math.sin(self._phi0), math.cos(self._phi0)
        r = jnp.sqrt(s**2 + sin0**2)
        dphi = jnp.arctan2(s**2 * cos0 / (r + sin0), cos0**2 + r * sin0)
        return dphi / (self._phi_max - self._phi0)

    def snr(self, t):
        """``alpha^2 / sigma^2 = 1 / ve_sigma^2`` (infinite at ``t = 0``)."""
        return 1.0 / self.ve_sigma(t) ** 2


@flax.struct.dataclass
class LogLinearVE:
    """Variance-exploding schedule with log-linear noise (Rozet et al. 2024; docs/methods.md E.1).

    ``alpha = 1``, ``sigma(t) = exp(log(sigma_min) (1 - t) + log(sigma_max) t)``.

    Attributes:
      sigma_min: ``sigma(0) > 0``.
      sigma_max: ``sigma(1) > sigma_min``.
    """

    sigma_min: float = flax.struct.field(pytree_node=False, default=1e-3)
    sigma_max: float = flax.struct.field(pytree_node=False, default=100.0)

    def __post_init__(self):
        if not 0.0 < self.sigma_min < self.sigma_max:
            raise ValueError(
                f"LogLinearVE needs 0 < sigma_min < sigma_max, got sigma_min={self.sigma_min}, "
                f"sigma_max={self.sigma_max}; e.g. sigma_min=1e-3, sigma_max=100."
            )

    def alpha(self, t):
        """``alpha(t) = 1``, shape and dtype of ``t``."""
        return jnp.ones_like(jnp.asarray(t) * 1.0)

    def alpha_bar(self, t):
        """``alpha(t)^2 = 1``."""
        return self.alpha(t)

    def sigma(self, t):
        """``exp(log(sigma_min) (1 - t) + log(sigma_max) t)``, shape of ``t``."""
        t = jnp.asarray(t)
        return jnp.exp(math.log(self.sigma_min) * (1.0 - t) + math.log(self.sigma_max) * t)

    def ve_sigma(self, t):
        """``sigma(t)`` since ``alpha = 1``."""
        return self.sigma(t)

    def t_from_ve_sigma(self, s):
        """``t = (log s - log sigma_min) / (log sigma_max - log sigma_min)``."""
        log_ratio = math.log(self.sigma_max) - math.log(self.sigma_min)
        return (jnp.log(jnp.asarray(s)) - math.log(self.sigma_min)) / log_ratio

    def snr(self, t):
        """``1 / sigma(t)^2``."""
        return 1.0 / self.sigma(t) ** 2


_SCHEDULES = {"linear": LinearVP, "cosine": CosineVP, "loglinear_ve": LogLinearVE}


def make_schedule(name, **kwargs):
    """Builds a schedule by name.

    Args:
      name: one of ``"linear"`` (``LinearVP``), ``"cosine"`` (``CosineVP``),
        ``"loglinear_ve"`` (``LogLinearVE``).
      **kwargs: the schedule's hyper-parameters (its dataclass fields).

    Returns:
      The schedule, an immutable pytree.

    Raises:
      ValueError: for an unknown name or keyword.
    """
    if name not in _SCHEDULES:
        raise ValueError(f"Unknown schedule {name!r}; valid names are {sorted(_SCHEDULES)}.")
    cls = _SCHEDULES[name]
    fields = tuple(cls.__dataclass_fields__)
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise ValueError(
            f"Unknown keyword(s) {unknown} for schedule {name!r}; valid keywords are {fields}."
        )
    return cls(**kwargs)
