"""Inverse problems for evaluating posterior samplers: observations, posterior denoisers, priors.

An evaluation problem is held-out images ``x_i``, one linear operator per image and noisy
observations ``y_i = A_i x_i + n_i``, ``n_i ~ N(0, noise_std^2 I)`` (for complex MRI data:
on the real and on the imaginary part). The kinds (docs/methods.md F; Rozet et al. 2024, Sec. 5):

* ``box``: inpainting, one missing box (``PixelMask``; unobserved entries of ``y`` are 0);
* ``pixels``: inpainting, ``round(rate H W)`` random pixels removed per image;
* ``superres``: super-resolution, ``factor x factor`` average pooling (``BoxDownsample``);
* ``mri``: accelerated MRI, a random column mask with a fully sampled centre per image
  (``UndersampledFourier``, ``acceleration`` 4 or 8).

``make_posterior_factory`` turns a method name and its options into
``(denoiser, A, y, noise_var) -> posterior_denoiser`` for ``posterior.sample_posterior``;
``load_denoiser`` (re-exported from ``evaluation.priors``; also ``diffssl_jax.load_denoiser``)
turns a trained DDPM workdir into the denoiser contract.
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffssl_jax import posterior
from diffssl_jax.data import observations, phantoms
from diffssl_jax.data.sources import make_source
from diffssl_jax.evaluation.priors import load_denoiser  # noqa: F401 (the old import path)

KINDS = ("box", "pixels", "superres", "mri")
METHODS = ("mmps", "dps", "pigdm", "tmpd", "diffpir")


class Problem(NamedTuple):
    """A batch of observations of ``N`` images.

    Attributes:
      ys: ``[N, *y_shape]`` observations (complex ``[N, H, W]`` for MRI).
      operators: one operator pytree whose leaves have the leading axis ``N``.
      noise_var: ``Sigma_y = noise_std^2`` (a scalar; per part for complex ``y``).
      observed: ``[N, H, W, C]`` the observation seen as an image: ``y`` itself for masks
        (0 where missing), nearest upsampling for super-resolution, the zero-filled inverse
        FFT ``Re(F^H y)`` for MRI. It is the "zero-filled" baseline of the comparisons.
    """

    ys: jax.Array
    operators: Any
    noise_var: float
    observed: np.ndarray


def _box_problem(rng, images, noise_std, box):
    mask = posterior.box_mask((*images.shape[1:3], 1), *box)
    mask = jnp.broadcast_to(mask, images.shape)
    operators = posterior.PixelMask(mask=mask)
    eps = jax.random.normal(rng, images.shape, images.dtype)
    ys = observations.measure(operators, images + noise_std * eps)
    return ys, operators, np.asarray(ys)


def _superres_problem(rng, images, noise_std, factor):
    h, w = images.shape[1:3]
    if factor < 1 or h % factor or w % factor:
        raise ValueError(f"superres factor {factor} must divide the image size {h}x{w}.")
    operators = posterior.BoxDownsample(factor=factor)
    clean = jax.vmap(operators)(images)
    ys = clean + noise_std * jax.random.normal(rng, clean.shape, clean.dtype)
    observed = np.repeat(np.repeat(np.asarray(ys), factor, axis=1), factor, axis=2)
    return ys, operators, observed


def make_problem(
    rng,
    images,
    *,
    kind,
    noise_std,
    box=(4, 4, 8, 8),
    rate=0.5,
    factor=2,
    acceleration=4.0,
    center_fraction=0.08,
):
    """Observes ``images`` through the operator ``kind``: ``y_i = A_i x_i + noise_std eps_i``.

    Args:
      rng: a JAX key or non-negative integer seed (masks and noise).
      images: ``[N, H, W, C]`` real images in ``[-1, 1]`` (``C = 1`` for MRI).
      kind: one of ``KINDS``.
      noise_std: observation noise standard deviation, ``>= 0``.
      box: ``(top, left, height, width)`` of the missing box (``box``).
      rate: fraction of pixels removed (``pixels``).
      factor: downsampling factor (``superres``).
      acceleration, center_fraction: MRI column mask (``mri``).

    Returns:
      A ``Problem``.

    Raises:
      ValueError: unknown kind, negative noise, a box or factor that does not fit the images.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown operator kind {kind!r}; valid kinds are {list(KINDS)}.")
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}.")
    images = jnp.asarray(images, jnp.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}.")
    rng = jax.random.key(rng) if isinstance(rng, int) else rng
    if kind == "box":
        ys, operators, observed = _box_problem(rng, images, noise_std, tuple(box))
    elif kind == "pixels":
        ys, operators = observations.masked_digits(rng, images, rate, noise_std)
        observed = np.asarray(ys)
    elif kind == "superres":
        ys, operators, observed = _superres_problem(rng, images, noise_std, int(factor))
    else:
        ys, operators = observations.kspace_measurements(
            rng, images, acceleration, center_fraction, noise_std
        )
        observed = np.asarray(observations.zero_filled(ys, operators))
    return Problem(ys, operators, float(noise_std) ** 2, observed)


