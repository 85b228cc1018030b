"""The denoising score-matching (DSM) objective and its weightings, per example.

The loss is ``w * mean((prediction - target)^2)``. Whatever the prediction kind, the error
on the target is a fixed multiple of the error on ``x0``: with ``s2 = (sigma / alpha)^2``
(the VE noise variance, ``1 / snr``),

* ``x0``:  ``|x0_hat - x0|^2``,
* ``eps``: ``|eps_hat - eps|^2 = |x0_hat - x0|^2 / s2``,
* ``v``:   ``|v_hat - v|^2 = alpha^2 (1 + s2)^2 / s2 * |x0_hat - x0|^2``.

The weightings are therefore defined by their weight ``w_x0`` on the x0-space error, and
divided by the kind's factor, so that a weighting means the same objective for every kind:

* ``"none"``: no reweighting, plain MSE on the target (for ``eps`` this is Ho et al. 2020's
  ``L_simple``, Eq. 14; in x0 terms ``w_x0 = snr``).
* ``"min_snr"``: ``w_x0 = min(snr, gamma)`` (Hang et al. 2023, Sec. 3, Min-SNR-gamma; for
  ``eps`` this gives their ``min(snr, gamma) / snr``, for VP ``v`` their
  ``min(snr, gamma) / (snr + 1)``).
* ``"edm"``: ``w_x0 = lambda(s) = (s^2 + sigma_data^2) / (s sigma_data)^2`` with
  ``s = sigma / alpha`` (Karras et al. 2022, Eq. 8 and Table 1; unit weight on the
  preconditioned network output).
"""

import jax.numpy as jnp

from diffssl_jax.corruptions import gaussian

WEIGHTINGS = ("none", "min_snr", "edm")


def _check_positive(name, value):
    if isinstance(value, (int, float)) and not value > 0:
        raise ValueError(f"{name} must be positive, got {value}.")


def loss_weight(kind, alpha, sigma, *, weighting, sigma_data=0.5, min_snr_gamma=5.0):
    """The weight on the target MSE that realises ``weighting`` for prediction ``kind``.

    Maths: ``w = w_x0 / c_kind`` with ``c_x0 = 1``, ``c_eps = 1 / s2``,
    ``c_v = alpha^2 (1 + s2)^2 / s2`` and ``s2 = (sigma / alpha)^2``; each weighting is
    written with ``w_x0 * s2`` so that the eps and v weights stay finite as ``sigma -> 0``
    (for ``x0``, ``"min_snr"`` is ``gamma`` there and ``"edm"`` is infinite).

    Args:
      kind: ``"eps"``, ``"x0"`` or ``"v"``.
      alpha: scalar signal scale ``alpha(t) > 0``.
      sigma: scalar noise scale ``sigma(t) >= 0``.
      weighting: ``"none"``, ``"min_snr"`` or ``"edm"``.
      sigma_data: data standard deviation for ``"edm"`` (Karras et al. 2022 use 0.5).
      min_snr_gamma: the clip ``gamma`` of ``"min_snr"`` (Hang et al. 2023 use 5).

    Returns:
      The weight, a scalar array.

    Raises:
      ValueError: for an unknown kind or weighting, or a non-positive hyper-parameter.
    """
    gaussian.check_kind(kind)
    if weighting not in WEIGHTINGS:
        raise ValueError(f"Unknown weighting {weighting!r}; valid weightings are {WEIGHTINGS}.")
    _check_positive("sigma_data", sigma_data)
    _check_positive("min_snr_gamma", min_snr_gamma)
    alpha = jnp.asarray(alpha)
    sigma = jnp.asarray(sigma)
    if weighting == "none":
        return jnp.ones_like(alpha * sigma)
    s2 = (sigma / alpha) ** 2
    if kind == "x0":  # w_x0 itself: min_snr stays gamma at sigma = 0, edm is infinite there.
        if weighting == "min_snr":
            return jnp.minimum(1.0 / s2, min_snr_gamma)
        return (s2 + sigma_data**2) / (s2 * sigma_data**2)
    if weighting == "min_snr":
        w_x0_times_s2 = jnp.minimum(1.0, min_snr_gamma * s2)
    else:
        w_x0_times_s2 = (s2 + sigma_data**2) / sigma_data**2
    if kind == "eps":
        return w_x0_times_s2
    return w_x0_times_s2 / (alpha**2 * (1.0 + s2) ** 2)


def denoising_loss(
    prediction,
    x0,
    eps,
    alpha,
    sigma,
    *,
    kind,
    weighting,
    sigma_data=0.5,
    min_snr_gamma=5.0,
):
    """Weighted DSM loss of one example.

    Maths: ``w(t) * mean((prediction - target)^2)`` with the target of
    ``corruptions.gaussian.target`` and ``w`` from ``loss_weight`` (Ho et al. 2020, Eq. 14;
    Hang et al. 2023, Sec. 3; Karras et al. 2022, Eq. 8).

    Args:
      prediction: network output for this example ``[...]``.
      x0: clean example ``[...]``.
      eps: the noise ``[...]`` of ``x_t = alpha x0 + sigma eps``.
      alpha: scalar ``alpha(t)``.
      sigma: scalar ``sigma(t)``.
      kind: what the network predicts, ``"eps"``, ``"x0"`` or ``"v"``.
      weighting: ``"none"``, ``"min_snr"`` or ``"edm"``.
      sigma_data: data standard deviation for ``"edm"``.
      min_snr_gamma: clip of ``"min_snr"``.

    Returns:
      The loss, a scalar array. Average over the batch outside (``jax.vmap`` then mean).

    Raises:
      ValueError: for an unknown kind or weighting, mismatched shapes, or non-scalar
        ``alpha``/``sigma``.
    """
    if jnp.shape(prediction) != jnp.shape(x0):
        raise ValueError(
            f"prediction and x0 must have the same shape (one example), got "
            f"{jnp.shape(prediction)} and {jnp.shape(x0)}."
        )
    if jnp.ndim(alpha) != 0 or jnp.ndim(sigma) != 0:
        raise ValueError(
            f"denoising_loss works on one example and needs scalar alpha and sigma, got shapes "
            f"{jnp.shape(alpha)} and {jnp.shape(sigma)}; batch it with jax.vmap."
        )
    weight = loss_weight(
        kind,
        alpha,
        sigma,
        weighting=weighting,
        sigma_data=sigma_data,
        min_snr_gamma=min_snr_gamma,
    )
    err = prediction - gaussian.target(kind, x0, eps, alpha, sigma)
    return weight * jnp.mean(err**2)
