"""Builders of `InverseProblem`s, one per observation kind in the library.

All are deterministic functions of their key (observation `i` draws from `fold_in(key, i)`
where it draws alone, so the first `k` observations do not depend on `N`):

* `box_inpainting`: one missing box (`PixelMask`; unobserved entries of `y` are 0);
* `pixel_inpainting`: exactly `round(rate H W)` random pixels removed per image;
* `super_resolution`: `factor x factor` average pooling (`BoxDownsample`), optionally after a
  Gaussian blur (`BlurDownsample`, `blur_sigma > 0`);
* `deblurring`: a Gaussian blur (`Blur`);
* `undersampled_mri`: a column mask with a fully sampled centre per image
  (`UndersampledFourier`, accelerations 4 and 8 in docs/methods.md F);
* `random_projections`: the toy manifold's `M x D` Gaussian projections with unit rows (E.4).

`observe(kind, rng, images, noise_std=..., **options)` picks one by name.
"""

import math
from typing import Any

import jax
import jax.numpy as jnp

from diffssl_jax.data.manifold import to_key
from diffssl_jax.posterior.checks import keyword_defaults
from diffssl_jax.posterior.operators import (
    Blur,
    BlurDownsample,
    BoxDownsample,
    DenseMatrix,
    PixelMask,
    UndersampledFourier,
    box_mask,
    gaussian_kernel,
    mri_column_mask,
)
from diffssl_jax.posterior.problems import InverseProblem, measure

KINDS = ("box", "pixels", "superres", "blur", "mri", "projections")


def _check_images(images, channels=None) -> jax.Array:
    images = jnp.asarray(images)
    if images.ndim != 4 or len(images) == 0 or (channels and images.shape[-1] != channels):
        want = f"[N, H, W, {channels}]" if channels else "[N, H, W, C]"
        raise ValueError(f"images must be a non-empty {want} array; got shape {images.shape}.")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"images must be real floats; got dtype {images.dtype}.")
    if not isinstance(images, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(images))):
        raise ValueError("images contain NaN or inf.")
    return images


def _check_noise_std(noise_std) -> None:
    if not (math.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std must be finite and >= 0; got {noise_std}.")


def _example_keys(rng, num: int) -> jax.Array:
    """`[num]` keys `fold_in(rng, i)`: example `i`'s randomness does not depend on `num`."""
    return jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(num))


def _problem(y, operators, noise_std, images, *, shared=False) -> InverseProblem:
    return InverseProblem(
        y=y,
        operators=operators,
        noise_var=float(noise_std) ** 2,
        shape=tuple(images.shape[1:]),
        truth=images,
        ids=jnp.arange(len(images), dtype=jnp.int32),
        shared_operator=shared,
    )


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


def box_inpainting(rng_or_seed, images, *, noise_std: float, box=(4, 4, 8, 8)) -> InverseProblem:
    """One missing box `(top, left, height, width)`, the same for every image:
    `y = mask * (x + noise_std eps)`, `eps ~ N(0, I)` (one draw for the whole batch)."""
    images = _check_images(images)
    _check_noise_std(noise_std)
    mask = box_mask((*images.shape[1:3], 1), *tuple(box))
    operators = PixelMask(mask=jnp.broadcast_to(mask, images.shape))
    eps = jax.random.normal(to_key(rng_or_seed), images.shape, images.dtype)
    return _problem(measure(operators, images + noise_std * eps), operators, noise_std, images)


def pixel_inpainting(rng_or_seed, images, *, noise_std: float, rate: float) -> InverseProblem:
    """Random pixel masking with noise (Rozet et al. 2024, corrupted CIFAR; docs/methods.md F).

    Each image loses exactly `round(rate * H * W)` pixels (Python's round, half to even),
    chosen uniformly at random, the same pixels in every channel. Observed pixels get
    Gaussian noise; removed ones are exactly 0 in `y`: `y = mask * (x + noise_std * eps)`.
    """
    images = _check_images(images)
    _check_noise_std(noise_std)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate is the fraction of pixels removed, in [0, 1); got {rate}.")
    n, h, w, c = images.shape
    rng_mask, rng_noise = jax.random.split(to_key(rng_or_seed))
    mask = exact_count_masks(rng_mask, n, (h, w, 1), round(rate * h * w))
    operators = PixelMask(mask=jnp.broadcast_to(mask, images.shape))
    eps = jax.vmap(lambda k: jax.random.normal(k, (h, w, c), images.dtype))(
        _example_keys(rng_noise, n)
    )
    return _problem(measure(operators, images + noise_std * eps), operators, noise_std, images)


def _shared_operator_problem(rng_or_seed, images, operator, noise_std) -> InverseProblem:
    """`y_i = A x_i + noise_std eps_i` for one operator `A` shared by every image."""
    clean = jax.vmap(operator)(images)
    eps = jax.random.normal(to_key(rng_or_seed), clean.shape, clean.dtype)
    return _problem(clean + noise_std * eps, operator, noise_std, images, shared=True)


