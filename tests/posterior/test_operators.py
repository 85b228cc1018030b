"""Operators: adjoint identities, values against NumPy/SciPy, masks, kernels, and checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from diffssl_jax.posterior import operators as ops


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _operators():
    """``(name, A, x_shape)`` for every operator kind, with random float64 data."""
    rng = np.random.default_rng(0)
    mask3 = jnp.asarray(rng.random((6, 6, 2)) < 0.6)
    return [
        ("identity", ops.Identity(), (5, 3)),
        ("mask", ops.PixelMask(mask3), (6, 6, 2)),
        ("mask_broadcast", ops.PixelMask(jnp.asarray(rng.random((6, 6, 1)) < 0.5)), (6, 6, 3)),
        ("box", ops.PixelMask(ops.box_mask((6, 6), 1, 2, 3, 2)), (6, 6)),
        ("downsample", ops.BoxDownsample(2), (8, 6, 2)),
        (
            "blur_downsample",
            ops.BlurDownsample(ops.gaussian_kernel(5, 1.0, jnp.float64), factor=2),
            (8, 6, 2),
        ),
        ("blur_gauss", ops.Blur(ops.gaussian_kernel(5, 1.2, jnp.float64)), (9, 7, 2)),
        ("blur_motion", ops.Blur(ops.motion_kernel(5, 30.0, jnp.float64)), (8, 8)),
        ("dense", ops.DenseMatrix(jnp.asarray(rng.normal(size=(7, 12)))), (4, 3)),
        (
            "dense_complex",
            ops.DenseMatrix(jnp.asarray(rng.normal(size=(5, 9)) + 1j * rng.normal(size=(5, 9)))),
            (9,),
        ),
        ("mri_columns", ops.UndersampledFourier(ops.mri_column_mask(3, 8, 2, 0.25)), (8, 8)),
        (
            "mri_2d",
            ops.UndersampledFourier(jnp.asarray(rng.random((8, 8)) < 0.4)),
            (8, 8, 1),
        ),
    ]


NAMES = [
    "identity", "mask", "mask_broadcast", "box", "downsample", "blur_downsample", "blur_gauss",
    "blur_motion",
    "dense", "dense_complex", "mri_columns", "mri_2d",
]  # fmt: skip


def _operator(name):
    (entry,) = [o for o in _operators() if o[0] == name]
    return entry[1:]


def _random(rng, shape, complex_=False):
    x = rng.normal(size=shape)
    return jnp.asarray(x + 1j * rng.normal(size=shape) if complex_ else x)


@pytest.mark.parametrize("name", NAMES)
def test_adjoint_identity_real_inputs(name):
    """``Re <A x, y> = <x, A^H y>`` for real x (the real-linear adjoint; exact for real A)."""
    A, x_shape = _operator(name)
    rng = np.random.default_rng(1)
    x = _random(rng, x_shape)
    ax = A(x)
    y = _random(rng, ax.shape, jnp.iscomplexobj(ax))
    aty = A.adjoint(y, x)
    assert aty.shape == x.shape and aty.dtype == jnp.float64
    lhs, rhs = jnp.real(jnp.vdot(ax, y)), jnp.vdot(x, aty)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-12 * float(jnp.linalg.norm(ax)))
    # The adjoint is the (conjugate) transpose of the operator's explicit matrix.
    eye = jnp.eye(x.size, dtype=x.dtype)
    mat = np.asarray(jax.vmap(lambda e: A(e.reshape(x_shape)).reshape(-1))(eye)).T
    expected = np.real(mat.conj().T @ np.asarray(y).reshape(-1))
    np.testing.assert_allclose(np.asarray(aty).reshape(-1), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mask_kind", ["columns", "2d"])
def test_mri_complex_adjoint_identity(mask_kind):
    """For complex images: ``<A x, y> = <x, A^H y>`` with complex inner products."""
    rng = np.random.default_rng(2)
    mask = ops.mri_column_mask(0, 16, 4, 0.125) if mask_kind == "columns" else rng.random((16, 16))
    A = ops.UndersampledFourier(jnp.asarray(mask))
    x, y = _random(rng, (16, 16), True), _random(rng, (16, 16), True)
    aty = A.adjoint(y, x)
    assert aty.dtype == jnp.complex128
    np.testing.assert_allclose(jnp.vdot(A(x), y), jnp.vdot(x, aty), rtol=1e-12)


def test_mri_matches_numpy_and_is_orthonormal():
    rng = np.random.default_rng(3)
    x = _random(rng, (8, 8))
    full = ops.UndersampledFourier(jnp.ones(8, bool))
    expected = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(np.asarray(x)), norm="ortho"))
    np.testing.assert_allclose(full(x), expected, atol=1e-12)
    np.testing.assert_allclose(jnp.linalg.norm(full(x)), jnp.linalg.norm(x), rtol=1e-12)
    np.testing.assert_allclose(full.adjoint(full(x)), x, atol=1e-12)
    assert full(x[..., None]).shape == (8, 8)
    # The zero frequency (the image sum / 8) is at [H // 2, W // 2].
    np.testing.assert_allclose(full(x)[4, 4], jnp.sum(x) / 8, rtol=1e-12)


def test_mri_column_mask_fraction_centre_and_seed():
    mask = ops.mri_column_mask(0, 64, 4, 0.08)
    assert mask.dtype == jnp.bool_ and mask.shape == (64,)
    assert int(mask.sum()) == 16  # round(64 / 4) columns in total
    assert bool(jnp.all(mask[30:35]))  # the 5 = round(64 * 0.08) centre columns around 32
    assert bool(jnp.all(mask == ops.mri_column_mask(0, 64, 4, 0.08)))
    assert not bool(jnp.all(mask == ops.mri_column_mask(1, 64, 4, 0.08)))
    assert bool(jnp.all(mask == ops.mri_column_mask(jax.random.key(0), 64, 4, 0.08)))
    with pytest.raises(ValueError, match="center_fraction"):
        ops.mri_column_mask(0, 64, 8, 0.25)


def test_box_and_random_masks():
    box = ops.box_mask((6, 5, 3), 1, 2, 3, 2)
    assert box.shape == (6, 5, 3) and int((~box).sum()) == 3 * 2 * 3
    assert not bool(box[1, 2, 0]) and bool(box[0, 0, 0]) and bool(box[4, 2, 0])
    with pytest.raises(ValueError, match="does not fit"):
        ops.box_mask((6, 5), 4, 0, 3, 2)
    mask = ops.random_pixel_mask(jax.random.key(0), (64, 64), 0.75)
    assert mask.dtype == jnp.bool_ and abs(float(mask.mean()) - 0.25) < 0.02
    with pytest.raises(ValueError, match="fraction"):
        ops.random_pixel_mask(jax.random.key(0), (4, 4), 1.5)


def test_downsample_is_block_mean():
    x = jnp.arange(16.0).reshape(4, 4)
    np.testing.assert_allclose(ops.BoxDownsample(2)(x), [[2.5, 4.5], [10.5, 12.5]])
    assert ops.BoxDownsample(2).adjoint(jnp.ones((2, 2))).shape == (4, 4)
    with pytest.raises(ValueError, match="divisible"):
        ops.BoxDownsample(3)(x)


def test_blur_downsample_is_the_block_mean_of_the_scipy_blur():
    rng = np.random.default_rng(5)
    x = _random(rng, (8, 6))
    kernel = ops.gaussian_kernel(5, 1.0, jnp.float64)
    blurred = scipy.signal.convolve2d(np.asarray(x), np.asarray(kernel), mode="same")
    expected = blurred.reshape(4, 2, 3, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(ops.BlurDownsample(kernel, factor=2)(x), expected, atol=1e-12)
    assert ops.BlurDownsample(kernel, factor=2).adjoint(jnp.ones((4, 3))).shape == (8, 6)


def test_blur_matches_scipy_convolution():
    rng = np.random.default_rng(4)
    x = _random(rng, (9, 7, 2))
    kernel = ops.motion_kernel(5, 30.0, jnp.float64)
    out = ops.Blur(kernel)(x)
    for c in range(2):
        expected = scipy.signal.convolve2d(np.asarray(x[..., c]), np.asarray(kernel), mode="same")
        np.testing.assert_allclose(out[..., c], expected, atol=1e-12)


def test_kernels():
    g = ops.gaussian_kernel(7, 1.5)
    assert g.dtype == jnp.float32 and g.shape == (7, 7)
    np.testing.assert_allclose(g.sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(g, g.T, atol=1e-7)
    assert int(jnp.argmax(g)) == 24
    horizontal, vertical = ops.motion_kernel(7, 0.0), ops.motion_kernel(7, 90.0)
    np.testing.assert_allclose(horizontal.sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(horizontal[3], np.full(7, 1 / 7), rtol=1e-5)
    np.testing.assert_allclose(vertical, horizontal.T, atol=1e-7)
    diagonal = ops.motion_kernel(7, 45.0)
    np.testing.assert_allclose(np.diag(np.fliplr(np.asarray(diagonal))), np.full(7, 1 / 7))


def test_operators_are_pytrees_that_vmap():
    """A dataset of per-observation masks is one stacked operator."""
    rng = np.random.default_rng(5)
    masks = jnp.asarray(rng.random((3, 4, 4)) < 0.5)
    xs = _random(rng, (3, 4, 4))
    out = jax.vmap(lambda A, x: A(x))(ops.PixelMask(masks), xs)
    np.testing.assert_allclose(out, xs * masks)
    adj = jax.jit(jax.vmap(lambda A, y: A.adjoint(y)))(ops.PixelMask(masks), out)
    np.testing.assert_allclose(adj, out)


def test_check_operator_accepts_every_operator():
    rng = np.random.default_rng(6)
    operators = _operators()
    assert [o[0] for o in operators] == NAMES
    for _, A, x_shape in operators:
        x = _random(rng, x_shape)
        ops.check_operator(A, x, A(x), 0.01)
        ops.check_operator(A, jax.ShapeDtypeStruct(x_shape, jnp.float64), A(x), jnp.zeros(()))


def test_check_operator_shape_and_dtype_errors():
    A, x = ops.BoxDownsample(2), jnp.zeros((8, 8, 3))
    with pytest.raises(ValueError, match=r"operator maps \[8, 8, 3\] to \[4, 4, 3\] but y has"):
        ops.check_operator(A, x, jnp.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match="real/complex"):
        ops.check_operator(A, x, jnp.zeros((4, 4, 3), jnp.complex128))
    mri = ops.UndersampledFourier(jnp.ones(8))
    with pytest.raises(ValueError, match="real/complex"):
        ops.check_operator(mri, jnp.zeros((8, 8)), jnp.zeros((8, 8)))
    with pytest.raises(ValueError, match="real-input operator"):
        ops.check_operator(ops.PixelMask(jnp.ones((4, 4))), jnp.zeros((4, 4), jnp.complex128), x)
    with pytest.raises(ValueError, match="cast y or x"):
        ops.check_operator(A, x, jnp.zeros((4, 4, 3), jnp.float32))


@pytest.mark.parametrize(
    "noise_var, match",
    [(-0.1, ">= 0"), (np.nan, "finite"), (np.array([0.1, np.inf]), "finite"),
     (np.ones(3), "broadcast"), (1j, "real variance")],
)  # fmt: skip
def test_check_operator_noise_errors(noise_var, match):
    y = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match=match):
        ops.check_operator(ops.Identity(), jnp.zeros((4, 2)), y, noise_var)


@pytest.mark.parametrize(
    "fn", [jnp.tanh, lambda x: x + 1.0, lambda x: x**2, jnp.abs, lambda x: x * (1 + 1e-3 * x)]
)
def test_check_operator_rejects_nonlinear_functions(fn):
    with pytest.raises(ValueError, match="not linear"):
        ops.check_operator(fn, jnp.zeros((6, 3)), jnp.zeros((6, 3)))


def test_check_operator_value_checks_skip_under_tracing():
    """Under vmap the arrays are traced: static checks still run, value checks are skipped."""

    def check(mask, noise_var):
        ops.check_operator(ops.PixelMask(mask), jnp.zeros((4,)), jnp.zeros((4,)), noise_var)
        return mask

    jax.vmap(check)(jnp.ones((2, 4)), jnp.array([-1.0, 1.0]))  # negative but traced: no error
    with pytest.raises(ValueError, match="operator maps"):
        jax.vmap(lambda m: ops.check_operator(ops.PixelMask(m), jnp.zeros(3), jnp.zeros(3)))(
            jnp.ones((2, 4))
        )
