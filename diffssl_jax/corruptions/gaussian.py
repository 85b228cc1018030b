"""Gaussian corruption ``x_t = alpha x0 + sigma eps`` and the network's prediction targets.

Per example (any shape, no batch axis); lift with ``jax.vmap``. ``alpha`` and ``sigma`` are
scalars or arrays that broadcast against the example. The prediction kinds are the noise
``"eps"`` (Ho et al. 2020), the clean data ``"x0"``, and the velocity
``"v" = alpha eps - sigma x0`` (Salimans & Ho 2022, Sec. 4).
"""

import jax.numpy as jnp

KINDS = ("eps", "x0", "v")


def check_kind(kind):
    """Raises a ValueError unless ``kind`` is one of ``KINDS``."""
    if kind not in KINDS:
        raise ValueError(f"Unknown prediction kind {kind!r}; valid kinds are {list(KINDS)}.")


def _check_same_shape(name_a, a, name_b, b):
    if jnp.shape(a) != jnp.shape(b):
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape (one example, no batch axis), "
            f"got {jnp.shape(a)} and {jnp.shape(b)}."
        )


def corrupt(schedule, x0, t, eps):
    """Samples the forward process at time ``t``.

    Maths: ``x_t = alpha(t) x0 + sigma(t) eps`` (Ho et al. 2020, Eq. 4; Kingma et al. 2021,
    Eq. 1).

    Args:
      schedule: a schedule from ``corruptions.schedules``.
      x0: clean example, any shape ``[...]``.
      t: scalar time in ``[0, 1]`` (use ``jax.vmap`` for a batch).
      eps: standard normal noise, shape of ``x0``.

    Returns:
      ``xt``, shape of ``x0``.

    Raises:
      ValueError: if ``t`` is not a scalar or ``eps`` does not match ``x0``.
    """
    if jnp.ndim(t) != 0:
        raise ValueError(
            f"corrupt works on one example and needs a scalar t, got shape {jnp.shape(t)}; "
            "batch it with jax.vmap(corrupt, in_axes=(None, 0, 0, 0))."
        )
    _check_same_shape("x0", x0, "eps", eps)
    return schedule.alpha(t) * x0 + schedule.sigma(t) * eps


def target(kind, x0, eps, alpha, sigma):
    """The regression target of a network that predicts ``kind``.

    Maths: ``eps``, ``x0`` or ``v = alpha eps - sigma x0`` (Salimans & Ho 2022, Sec. 4).

    Args:
      kind: ``"eps"``, ``"x0"`` or ``"v"``.
      x0: clean example ``[...]``.
      eps: the noise ``[...]`` used in ``x_t = alpha x0 + sigma eps``.
      alpha: scalar (or broadcastable) signal scale.
      sigma: scalar (or broadcastable) noise scale.

    Returns:
      The target, shape of ``x0``.

    Raises:
      ValueError: for an unknown kind or mismatched shapes.
    """
    check_kind(kind)
    _check_same_shape("x0", x0, "eps", eps)
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    return alpha * eps - sigma * x0


def x0_from_prediction(kind, prediction, xt, alpha, sigma):
    """Converts a network prediction into the clean-data estimate ``x0_hat``.

    Maths (exact for any ``alpha > 0``, ``sigma >= 0``): ``eps``: ``(x_t - sigma eps) / alpha``
    (Ho et al. 2020, Eq. 15); ``x0``: itself; ``v``:
    ``(alpha x_t - sigma v) / (alpha^2 + sigma^2)`` (Salimans & Ho 2022, Sec. 4, written for
    ``alpha^2 + sigma^2 != 1``).

    Args:
      kind: ``"eps"``, ``"x0"`` or ``"v"``.
      prediction: network output ``[...]``.
      xt: the corrupted input ``[...]``.
      alpha: scalar (or broadcastable) signal scale.
      sigma: scalar (or broadcastable) noise scale.

    Returns:
      ``x0_hat``, shape of ``xt``.

    Raises:
      ValueError: for an unknown kind or mismatched shapes.
    """
    check_kind(kind)
    _check_same_shape("prediction", prediction, "xt", xt)
    if kind == "eps":
        return (xt - sigma * prediction) / alpha
    if kind == "x0":
        return prediction
    return (alpha * xt - sigma * prediction) / (alpha**2 + sigma**2)


def prediction_from_x0(kind, x0_hat, xt, alpha, sigma):
    """Inverse of ``x0_from_prediction``: the prediction of ``kind`` implied by ``x0_hat``.

    Maths: ``eps_hat = (x_t - alpha x0_hat) / sigma``, then ``target(kind, x0_hat, eps_hat)``
    (needs ``sigma > 0`` for ``"eps"`` and ``"v"``).

    Args:
      kind: ``"eps"``, ``"x0"`` or ``"v"``.
      x0_hat: clean-data estimate ``[...]``.
      xt: the corrupted input ``[...]``.
      alpha: scalar (or broadcastable) signal scale.
      sigma: scalar (or broadcastable) noise scale.

    Returns:
      The prediction, shape of ``xt``.
    """
    check_kind(kind)
    _check_same_shape("x0_hat", x0_hat, "xt", xt)
    if kind == "x0":
        return x0_hat
    eps_hat = (xt - alpha * x0_hat) / sigma
    return target(kind, x0_hat, eps_hat, alpha, sigma)
