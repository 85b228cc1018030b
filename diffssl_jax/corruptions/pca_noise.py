"""l-DAE's noise in a patch-wise latent, the corruption it makes and its two losses.

Chen et al. 2024 ("Deconstructing Denoising Diffusion Models for Self-Supervised Learning",
l-DAE), Sec. 4.2-4.4 and Eq. 4; docs/methods.md C.4, C.5. Per example; lift with ``jax.vmap``.
The tokenizer (a ``PCABasis``: the PCA, or ``identity_basis`` for pixels) is
``corruptions/pca_latent.py``.

The stages of the paper's roadmap are switches here (config keys of ``methods/ldae.py``):

- Noise (``noise_scales``): ``z_t = gamma_t z0 + sigma_t eps`` with ``z0 = V_d (p(x0) - mu)``.
  Without input scaling (the final l-DAE): ``gamma_t = 1``, ``sigma_t = sigma_max t``. With it
  (the roadmap's "replace the noise schedule" stage, Table 1): ``gamma_t^2 = 1 - t`` linear
  from 1 to 0 and ``sigma_t^2 = 1 - gamma_t^2 = t``. ``gamma_t`` multiplies every latent
  component of ``z0`` alike; the mean ``mu`` is not scaled.
- Loss weight (``pca_weighted_loss``): ``lambda_t = gamma_t^2 / (gamma_t^2 + sigma_t^2)``, which is
  the paper's ``1 / (1 + sigma_t^2)`` when ``gamma_t = 1`` (Eq. 4) and its ``gamma_t^2`` when
  ``gamma_t^2 + sigma_t^2 = 1`` (the "predict clean data, lambda = gamma^2" stage).
- Target: the clean image (``pca_weighted_loss``, Eq. 4; with ``residual_weight = 0`` it is
  the clean-latent loss ``lambda_t ||V_d (x0 - x_pred)||^2``) or the noise
  (``pca_eps_loss``).
"""

import math

import jax.numpy as jnp

from diffssl_jax.corruptions.pca_latent import (
    check_latent_dim,
    coordinates,
    decode,
    encode,
    extract_patches,
    merge_patches,
)

SIGMA_MAX = math.sqrt(2.0)  # l-DAE's noise level at the last step (Chen et al. 2024, Sec. 4.3)
SINGLE_SIGMA = 1.0 / 3.0  # the paper's single noise level (Sec. 5, 61.5% vs 64.5%)


def noise_scales(t, *, gamma_scaling, sigma_max=SIGMA_MAX):
    """``(gamma_t, sigma_t)`` of ``z_t = gamma_t z0 + sigma_t eps`` (module docstring).

    Maths: ``gamma_scaling=False``: ``gamma_t = 1``, ``sigma_t = sigma_max t`` (the paper's
    ``sqrt(2) s / 999`` for steps ``s``, ``t = s / 999``; Sec. 4.3). ``gamma_scaling=True``:
    ``gamma_t = sqrt(1 - t)``, ``sigma_t = sqrt(t)`` (``gamma_t^2`` linear, Sec. 4.1).

    Args:
      t: time in ``[0, 1]``, any shape.
      gamma_scaling: whether the clean latent is scaled by ``gamma_t``.
      sigma_max: ``sigma`` at ``t = 1`` without scaling (unused with it).

    Returns:
      ``(gamma_t, sigma_t)``, each the shape of ``t``.
    """
    t = jnp.asarray(t)
    if gamma_scaling:
        return jnp.sqrt(1.0 - t), jnp.sqrt(t)
    return jnp.ones_like(t), sigma_max * t


def time_of_sigma(sigma: float, *, gamma_scaling: bool, sigma_max: float = SIGMA_MAX) -> float:
    """The time whose ``sigma_t`` is ``sigma``: ``sigma / sigma_max``, or ``sigma^2`` with scaling.

    Raises:
      ValueError: unless ``0 < sigma <= sigma_max`` (without scaling) or ``0 < sigma < 1``
        (with it: ``sigma = 1`` leaves ``gamma = 0``, no image).
    """
    top, label = (1.0, "< 1 with gamma scaling") if gamma_scaling else (sigma_max, "<= sigma_max")
    if not (0.0 < sigma < top if gamma_scaling else 0.0 < sigma <= top):
        raise ValueError(f"the single noise level must be > 0 and {label} ({top:g}), got {sigma}")
    return float(sigma**2 if gamma_scaling else sigma / sigma_max)


