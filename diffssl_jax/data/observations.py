"""Observation datasets `(y, operators)` for EM and posterior evaluation (Rozet et al. 2024).

Each generator returns `y` with a leading axis `N` and ONE operator pytree whose leaves
carry the same leading axis (`PixelMask(mask [N, ...])`, `UndersampledFourier(mask [N, W])`,
`DenseMatrix(matrix [N, M, D])`), so observation `i` is `(y[i], tree_map(lambda a: a[i],
operators))` and a whole dataset vmaps: `jax.vmap(lambda A, x: A(x))(operators, x)`
(`measure`). Everything is a deterministic function of the seed: observation `i` draws from
`fold_in(key, i)`, so the first `k` observations do not depend on `N`.
"""

import math

import jax
import jax.numpy as jnp

from diffssl_jax.data.manifold import observe, random_projections, to_key
from diffssl_jax.posterior.operators import (
    DenseMatrix,
    PixelMask,
    UndersampledFourier,
    mri_column_mask,
)


def _check_images(images, channels=None) -> jax.Array:
    images = jnp.asarray(images)
    if images.ndim != 4 or len(images) == 0 or (channels and images.shape[-1] != channels):
        want = f"[N, H, W, {channels}]" if channels else "[N, H, W, C]"
        raise ValueError(f"images must be a non-empty {want} array; got shape {images.shape}.")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"images must be real floats; got dtype {images.dtype}.")
    if not bool(jnp.all(jnp.isfinite(images))):
        raise ValueError("images contain NaN or inf.")
    return images


def _check_noise_std(noise_std) -> None:
    if not (math.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std must be finite and >= 0; got {noise_std}.")


def _example_keys(rng, num: int) -> jax.Array:
    """`[num]` keys `fold_in(rng, i)`: example `i`'s randomness does not depend on `num`."""
    return jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(num))


def measure(operators, x: jax.Array) -> jax.Array:
    """Noise-free batched measurements `A_i(x_i)` of a stacked operator pytree.

    Args:
      operators: an operator whose leaves have a leading axis `N`.
      x: `[N, ...]` examples.

    Returns:
      `[N, ...]` measurements.
    """
    return jax.vmap(lambda A, xi: A(xi))(operators, x)


def exact_count_masks(rng, num: int, shape: tuple[int, ...], num_removed: int) -> jax.Array:
    """`[num, *shape]` bool masks, each with exactly `num_removed` entries False (removed).

    Entry ranks under i.i.d. uniform scores (`fold_in(rng, i)` for mask `i`) pick which ones.
    """
    size = math.prod(shape)
    if not 0 <= num_removed <= size:
        raise ValueError(f"cannot remove {num_removed} of {size} entries.")
    scores = jax.vmap(lambda k: jax.random.uniform(k, (size,)))(_example_keys(rng, num))
    ranks = jnp.argsort(jnp.argsort(scores, axis=1), axis=1)
    return (ranks >= num_removed).reshape(num, *shape)


def masked_digits(
    rng_or_seed, images: jax.Array, rate: float, noise_std: float = 0.01
) -> tuple[jax.Array, PixelMask]:
    """Random pixel masking with noise (Rozet et al. 2024, corrupted CIFAR; docs/methods.md F).

    Each image loses exactly `round(rate * H * W)` pixels (Python's round, half to even),
    chosen uniformly at random, the same pixels in every channel. Observed pixels get
    Gaussian noise; removed ones are exactly 0 in `y`:
    `y = mask * (x + noise_std * eps)`, matching `PixelMask` (`A x = mask * x`, whose
    unobserved entries carry no information).

    Args:
      rng_or_seed: non-negative integer seed or `jax.random.key`.
      images: `[N, H, W, C]` real images (e.g. digits in [-1, 1]).
      rate: fraction of pixels removed, in [0, 1).
      noise_std: standard deviation of the noise on observed pixels, >= 0.

    Returns:
      `(y [N, H, W, C], PixelMask(mask=bool [N, H, W, C]))`.
    """
    images = _check_images(images)
    _check_noise_std(noise_std)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate is the fraction of pixels removed, in [0, 1); got {rate}.")
    n, h, w, c = images.shape
    rng_mask, rng_noise = jax.random.split(to_key(rng_or_seed))
    mask = exact_count_masks(rng_mask, n, (h, w, 1), round(rate * h * w))
    mask = jnp.broadcast_to(mask, images.shape)
    eps = jax.vmap(lambda k: jax.random.normal(k, (h, w, c), images.dtype))(
        _example_keys(rng_noise, n)
    )
    operators = PixelMask(mask=mask)
    return measure(operators, images + noise_std * eps), operators