def make_posterior_factory(
    name,
    *,
    cg_maxiter=1,
    cg_rtol=0.0,
    cg_max_residual_growth=10.0,
    zeta=1.0,
    data_var=1.0,
    rel_floor=1e-3,
    lambda_=1.0,
):
    """``(denoiser, A, y, noise_var) -> posterior_denoiser`` for the method ``name``.

    Each method reads only its own options: MMPS ``cg_maxiter``, ``cg_rtol``,
    ``cg_max_residual_growth`` (Rozet et al.
    2024); DPS ``zeta`` (Chung et al. 2023); PiGDM ``data_var`` (Song et al. 2023); TMPD
    ``rel_floor`` (Boys et al. 2023); DiffPIR ``lambda_`` (Zhu et al. 2023). See
    ``posterior.mmps`` and ``posterior.baselines`` for their equations.

    Raises:
      ValueError: for an unknown method (before anything is sampled).
    """
    if name == "mmps":
        return functools.partial(
            posterior.mmps,
            cg_maxiter=cg_maxiter,
            cg_rtol=cg_rtol,
            cg_max_residual_growth=cg_max_residual_growth,
        )
    if name == "dps":
        return functools.partial(posterior.dps, zeta=zeta)
    if name == "pigdm":
        return functools.partial(posterior.pigdm, data_var=data_var)
    if name == "tmpd":
        return functools.partial(posterior.tmpd, rel_floor=rel_floor)
    if name == "diffpir":
        return functools.partial(posterior.diffpir, lambda_=lambda_)
    raise ValueError(f"unknown posterior method {name!r}; valid methods are {list(METHODS)}.")


def check_problem(make_posterior, denoiser, problem, shape):
    """Builds the first observation's posterior denoiser eagerly: every check runs now.

    ``posterior.check_operator`` (``A`` maps ``shape`` to ``y``'s shape and dtype, ``A`` is
    linear, ``noise_var`` real, finite and ``>= 0``) and the method's own option checks.
    """
    first_A = jax.tree.map(lambda leaf: leaf[0], problem.operators)
    x_like = jax.ShapeDtypeStruct(tuple(shape), jnp.float32)
    make_posterior(denoiser, first_A, problem.ys[0], problem.noise_var, x_like=x_like)


def load_images(dataset, split, num_images, start, image_size):
    """``[num_images, S, S, C]`` float32 held-out images in ``[-1, 1]``.

    ``dataset``: ``digits`` or ``phantoms`` (``make_source``, images ``start`` onwards of
    ``split``), or ``shepp_logan`` (scikit-image's phantom resized to ``image_size``; one
    image, repeated ``num_images`` times so that each copy gets its own mask and noise).
    """
    if dataset == "shepp_logan":
        return np.repeat(phantoms.shepp_logan(image_size)[None], num_images, axis=0)
    source = make_source(dataset, split, image_size=image_size)
    if start + num_images > len(source):
        raise ValueError(f"{dataset}/{split} has {len(source)} images, not {start + num_images}.")
    return np.stack([source[i]["image"] for i in range(start, start + num_images)])
