"""Observation datasets: exact-count masks, k-space, projections, vmap = loop, zero filling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax.data import manifold, observations
from diffssl_jax.data.phantoms import random_ellipse_phantoms
from diffssl_jax.data.sources import DigitsSource
from diffssl_jax.posterior.operators import DenseMatrix, PixelMask, UndersampledFourier


@pytest.fixture(scope="module")
def digits():
    return jnp.asarray(DigitsSource("test").images[:24])


@pytest.fixture(scope="module")
def phantoms():
    return jnp.asarray(random_ellipse_phantoms(5, 6, 32))


def _loop(operators, x):
    n = len(jax.tree.leaves(operators)[0])
    return jnp.stack([jax.tree.map(lambda a, i=i: a[i], operators)(x[i]) for i in range(n)])


@pytest.mark.parametrize("rate", [0.25, 0.5, 0.75])
def test_masks_remove_an_exact_count_per_image(digits, rate):
    y, ops = observations.masked_digits(0, digits, rate, noise_std=0.0)
    assert isinstance(ops, PixelMask) and ops.mask.shape == digits.shape
    assert ops.mask.dtype == jnp.bool_ and y.shape == digits.shape and y.dtype == digits.dtype
    removed = np.asarray((~ops.mask).sum(axis=(1, 2, 3)))
    np.testing.assert_array_equal(removed, round(rate * 16 * 16))
    assert len({m.tobytes() for m in np.asarray(ops.mask)}) == len(digits)  # all different
    np.testing.assert_array_equal(y, jnp.where(ops.mask, digits, 0.0))


def test_masks_are_shared_across_channels_and_prefix_stable():
    x = jax.random.uniform(jax.random.key(0), (5, 8, 8, 3), minval=-1, maxval=1)
    _, ops = observations.masked_digits(7, x, 0.5, noise_std=0.0)
    np.testing.assert_array_equal(ops.mask, jnp.broadcast_to(ops.mask[..., :1], x.shape))
    np.testing.assert_array_equal((~ops.mask).sum(axis=(1, 2, 3)), 32 * 3)
    y2, ops2 = observations.masked_digits(7, x[:2], 0.5, noise_std=0.01)
    np.testing.assert_array_equal(ops2.mask, ops.mask[:2])
    y5, _ = observations.masked_digits(7, x, 0.5, noise_std=0.01)
    np.testing.assert_array_equal(y2, y5[:2])


def test_mask_noise_is_on_observed_pixels_only(digits):
    y, ops = observations.masked_digits(1, digits, 0.5, noise_std=0.1)
    assert float(jnp.abs(jnp.where(ops.mask, 0.0, y)).max()) == 0.0
    residual = np.asarray(y - digits)[np.asarray(ops.mask)]
    assert abs(residual.std() - 0.1) < 0.01 and abs(residual.mean()) < 0.01


@pytest.mark.parametrize("acceleration", [4.0, 8.0])
def test_kspace_shapes_dtypes_and_acceleration(phantoms, acceleration):
    y, ops = observations.kspace_measurements(0, phantoms, acceleration, 0.08, noise_std=0.0)
    assert isinstance(ops, UndersampledFourier) and ops.mask.shape == (6, 32)
    assert y.shape == (6, 32, 32) and y.dtype == jnp.complex64
    np.testing.assert_array_equal(ops.mask.sum(axis=1), round(32 / acceleration))
    np.testing.assert_array_equal(ops.mask[:, 15:18], True)  # round(32 * 0.08) = 3 centre columns
    assert float(jnp.abs(jnp.where(ops.mask[:, None, :], 0, y)).max()) == 0.0
    assert len({m.tobytes() for m in np.asarray(ops.mask)}) > 1  # per-image masks


def test_kspace_noise_is_complex_gaussian_on_sampled_entries(phantoms):
    clean, ops = observations.kspace_measurements(3, phantoms, 4.0, 0.08, noise_std=0.0)
    y, ops_noisy = observations.kspace_measurements(3, phantoms, 4.0, 0.08, noise_std=0.1)
    np.testing.assert_array_equal(ops_noisy.mask, ops.mask)
    sampled = np.broadcast_to(np.asarray(ops.mask)[:, None, :], y.shape)
    noise = np.asarray(y - clean)
    assert np.abs(noise[~sampled]).max() == 0.0
    for part in (noise.real[sampled], noise.imag[sampled]):
        assert abs(part.std() - 0.1) < 0.01 and abs(part.mean()) < 0.01


def test_full_sampling_zero_filled_recovers_the_image(phantoms):
    y, _ = observations.kspace_measurements(0, phantoms, 1.0, 0.08, noise_std=0.0)
    ops = UndersampledFourier(mask=jnp.ones((6, 32), bool))
    np.testing.assert_allclose(observations.zero_filled(y, ops), phantoms, atol=1e-5)


def test_vmap_equals_python_loop(digits, phantoms):
    _, masks = observations.masked_digits(0, digits[:6], 0.5)
    _, fourier = observations.kspace_measurements(0, phantoms, 4.0)
    x = manifold.randman(0, 6)
    _, dense = observations.linear_projections(0, x)
    for ops, images in ((masks, digits[:6]), (fourier, phantoms), (dense, x)):
        batched = jax.vmap(lambda op, xi: op(xi))(ops, images)
        np.testing.assert_allclose(batched, _loop(ops, images), atol=1e-6)
        np.testing.assert_array_equal(observations.measure(ops, images), batched)


def test_zero_filled_equals_the_adjoint_for_noise_free_data(digits, phantoms):
    y, masks = observations.masked_digits(0, digits, 0.75, noise_std=0.0)
    np.testing.assert_array_equal(observations.zero_filled(y, masks), y)
    k, fourier = observations.kspace_measurements(0, phantoms, 4.0, noise_std=0.0)
    zf = observations.zero_filled(k, fourier)
    assert zf.shape == phantoms.shape and zf.dtype == jnp.float32
    struct = jax.ShapeDtypeStruct((32, 32, 1), jnp.float32)
    adjoint = jnp.stack(
        [jax.tree.map(lambda a, i=i: a[i], fourier).adjoint(k[i], struct) for i in range(6)]
    )
    np.testing.assert_allclose(zf, adjoint, atol=1e-6)
    inverse_fft = [
        jnp.fft.fftshift(jnp.fft.ifft2(jnp.fft.ifftshift(k[i]), norm="ortho")).real
        for i in range(6)
    ]
    np.testing.assert_allclose(zf[..., 0], jnp.stack(inverse_fft), atol=1e-5)
    assert float(jnp.abs(zf - phantoms).mean()) > 0.01  # 4x undersampling loses information


def test_linear_projections_wrap_the_manifold():
    x = manifold.randman(0, 256)
    y, ops = observations.linear_projections(4, x, noise_std=0.0)
    assert isinstance(ops, DenseMatrix) and ops.matrix.shape == (256, 2, 5) and y.shape == (256, 2)
    np.testing.assert_allclose(jnp.linalg.norm(ops.matrix, axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(y, jnp.einsum("nmd,nd->nm", ops.matrix, x), atol=1e-5)
    zf = observations.zero_filled(y, ops)
    np.testing.assert_allclose(zf, jnp.einsum("nmd,nm->nd", ops.matrix, y), atol=1e-5)
    noisy, _ = observations.linear_projections(4, x)
    assert 0.005 < float(jnp.std(noisy - y)) < 0.015


def test_float64_is_kept():
    with jax.enable_x64(True):
        x = jnp.asarray(random_ellipse_phantoms(0, 2, 16), jnp.float64)
        y, _ = observations.masked_digits(0, x, 0.5)
        k, ops = observations.kspace_measurements(0, x, 4.0, 0.125)
        assert y.dtype == jnp.float64 and k.dtype == jnp.complex128
        assert observations.zero_filled(k, ops).dtype == jnp.float64


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x: observations.masked_digits(0, x, 1.0), "rate"),
        (lambda x: observations.masked_digits(0, x, -0.1), "rate"),
        (lambda x: observations.masked_digits(0, x, 0.5, noise_std=-1.0), "noise_std"),
        (lambda x: observations.masked_digits(0, x[0], 0.5), "\\[N, H, W, C\\]"),
        (lambda x: observations.masked_digits(0, x.astype(jnp.int32), 0.5), "real floats"),
        (lambda x: observations.masked_digits(0, x.at[0, 0, 0, 0].set(jnp.nan), 0.5), "NaN"),
        (lambda x: observations.masked_digits(-3, x, 0.5), "seed"),
        (lambda x: observations.kspace_measurements(0, jnp.tile(x, 3), 4.0), "\\[N, H, W, 1\\]"),
        (lambda x: observations.kspace_measurements(0, x, 0.5), "acceleration"),
        (lambda x: observations.kspace_measurements(0, x, 8.0, 0.5), "center_fraction"),
        (lambda x: observations.linear_projections(0, x), "\\[N, n\\]"),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call(jnp.zeros((2, 8, 8, 1)))
