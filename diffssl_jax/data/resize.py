"""Bilinear resizing in numpy with the numbers of `jax.image.resize`, for sources (no devices)."""

import numpy as np


def _bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
    """Interpolation matrix `[out_size, in_size]` of a 1-D bilinear resize.

    Half-pixel centres; when shrinking, the triangle kernel is widened by the scale
    (antialiasing), exactly as `jax.image.resize(..., 'bilinear')` does.
    """
    scale = out_size / in_size
    kernel_width = max(1.0 / scale, 1.0)
    centres = (np.arange(out_size) + 0.5) / scale - 0.5
    distance = np.abs(np.arange(in_size)[None, :] - centres[:, None]) / kernel_width
    weights = np.maximum(0.0, 1.0 - distance)
    return weights / weights.sum(axis=1, keepdims=True)


def resize_bilinear(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of the spatial axes in numpy, with the numbers of `jax.image.resize`.

    Args:
      images: `[..., H, W, C]` array.
      height: output height `H'`.
      width: output width `W'`.

    Returns:
      `[..., H', W', C]` float64 array; each output pixel is a convex combination of inputs.
    """
    if images.ndim < 3:
        raise ValueError(f"images must be [..., H, W, C]; got shape {images.shape}.")
    rows = _bilinear_weights(images.shape[-3], height)
    cols = _bilinear_weights(images.shape[-2], width)
    x = np.einsum("oh,...hwc->...owc", rows, images.astype(np.float64))
    return np.einsum("pw,...owc->...opc", cols, x)