def kspace_measurements(
    rng_or_seed,
    images: jax.Array,
    acceleration: float = 4.0,
    center_fraction: float = 0.08,
    noise_std: float = 0.01,
) -> tuple[jax.Array, UndersampledFourier]:
    """Undersampled k-space of accelerated MRI with complex Gaussian noise (docs/methods.md F).

    Each image gets its own column mask (`mri_column_mask`: `round(W * center_fraction)`
    central columns plus random ones, `round(W / acceleration)` in all), and
    `y = mask * (F x + noise_std * (eps_re + i eps_im))` with `F` the orthonormal centred
    2-D DFT of `UndersampledFourier`: `noise_std` is the standard deviation of the real and
    of the imaginary part of each sampled entry; unsampled entries are exactly 0.

    Args:
      rng_or_seed: non-negative integer seed or `jax.random.key`.
      images: `[N, H, W, 1]` real images.
      acceleration: undersampling factor >= 1 (4 and 8 in docs/methods.md F).
      center_fraction: fraction of fully sampled central columns, <= 1 / acceleration.
      noise_std: noise standard deviation per real and imaginary part, >= 0.

    Returns:
      `(y complex [N, H, W], UndersampledFourier(mask=bool [N, W]))`; complex64 for float32.
    """
    images = _check_images(images, channels=1)
    _check_noise_std(noise_std)
    n, h, w, _ = images.shape
    rng_mask, rng_noise = jax.random.split(to_key(rng_or_seed))
    masks = jax.vmap(lambda k: mri_column_mask(k, w, acceleration, center_fraction))(
        _example_keys(rng_mask, n)
    )
    operators = UndersampledFourier(mask=masks)
    eps = jax.vmap(lambda k: jax.random.normal(k, (2, h, w), images.dtype))(
        _example_keys(rng_noise, n)
    )
    noise = noise_std * (eps[:, 0] + 1j * eps[:, 1]) * masks[:, None, :]
    return measure(operators, images) + noise.astype(jnp.result_type(images.dtype, 1j)), operators


def zero_filled(y: jax.Array, operators) -> jax.Array:
    """The zero-filled baseline: the adjoint of each operator applied to its `y`.

    For `PixelMask` it is `mask * y`: observed pixels kept, removed ones set to 0 (mid-grey
    for images in [-1, 1]). For `UndersampledFourier` it is `Re(F^H y)`, the inverse FFT of
    zero-filled k-space, returned as `[N, H, W, 1]` images. For `DenseMatrix` it is `A^T y`.

    Args:
      y: `[N, ...]` observations.
      operators: operator pytree with leading axis `N` (as returned beside `y`).

    Returns:
      `[N, ...]` real reconstructions shaped like the images.
    """
    if isinstance(operators, UndersampledFourier):
        struct = jax.ShapeDtypeStruct((*y.shape[1:], 1), jnp.finfo(y.dtype).dtype)
        return jax.vmap(lambda A, yi: A.adjoint(yi, struct))(operators, y)
    return jax.vmap(lambda A, yi: A.adjoint(yi))(operators, y)


def linear_projections(
    rng_or_seed, x: jax.Array, *, obs_dim: int = 2, noise_std: float = 0.01
) -> tuple[jax.Array, DenseMatrix]:
    """The toy manifold's observations (Rozet et al. 2024, E.4) as `DenseMatrix` operators.

    `A_i` `[obs_dim, n]` Gaussian with unit-norm rows (`random_projections`, key
    `split(key)[0]`), `y_i = A_i x_i + noise_std * eps_i` (`observe`, key `split(key)[1]`).

    Args:
      rng_or_seed: non-negative integer seed or `jax.random.key`.
      x: `[N, n]` latents (from `manifold.randman`).
      obs_dim: rows `M` of each projection (2 in E.4).
      noise_std: observation noise standard deviation (0.01 in E.4).

    Returns:
      `(y [N, M], DenseMatrix(matrix [N, M, n]))`.
    """
    x = jnp.asarray(x)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"x must be a non-empty [N, n] array; got shape {x.shape}.")
    rng_A, rng_y = jax.random.split(to_key(rng_or_seed))
    A = random_projections(rng_A, len(x), obs_dim=obs_dim, dim=x.shape[1]).astype(x.dtype)
    return observe(rng_y, x, A, noise_std), DenseMatrix(matrix=A)
