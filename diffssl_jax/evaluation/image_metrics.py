"""Reconstruction quality against a ground truth: PSNR and SSIM, per image.

Both take images in ``[..., H, W, C]`` and a ``data_range`` (the span of valid values:
2 for the library's ``[-1, 1]`` images, 1 for ``[0, 1]``), so they match the usual
``skimage.metrics`` definitions:

    PSNR = 10 log10(data_range^2 / mean((x - ref)^2))                      (dB)
    SSIM = mean over pixels of l * c * s   (Wang et al. 2004, Eq. 13; 11x11 Gaussian window,
           sigma 1.5, K1 = 0.01, K2 = 0.03, valid convolution)  -- dm-pix's implementation.
"""

import dm_pix
import jax.numpy as jnp


def _check(images, reference):
    if jnp.shape(images) != jnp.shape(reference):
        raise ValueError(
            f"images {jnp.shape(images)} and reference {jnp.shape(reference)} differ in shape."
        )
    if jnp.ndim(images) < 3:
        raise ValueError(f"images must be [..., H, W, C], got shape {jnp.shape(images)}.")


def psnr(images, reference, data_range=2.0):
    """Per-image PSNR in dB, shape ``[...]``; infinite for identical images."""
    _check(images, reference)
    mse = jnp.mean(jnp.square(images - reference), axis=(-3, -2, -1))
    return 10.0 * jnp.log10(data_range**2 / mse)


def ssim(images, reference, data_range=2.0, filter_size=11):
    """Per-image SSIM, shape ``[...]``, in ``[-1, 1]`` (1 for identical images).

    ``filter_size`` must not exceed the image side (use 7 for 16x16 digits, as
    ``skimage.metrics.structural_similarity``'s default).
    """
    _check(images, reference)
    side = min(jnp.shape(images)[-3:-1])
    if filter_size > side:
        raise ValueError(f"filter_size={filter_size} exceeds the image side {side}.")
    return dm_pix.ssim(images, reference, max_val=data_range, filter_size=filter_size)