def super_resolution(
    rng_or_seed,
    images,
    *,
    noise_std: float,
    factor: int = 2,
    blur_sigma: float = 0.0,
    kernel_size: int = 5,
) -> InverseProblem:
    """`factor x factor` average pooling (`BoxDownsample`) plus noise; with `blur_sigma > 0`
    an isotropic Gaussian blur (`kernel_size`, zero padding) first (`BlurDownsample`)."""
    images = _check_images(images)
    _check_noise_std(noise_std)
    h, w = images.shape[1:3]
    factor = int(factor)
    if factor < 1 or h % factor or w % factor:
        raise ValueError(f"superres factor {factor} must divide the image size {h}x{w}.")
    if blur_sigma < 0:
        raise ValueError(f"blur_sigma is a standard deviation in pixels (>= 0), got {blur_sigma}.")
    operator = BoxDownsample(factor=factor)
    if blur_sigma > 0:
        kernel = gaussian_kernel(int(kernel_size), float(blur_sigma), images.dtype)
        operator = BlurDownsample(kernel=kernel, factor=factor)
    return _shared_operator_problem(rng_or_seed, images, operator, noise_std)


def deblurring(
    rng_or_seed, images, *, noise_std: float, kernel_size: int = 5, blur_sigma: float = 1.0
) -> InverseProblem:
    """An isotropic Gaussian blur (`Blur`, 'same' size, zero padding) plus noise."""
    images = _check_images(images)
    _check_noise_std(noise_std)
    if not blur_sigma > 0:
        raise ValueError(f"blur_sigma is a standard deviation in pixels (> 0), got {blur_sigma}.")
    kernel = gaussian_kernel(int(kernel_size), float(blur_sigma), images.dtype)
    return _shared_operator_problem(rng_or_seed, images, Blur(kernel=kernel), noise_std)


def undersampled_mri(
    rng_or_seed,
    images,
    *,
    noise_std: float,
    acceleration: float = 4.0,
    center_fraction: float = 0.08,
) -> InverseProblem:
    """Undersampled k-space of accelerated MRI with complex Gaussian noise (docs/methods.md F).

    Each image gets its own column mask (`mri_column_mask`: `round(W * center_fraction)`
    central columns plus random ones, `round(W / acceleration)` in all), and
    `y = mask * (F x + noise_std * (eps_re + i eps_im))` with `F` the orthonormal centred
    2-D DFT of `UndersampledFourier`; unsampled entries are exactly 0. `images` `[N, H, W, 1]`.
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
    y = measure(operators, images) + noise.astype(jnp.result_type(images.dtype, 1j))
    return _problem(y, operators, noise_std, images)


def projection_matrices(rng_or_seed, num: int, *, obs_dim: int = 2, dim: int = 5) -> jax.Array:
    """`[num, obs_dim, dim]` Gaussian matrices with unit-norm rows, one per observation (E.4)."""
    if int(num) < 1 or int(obs_dim) < 1 or int(dim) < 1:
        raise ValueError(f"num, obs_dim and dim must be >= 1; got {num}, {obs_dim}, {dim}.")
    A = jax.random.normal(to_key(rng_or_seed), (int(num), int(obs_dim), int(dim)))
    return A / jnp.linalg.norm(A, axis=-1, keepdims=True)


def random_projections(
    rng_or_seed, x, *, noise_std: float = 0.01, obs_dim: int = 2
) -> InverseProblem:
    """The toy manifold's observations (Rozet et al. 2024, E.4) as `DenseMatrix` operators.

    `A_i` `[obs_dim, D]` Gaussian with unit-norm rows (key `split(key)[0]`),
    `y_i = A_i x_i + noise_std * eps_i` (key `split(key)[1]`), `x` `[N, D]`.
    """
    x = jnp.asarray(x)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"x must be a non-empty [N, D] array; got shape {x.shape}.")
    _check_noise_std(noise_std)
    rng_A, rng_y = jax.random.split(to_key(rng_or_seed))
    A = projection_matrices(rng_A, len(x), obs_dim=obs_dim, dim=x.shape[1]).astype(x.dtype)
    eps = jax.random.normal(rng_y, A.shape[:2], x.dtype)
    y = jnp.einsum("nmd,nd->nm", A, x, precision="highest") + noise_std * eps
    return _problem(y, DenseMatrix(matrix=A), noise_std, x)


_BUILDERS = {
    "box": box_inpainting,
    "pixels": pixel_inpainting,
    "superres": super_resolution,
    "blur": deblurring,
    "mri": undersampled_mri,
    "projections": random_projections,
}


def observation_options(kind: str) -> dict[str, Any]:
    """`{option: default}` of the observation kind `kind`: its builder's keyword arguments but
    the key, the images and `noise_std` (`inspect.Parameter.empty` for a required one).

    Raises:
      ValueError: an unknown kind.
    """
    if kind not in _BUILDERS:
        raise ValueError(f"unknown observation kind {kind!r}; valid kinds are {list(KINDS)}.")
    return keyword_defaults(_BUILDERS[kind], ("rng_or_seed", "images", "x", "noise_std"))


def observe(kind: str, rng_or_seed, images, *, noise_std: float, **options) -> InverseProblem:
    """Observes `images` through the operator `kind` (one of `KINDS`): `y_i = A_i x_i + n_i`.

    `options` are the builder's own keyword arguments (`observation_options(kind)`: `box`,
    `rate`, `factor`, `kernel_size`/`blur_sigma`, `acceleration`/`center_fraction`,
    `obs_dim`).

    Raises:
      ValueError: an unknown kind or option (before anything is computed), a bad value.
    """
    valid = sorted(observation_options(kind))
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"{kind} observations take the options {valid}, not {unknown}.")
    return _BUILDERS[kind](rng_or_seed, images, noise_std=noise_std, **options)
