"""The SSIM map and MDM's SSIM loss.

MDM trains its x0-predicting network with ``torchgeometry.losses.SSIM(5, reduction='mean')``
(torchgeometry 0.1.2; docs/methods.md A.3). That reference filters with a normalised separable
Gaussian window (5 x 5, sigma 1.5) applied per channel with **zero padding** of 2, so the SSIM
map has the image's size, and it does not clip the local (co)variances.

``dm_pix.ssim`` (``return_map=True``) filters with VALID convolutions, so its map is smaller by
``filter_size - 1`` and the border pixels are never compared; it also clips the variances to
``>= eps^2`` and the covariance to ``|sigma_xy| <= sigma_x sigma_y``. Its ``filter_fn`` hook
could swap in a zero-padded filter but the clipping would remain, so the reference's map
(``padding="zero"``, the default) is computed here with an explicit zero-padded separable
filter; ``padding="valid"`` delegates to ``dm_pix.ssim``.

Data range: with images in ``[-1, 1]`` the dynamic range is 2, but MDM keeps torchgeometry's
default ``max_val = 1``, i.e. ``C1 = 1e-4`` and ``C2 = 9e-4`` (``data_range_convention=
"reference"``, for parity). ``"data_range"`` uses the usual convention ``max_val = 2`` for
``[-1, 1]`` data (``C1 = 4e-4``, ``C2 = 3.6e-3``): larger constants, so flat, dark or
low-contrast regions count less.
"""

import dm_pix
import jax
import jax.numpy as jnp

PADDINGS = ("zero", "valid")
MAX_VAL = {"reference": 1.0, "data_range": 2.0}


def gaussian_window(filter_size, filter_sigma):
    """The normalised 1-D Gaussian window of the SSIM filter.

    Maths: ``g_k ∝ exp(-(k - floor(n/2))^2 / (2 s^2))``, ``sum_k g_k = 1`` (Wang et al. 2004,
    Sec. III-C, with the 5 x 5 / 1.5 window of torchgeometry's SSIM).

    Args:
      filter_size: odd window length ``n``.
      filter_sigma: Gaussian width ``s > 0``.

    Returns:
      ``[n]`` window.
    """
    offsets = jnp.arange(filter_size) - filter_size // 2
    window = jnp.exp(-(offsets**2) / (2.0 * filter_sigma**2))
    return window / jnp.sum(window)


def _blur_axis(z, window, axis):
    """Correlates ``z`` with ``window`` along ``axis``, zero-padded to keep the size."""
    size, half = z.shape[axis], len(window) // 2
    pad = [(0, 0)] * z.ndim
    pad[axis] = (half, half)
    padded = jnp.pad(z, pad)
    taps = [
        window[k] * jax.lax.slice_in_dim(padded, k, k + size, axis=axis) for k in range(len(window))
    ]
    return sum(taps[1:], taps[0])


def _blur_zero(z, window):
    return _blur_axis(_blur_axis(z, window, z.ndim - 3), window, z.ndim - 2)


def _check_inputs(x, y, filter_size, filter_sigma, padding):
    if jnp.shape(x) != jnp.shape(y) or jnp.ndim(x) not in (3, 4):
        raise ValueError(
            f"x and y must have the same shape [H, W, C] or [B, H, W, C], got {jnp.shape(x)} "
            f"and {jnp.shape(y)}."
        )
    if padding not in PADDINGS:
        raise ValueError(
            f"Unknown padding {padding!r}; valid paddings are {list(PADDINGS)} ('zero' = the "
            "torchgeometry reference MDM uses, 'valid' = dm_pix)."
        )
    if filter_size < 1 or filter_size % 2 == 0 or filter_sigma <= 0:
        raise ValueError(
            f"filter_size must be odd and >= 1 and filter_sigma > 0 (MDM: 5 and 1.5), got "
            f"{filter_size} and {filter_sigma}."
        )
    height, width = jnp.shape(x)[-3:-1]
    if padding == "valid" and min(height, width) < filter_size:
        raise ValueError(
            f"Images of size {height}x{width} are smaller than filter_size={filter_size}; use "
            "padding='zero' or a smaller filter."
        )


