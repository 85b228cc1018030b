"""Linear observation operators ``y = A x + n`` for posterior sampling, and their checks.

An operator is a pytree (``flax.struct.dataclass``): its arrays (masks, kernels, matrices)
are leaves, so per-observation operators stack and vmap; factors are static. ``A(x)`` acts
on ONE example, linearly. ``A.adjoint(y) = conj(A^T conj(y)) = A^H y`` with ``A^T`` from
``jax.linear_transpose``; for a real image and a complex ``A`` (MRI) this is ``Re(A^H y)``,
the adjoint of the realified map ``x -> (Re A x, Im A x)``. Noise is separate from ``A``:
``noise_var`` is a scalar or an array broadcasting to ``y``; for complex ``y`` it is the
variance of the real part and of the imaginary part of each entry.
"""

import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


def make_adjoint(A, x_like):
    """Returns ``y -> A^H y`` for inputs shaped like ``x_like``, built by one transpose.

    ``A^H y = conj(A^T conj(y))`` with ``A^T`` from ``jax.linear_transpose``; for real
    ``x_like`` and complex ``y`` this is ``Re(A^H y)`` in ``x_like``'s real dtype.

    ``A`` is a linear callable on one example; ``x_like`` an array or
    ``jax.ShapeDtypeStruct`` giving the input shape and dtype.
    """
    transpose = jax.linear_transpose(A, jax.ShapeDtypeStruct(jnp.shape(x_like), x_like.dtype))
    return lambda y: jnp.conj(transpose(jnp.conj(y))[0])


def _real_struct(shape, y):
    return jax.ShapeDtypeStruct(tuple(shape), jnp.finfo(y.dtype).dtype)


class _Operator:
    """Shared methods; ``input_struct(y)`` is the canonical real input (here ``y``'s shape)."""

    real_input = True

    def input_struct(self, y):
        return _real_struct(y.shape, y)

    def adjoint(self, y, x_like=None):
        """``A^H y`` shaped like ``x_like`` (default ``self.input_struct(y)``, real)."""
        return make_adjoint(self, self.input_struct(y) if x_like is None else x_like)(y)


@flax.struct.dataclass
class Identity(_Operator):
    """``A x = x`` (denoising)."""

    def __call__(self, x):
        return x


@flax.struct.dataclass
class PixelMask(_Operator):
    """Inpainting: ``A x = mask * x``, same shape as ``x`` (zeros where unobserved).

    Keeping the image shape (rather than gathering the observed values) lets observations
    with different masks stack and vmap. Unobserved entries of ``y`` are 0 and carry no
    information: ``A`` is zero there, so the posterior does not depend on them.

    Attributes:
      mask: bool or float array broadcasting to the image, 1 = observed.
    """

    mask: jax.Array

    def __call__(self, x):
        return x * self.mask.astype(x.dtype)


def box_mask(shape, top, left, height, width):
    """Bool mask of ``shape`` (``[H, W]`` or ``[H, W, C]``), False inside a missing box."""
    if not (0 <= top and 0 <= left and top + height <= shape[0] and left + width <= shape[1]):
        raise ValueError(f"box {(top, left, height, width)} does not fit in {tuple(shape)}.")
    mask = np.ones(shape, bool)
    mask[top : top + height, left : left + width] = False
    return jnp.asarray(mask)


