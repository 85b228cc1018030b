"""Tests for the SSIM map and MDM's SSIM loss, in float64."""

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import signal

from diffssl_jax.objectives import ssim


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _pair(seed=0, shape=(2, 12, 10, 3)):
    rs = np.random.RandomState(seed)
    x = rs.uniform(-1, 1, shape)
    y = np.clip(x + 0.3 * rs.randn(*shape), -1, 1)
    return x, y


def _reference_loss(x, y, max_val):
    """torchgeometry 0.1.2 SSIM(5) loss, written out with scipy: 2-D 5x5 window, zero pad 2."""
    g = np.exp(-((np.arange(5) - 2) ** 2) / (2 * 1.5**2))
    g /= g.sum()
    kernel = np.outer(g, g)

    def blur(z):
        out = np.empty_like(z)
        for b in range(z.shape[0]):
            for c in range(z.shape[-1]):
                out[b, :, :, c] = signal.correlate2d(
                    z[b, :, :, c], kernel, mode="same", boundary="fill", fillvalue=0.0
                )
        return out

    mu_x, mu_y = blur(x), blur(y)
    s_xx = blur(x * x) - mu_x**2
    s_yy = blur(y * y) - mu_y**2
    s_xy = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    smap = ((2 * mu_x * mu_y + c1) * (2 * s_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (s_xx + s_yy + c2)
    )
    return np.mean(np.clip(1 - smap, 0, 1) / 2), smap


@pytest.mark.parametrize("convention,max_val", [("reference", 1.0), ("data_range", 2.0)])
def test_loss_matches_reference_formula(convention, max_val):
    x, y = _pair()
    loss = ssim.ssim_loss(jnp.asarray(x), jnp.asarray(y), data_range_convention=convention)
    expected, expected_map = _reference_loss(x, y, max_val)
    np.testing.assert_allclose(loss, expected, rtol=1e-10, atol=1e-12)
    smap = ssim.ssim_map(jnp.asarray(x), jnp.asarray(y), max_val=max_val)
    assert smap.shape == x.shape
    np.testing.assert_allclose(smap, expected_map, rtol=1e-10, atol=1e-12)


def test_loss_of_identical_images_is_exactly_zero():
    x, _ = _pair(1)
    assert float(ssim.ssim_loss(jnp.asarray(x), jnp.asarray(x))) == 0.0
    flat = jnp.zeros((8, 8, 1))
    assert float(ssim.ssim_loss(flat, flat)) == 0.0


def test_per_example_vmap_mean_equals_batch_loss():
    x, y = map(jnp.asarray, _pair(2))
    per_example = jax.vmap(ssim.ssim_loss)(x, y)
    np.testing.assert_allclose(jnp.mean(per_example), ssim.ssim_loss(x, y), rtol=1e-12)


def test_valid_padding_agrees_with_dm_pix_and_the_zero_padded_interior():
    x, y = map(jnp.asarray, _pair(3))
    valid = ssim.ssim_map(x, y, padding="valid")
    assert valid.shape == (2, 8, 6, 3)
    np.testing.assert_allclose(
        jnp.mean(valid, axis=(1, 2, 3)), dm_pix.ssim(x, y, filter_size=5), rtol=1e-12
    )
    zero = ssim.ssim_map(x, y, padding="zero")
    np.testing.assert_allclose(zero[:, 2:-2, 2:-2, :], valid, rtol=1e-10)


def test_symmetric_and_finite_gradient():
    x, y = map(jnp.asarray, _pair(4))
    np.testing.assert_allclose(ssim.ssim_loss(x, y), ssim.ssim_loss(y, x), rtol=1e-14)
    grad = jax.jit(jax.grad(ssim.ssim_loss))(x, y)
    assert np.all(np.isfinite(grad))
    assert np.any(grad != 0)
    # Finite-difference check of one coordinate.
    e = np.zeros(x.shape)
    e[0, 5, 4, 1] = 1e-6
    fd = (ssim.ssim_loss(x + e, y) - ssim.ssim_loss(x - e, y)) / 2e-6
    np.testing.assert_allclose(grad[0, 5, 4, 1], fd, rtol=1e-5)


def test_bad_inputs_raise():
    x = jnp.zeros((8, 8, 3))
    with pytest.raises(ValueError, match="same shape"):
        ssim.ssim_loss(x, x[:4])
    with pytest.raises(ValueError, match="same shape"):
        ssim.ssim_loss(x[..., 0], x[..., 0])
    with pytest.raises(ValueError, match="Unknown padding"):
        ssim.ssim_map(x, x, padding="same")
    with pytest.raises(ValueError, match="filter_size must be odd"):
        ssim.ssim_map(x, x, filter_size=4)
    with pytest.raises(ValueError, match="smaller than filter_size"):
        ssim.ssim_map(x[:3], x[:3], padding="valid")
    with pytest.raises(ValueError, match="data_range_convention"):
        ssim.ssim_loss(x, x, data_range_convention="[0,1]")