def ssim_map(
    x,
    y,
    *,
    max_val=1.0,
    filter_size=5,
    filter_sigma=1.5,
    k1=0.01,
    k2=0.03,
    padding="zero",
):
    """The per-pixel, per-channel SSIM map.

    Maths: ``SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)
    (sigma_x^2 + sigma_y^2 + C2))`` with Gaussian-windowed local statistics,
    ``C1 = (k1 max_val)^2``, ``C2 = (k2 max_val)^2`` (Wang et al. 2004, Eq. 13).

    Args:
      x: images ``[H, W, C]`` or ``[B, H, W, C]``.
      y: images, shape of ``x``.
      max_val: the ``L`` in ``C1`` and ``C2`` (see the module docstring about ``[-1, 1]``).
      filter_size: odd Gaussian window size.
      filter_sigma: Gaussian window width.
      k1: SSIM constant.
      k2: SSIM constant.
      padding: ``"zero"`` (reference, same size) or ``"valid"`` (``dm_pix.ssim``).

    Returns:
      The map, shape of ``x`` for ``"zero"``; ``filter_size - 1`` smaller in ``H`` and ``W``
      for ``"valid"``.

    Raises:
      ValueError: on mismatched or badly ranked inputs, an even filter or an unknown padding.
    """
    _check_inputs(x, y, filter_size, filter_sigma, padding)
    if padding == "valid":
        return dm_pix.ssim(
            x,
            y,
            max_val=max_val,
            filter_size=filter_size,
            filter_sigma=filter_sigma,
            k1=k1,
            k2=k2,
            return_map=True,
        )
    window = gaussian_window(filter_size, filter_sigma).astype(x.dtype)
    mu_x, mu_y = _blur_zero(x, window), _blur_zero(y, window)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    sigma_xx = _blur_zero(x * x, window) - mu_xx
    sigma_yy = _blur_zero(y * y, window) - mu_yy
    sigma_xy = _blur_zero(x * y, window) - mu_xy
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    numerator = (2.0 * mu_xy + c1) * (2.0 * sigma_xy + c2)
    denominator = (mu_xx + mu_yy + c1) * (sigma_xx + sigma_yy + c2)
    return numerator / denominator


def ssim_loss(
    x,
    y,
    *,
    data_range_convention="reference",
    padding="zero",
    filter_size=5,
    filter_sigma=1.5,
):
    """MDM's SSIM loss: the mean of the clamped, halved dissimilarity map.

    Maths: ``mean(clamp(1 - SSIM_map(x, y), 0, 1) / 2)`` over all pixels and channels (and the
    batch), the torchgeometry form of MDM's ``(1 - SSIM(x0, U(x_t, t))) / 2`` (Pan et al. 2023,
    Eq. 4; Wang et al. 2004). On one example it is that example's mean, and the vmapped mean
    over a batch equals the mean over ``B H W C``.

    Args:
      x: images ``[H, W, C]`` or ``[B, H, W, C]`` in ``[-1, 1]``.
      y: images, shape of ``x``.
      data_range_convention: ``"reference"`` (``max_val = 1``, MDM parity) or
        ``"data_range"`` (``max_val = 2``, the usual value for ``[-1, 1]`` data).
      padding: ``"zero"`` (reference) or ``"valid"`` (``dm_pix``).
      filter_size: odd Gaussian window size (MDM: 5).
      filter_sigma: Gaussian window width (MDM: 1.5).

    Returns:
      Scalar loss in ``[0, 1/2]``; 0 when ``x == y``.

    Raises:
      ValueError: on an unknown convention, or any error of ``ssim_map``.
    """
    if data_range_convention not in MAX_VAL:
        raise ValueError(
            f"Unknown data_range_convention {data_range_convention!r}; valid values are "
            f"{list(MAX_VAL)} ('reference' = max_val 1 as in MDM, 'data_range' = max_val 2)."
        )
    ssim = ssim_map(
        x,
        y,
        max_val=MAX_VAL[data_range_convention],
        filter_size=filter_size,
        filter_sigma=filter_sigma,
        padding=padding,
    )
    return jnp.mean(jnp.clip(1.0 - ssim, 0.0, 1.0) / 2.0)