def random_pixel_mask(rng, shape, rate):
    """Bool mask of ``shape`` with each entry removed (False) with probability ``rate``."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate is the fraction of pixels removed, in [0, 1]; got {rate}.")
    return jax.random.bernoulli(rng, 1.0 - rate, tuple(shape))


@flax.struct.dataclass
class BoxDownsample(_Operator):
    """Super-resolution: average pooling by ``factor``, ``[H, W, ...] -> [H/f, W/f, ...]``."""

    factor: int = flax.struct.field(pytree_node=False, default=2)

    def __call__(self, x):
        f = self.factor
        h, w = x.shape[:2]
        if f < 1 or h % f or w % f:
            raise ValueError(f"BoxDownsample({f}) needs H, W divisible by it; x is {x.shape}.")
        return x.reshape(h // f, f, w // f, f, *x.shape[2:]).mean(axis=(1, 3))

    def input_struct(self, y):
        return _real_struct((y.shape[0] * self.factor, y.shape[1] * self.factor, *y.shape[2:]), y)


@flax.struct.dataclass
class Blur(_Operator):
    """Deblurring: 2-D convolution of each channel with ``kernel``, 'same' size, zero padding.

    A true convolution (the kernel is flipped), ``x`` of shape ``[H, W]`` or ``[H, W, C]``.

    Attributes:
      kernel: ``[kh, kw]`` array.
    """

    kernel: jax.Array

    def __call__(self, x):
        kernel = self.kernel.astype(x.dtype)

        def conv(image):
            return jax.scipy.signal.convolve2d(image, kernel, mode="same", precision="highest")

        if x.ndim == 2:
            return conv(x)
        if x.ndim == 3:
            return jax.vmap(conv, in_axes=-1, out_axes=-1)(x)
        raise ValueError(f"Blur acts on [H, W] or [H, W, C] images, got shape {x.shape}.")


@flax.struct.dataclass
class BlurDownsample(_Operator):
    """Super-resolution with blur: ``A x = BoxDownsample(factor)(Blur(kernel)(x))``, the
    camera model of blurred super-resolution (a low-pass kernel before the pixel grid).

    Attributes:
      kernel: ``[kh, kw]`` array (``Blur``).
      factor: the average-pooling factor (``BoxDownsample``).
    """

    kernel: jax.Array
    factor: int = flax.struct.field(pytree_node=False, default=2)

    def __call__(self, x):
        return BoxDownsample(factor=self.factor)(Blur(kernel=self.kernel)(x))

    def input_struct(self, y):
        return BoxDownsample(factor=self.factor).input_struct(y)


def gaussian_kernel(size, sigma, dtype=jnp.float32):
    """``[size, size]`` isotropic Gaussian kernel with standard deviation ``sigma``, sum 1."""
    g = np.exp(-0.5 * ((np.arange(size) - (size - 1) / 2) / sigma) ** 2)
    return jnp.asarray(np.outer(g, g) / np.outer(g, g).sum(), dtype)


def motion_kernel(size, angle, dtype=jnp.float32):
    """``[size, size]`` linear motion blur: a line through the centre across the window, sum 1.

    ``angle`` in degrees, counter-clockwise from the horizontal (0: the middle row, 90: the
    middle column, 45: the anti-diagonal); rasterised by rounding 16 points per pixel.
    """
    c, theta = (size - 1) / 2, math.radians(angle)
    half = size / 2 / max(abs(math.cos(theta)), abs(math.sin(theta)))
    t = ((np.arange(16 * size) + 0.5) / (16 * size) * 2 - 1) * half
    rows = np.rint(c - t * math.sin(theta)).astype(int)
    cols = np.rint(c + t * math.cos(theta)).astype(int)
    k = np.zeros((size, size))
    np.add.at(k, (rows, cols), 1.0)
    return jnp.asarray(k / k.sum(), dtype)


@flax.struct.dataclass
class DenseMatrix(_Operator):
    """``A x = matrix @ x.reshape(-1)``, ``matrix`` ``[M, D]`` (real or complex)."""

    matrix: jax.Array

    @property
    def real_input(self):
        return not jnp.iscomplexobj(self.matrix)

    def __call__(self, x):
        if x.size != self.matrix.shape[-1]:
            raise ValueError(f"DenseMatrix {self.matrix.shape} cannot act on x of {x.shape}.")
        return jnp.matmul(self.matrix, x.reshape(-1), precision="highest")

    def input_struct(self, y):
        return _real_struct(self.matrix.shape[-1:], y)


@flax.struct.dataclass
class UndersampledFourier(_Operator):
    """Accelerated MRI: ``A x = mask * F x``, ``F`` the orthonormal centred 2-D DFT.

    ``F x = fftshift(fft2(ifftshift(x), norm='ortho'))``, so the zero frequency sits at
    ``[H // 2, W // 2]`` (the fastMRI layout) and ``F^H F = I``. Input: a real (or complex)
    image ``[H, W]`` or ``[H, W, 1]``; output: complex k-space ``[H, W]``, zero where not
    sampled. For a real image the adjoint is ``Re(F^H (mask * y))`` (see module docstring).

    Attributes:
      mask: ``[H, W]`` sampling mask, or ``[W]`` (sampled columns, as in fastMRI).
    """

    mask: jax.Array
    real_input = False

    def __call__(self, x):
        if x.ndim == 3 and x.shape[-1] == 1:
            x = x[..., 0]
        if x.ndim != 2:
            raise ValueError(f"UndersampledFourier needs [H, W] or [H, W, 1], got {x.shape}.")
        k = jnp.fft.fftshift(jnp.fft.fft2(jnp.fft.ifftshift(x), norm="ortho"))
        return k * self.mask.astype(k.dtype)


def mri_column_mask(rng_or_seed, width, acceleration, center_fraction=0.08):
    """``[W]`` bool column mask: a fully sampled centre plus random columns.

    ``round(width * center_fraction)`` central columns (around ``width // 2``, the zero
    frequency of ``UndersampledFourier``) plus distinct random others, so that
    ``round(width / acceleration)`` columns are sampled in total (fastMRI's random mask,
    with an exact count instead of Bernoulli draws).
    """
    rng = jax.random.key(rng_or_seed) if isinstance(rng_or_seed, int) else rng_or_seed
    num_low, total = round(width * center_fraction), round(width / acceleration)
    if acceleration < 1 or not 0 <= num_low <= total <= width:
        raise ValueError(
            f"mri_column_mask needs acceleration >= 1 and center_fraction <= 1/acceleration: "
            f"{num_low} centre columns but {total} in total of {width}."
        )
    start = (width - num_low + 1) // 2
    centre = np.zeros(width, bool)
    centre[start : start + num_low] = True
    others = jax.random.choice(rng, np.flatnonzero(~centre), (total - num_low,), replace=False)
    return jnp.asarray(centre).at[others].set(True)


def _concrete(*trees):
    leaves = jax.tree.leaves(trees)
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)


def check_noise_var(noise_var, y):
    """Raises ValueError unless ``noise_var`` is real, broadcasts to ``y``, finite and ``>= 0``.

    Values are checked only when concrete (not under jit or vmap tracing).
    """
    nv = noise_var if isinstance(noise_var, jax.Array) else np.asarray(noise_var)
    if jnp.iscomplexobj(nv) or not jnp.issubdtype(nv.dtype, jnp.number):
        raise ValueError(f"noise_var must be a real variance, got dtype {nv.dtype}.")
    pairs = zip(nv.shape[::-1], y.shape[::-1], strict=False)
    if nv.ndim > len(y.shape) or any(n not in (1, m) for n, m in pairs):
        raise ValueError(f"noise_var of shape {nv.shape} does not broadcast to y {y.shape}.")
    if _concrete(nv):
        nv = np.asarray(nv)
        if not np.all(np.isfinite(nv)) or np.any(nv < 0):
            raise ValueError(f"noise_var must be finite and >= 0, got min {nv.min()}.")


def check_shapes(A, x_example, y):
    """Raises ValueError unless ``A`` maps ``x_example`` to an array like ``y`` (static)."""
    if jnp.issubdtype(x_example.dtype, jnp.complexfloating) and getattr(A, "real_input", False):
        raise ValueError(f"complex x ({x_example.dtype}) given to a real-input operator {A!r}.")
    try:
        out = jax.eval_shape(A, jax.ShapeDtypeStruct(jnp.shape(x_example), x_example.dtype))
    except (TypeError, ValueError) as err:
        raise ValueError(f"operator maps {list(jnp.shape(x_example))} to nothing: {err}") from err
    out_shape = list(getattr(out, "shape", [None]))  # None: not a single array
    if out_shape != list(y.shape):
        raise ValueError(
            f"operator maps {list(jnp.shape(x_example))} to {out_shape} but y has shape "
            f"{list(y.shape)}."
        )
    if jnp.iscomplexobj(y) != jnp.issubdtype(out.dtype, jnp.complexfloating):
        raise ValueError(f"y is {y.dtype} but the operator returns {out.dtype} (real/complex).")
    if out.dtype != y.dtype:
        raise ValueError(f"operator returns {out.dtype} but y is {y.dtype}: cast y or x.")


def _check_linear(A, x_example):
    """Raises ValueError unless ``A(a x1 + b x2) = a A x1 + b A x2`` and ``A(0) = 0``."""
    shape, dtype = jnp.shape(x_example), x_example.dtype
    a, b = 0.7, -1.3
    # Eager even inside a jit trace, so nothing is staged; traced operators are skipped.
    with jax.ensure_compile_time_eval():
        k1, k2 = jax.random.split(jax.random.key(0))
        x1, x2 = jax.random.normal(k1, shape, dtype), jax.random.normal(k2, shape, dtype)
        y1, y2, y12, y0 = A(x1), A(x2), A(a * x1 + b * x2), A(jnp.zeros(shape, dtype))
    if not _concrete(y1, y2, y12, y0):
        return
    y1, y2, y12, y0 = (np.asarray(v) for v in (y1, y2, y12, y0))
    scale = abs(a) * np.linalg.norm(y1) + abs(b) * np.linalg.norm(y2)
    tol = 1e4 * np.finfo(y1.dtype).eps * scale + np.finfo(y1.dtype).tiny
    if not np.linalg.norm(y12 - a * y1 - b * y2) <= tol or not np.linalg.norm(y0) <= tol:
        raise ValueError(
            f"the operator {A!r} is not linear: A(a x1 + b x2) != a A(x1) + b A(x2) or "
            "A(0) != 0 on random inputs. Posterior methods need a linear A; linearise a "
            "non-linear forward model first."
        )


def check_operator(A, x_example, y, noise_var=None):
    """Checks an inverse problem before any sampling; raises ValueError naming the problem.

    Static (always): ``A`` maps ``x_example`` (array or ``jax.ShapeDtypeStruct``) to ``y``'s
    shape and dtype, complex ``y`` iff complex output, complex ``x`` only if ``A`` accepts it;
    ``noise_var`` (``None``: unchecked) real and broadcasting to ``y``. On concrete (untraced)
    values: ``noise_var`` finite and ``>= 0``; ``A(a x1 + b x2) = a A x1 + b A x2`` on random
    inputs and ``A(0) = 0``, to ``1e4 eps`` of the output dtype relative.
    """
    check_shapes(A, x_example, y)
    if noise_var is not None:
        check_noise_var(noise_var, y)
    if _concrete(A):
        _check_linear(A, x_example)