def pca_latent_corrupt(basis, x0, eps, *, gamma, sigma, patch_size, latent_dim):
    """Adds noise in the latent and maps back to pixels.

    Maths: ``z = V_d (p(x0) - mu)``, ``z_t = gamma z + sigma eps``,
    ``x_t = merge(V_d^T z_t + mu)`` (Chen et al. 2024, Sec. 4.3-4.4, "image input via inverse
    PCA"). With ``identity_basis`` and ``d = D``: ``x_t = gamma x0 + sigma eps`` in pixels.

    Args:
      basis: a ``PCABasis`` fitted on ``patch_size`` patches of the same channels.
      x0: clean image ``[H, W, C]``.
      eps: standard normal noise ``[L, latent_dim]``.
      gamma: scalar ``gamma_t``, or None for ``gamma_t = 1`` (no multiplication: the final
        l-DAE's numbers stay bit-identical).
      sigma: scalar ``sigma_t``.
      patch_size: ``P``.
      latent_dim: ``d``.

    Returns:
      ``x_t [H, W, C]``; at ``gamma = 1, sigma = 0`` the projection of ``x0`` onto
      ``mu + span(V_d)``.
    """
    if jnp.ndim(x0) != 3 or jnp.ndim(1.0 if gamma is None else gamma) or jnp.ndim(sigma):
        raise ValueError(
            f"pca_latent_corrupt works on one image [H, W, C] and scalar gamma and sigma, got "
            f"shapes {jnp.shape(x0)}, {jnp.shape(gamma)} and {jnp.shape(sigma)}; batch it "
            "with jax.vmap."
        )
    patches = extract_patches(x0, patch_size)
    if eps.shape != (patches.shape[0], latent_dim):
        raise ValueError(
            f"eps must have shape [L, d] = {(patches.shape[0], latent_dim)}, got {eps.shape}."
        )
    z = encode(basis, patches, latent_dim)
    z_t = z + sigma * eps if gamma is None else gamma * z + sigma * eps
    return merge_patches(decode(basis, z_t), patch_size, x0.shape)


def _check_pair(name, a, b, scale):
    if jnp.shape(a) != jnp.shape(b) or jnp.ndim(a) != 3 or jnp.ndim(scale) != 0:
        raise ValueError(
            f"{name} needs two arrays of the same shape [H, W, C] and scalar gamma and sigma, "
            f"got {jnp.shape(a)}, {jnp.shape(b)} and {jnp.shape(scale)}; batch it with jax.vmap."
        )


def pca_weighted_loss(
    basis, x0, x_pred, *, gamma, sigma, patch_size, latent_dim, residual_weight=0.1
):
    """l-DAE's clean-image loss: a weighted squared error in full-basis coordinates.

    Maths: ``lambda_t sum_{i=1}^{D} w_i r_i^2`` with ``r = V_full (p(x0) - p(x_pred))``,
    ``w_i = 1`` for ``i <= d`` else ``residual_weight``, ``lambda_t = gamma_t^2 / (gamma_t^2 +
    sigma_t^2)`` (Chen et al. 2024, Eq. 4; module docstring): a SUM over the D coefficients
    and a MEAN over the L patches. ``r`` uses the orthonormal basis even
    when the basis whitens.

    Args:
      basis: a ``PCABasis``.
      x0: clean image ``[H, W, C]``.
      x_pred: the network's prediction of ``x0``, ``[H, W, C]``.
      gamma: scalar ``gamma_t`` of the input (``noise_scales``), or None for 1.
      sigma: scalar ``sigma_t`` of the input.
      patch_size: ``P``.
      latent_dim: ``d``.
      residual_weight: ``w`` of the components ``d < i <= D`` (paper: 0.1; 0 gives the
        roadmap's clean-latent loss).

    Returns:
      Scalar loss.
    """
    _check_pair("pca_weighted_loss", x0, x_pred, sigma if gamma is None else gamma + sigma)
    check_latent_dim(basis, latent_dim)
    diff = extract_patches(x0, patch_size) - extract_patches(x_pred, patch_size)
    if diff.shape[-1] != basis.dim:
        raise ValueError(
            f"Patch dimension {diff.shape[-1]} does not match the basis's {basis.dim}."
        )
    r = coordinates(basis.replace(whiten=False), diff, basis.dim)
    weights = jnp.where(jnp.arange(basis.dim) < latent_dim, 1.0, residual_weight)
    error = jnp.mean(jnp.sum(weights * r**2, axis=-1))
    return error / (1.0 + sigma**2) if gamma is None else error * gamma**2 / (gamma**2 + sigma**2)


def pca_eps_loss(basis, eps, prediction, *, patch_size, latent_dim):
    """The roadmap's noise-prediction loss, read through the tokenizer.

    Maths: ``mean_l sum_{k=1}^{d} (eps_{l,k} - eps_hat_{l,k})^2`` with
    ``eps_hat = V_d p(prediction)`` (divided by ``sqrt(lambda)`` if whitening): the network
    outputs an image whose latent coordinates are its estimate of the noise (Chen et al. 2024,
    Sec. 4.1, the DDM's ``||eps - net(z_t)||^2``, here with image output via the inverse
    projection; unweighted, ``lambda_t = 1``).

    Args:
      basis: a ``PCABasis``.
      eps: the corruption's noise ``[L, d]``.
      prediction: the network's output ``[H, W, C]``.
      patch_size: ``P``.
      latent_dim: ``d``.

    Returns:
      Scalar loss.
    """
    if jnp.ndim(prediction) != 3:
        raise ValueError(f"prediction must be one image [H, W, C], got {jnp.shape(prediction)}")
    eps_hat = coordinates(basis, extract_patches(prediction, patch_size), latent_dim)
    if eps.shape != eps_hat.shape:
        raise ValueError(f"eps must have shape [L, d] = {eps_hat.shape}, got {eps.shape}.")
    return jnp.mean(jnp.sum((eps - eps_hat) ** 2, axis=-1))
