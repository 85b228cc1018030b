"""Tests for the l-DAE patch tokenizers (PCA and pixels), in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax.corruptions import pca_latent

P, C = 2, 3
D = P * P * C


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _gaussian_patches(seed=0, n=500):
    rs = np.random.RandomState(seed)
    factor = rs.randn(D, D) * np.linspace(2.0, 0.05, D)
    return rs.randn(n, D) @ factor.T + rs.randn(D)


def _images(seed=1, n=3, height=6, width=8):
    return np.random.RandomState(seed).uniform(-1, 1, (n, height, width, C))


@pytest.mark.parametrize("center", [True, False])
def test_basis_is_orthonormal_sorted_and_matches_sample_covariance(center):
    x = _gaussian_patches()
    basis = pca_latent.fit_pca_basis(jnp.asarray(x), center=center, chunk_size=64)
    v, lam = np.asarray(basis.components), np.asarray(basis.eigenvalues)
    np.testing.assert_allclose(v @ v.T, np.eye(D), atol=1e-10)
    assert np.all(np.diff(lam) <= 0)
    if center:
        moment = np.cov(x.T, bias=True)
        np.testing.assert_allclose(basis.mean, x.mean(axis=0), atol=1e-12)
    else:
        moment = x.T @ x / len(x)
        np.testing.assert_array_equal(basis.mean, 0.0)
    np.testing.assert_allclose(lam, np.sort(np.linalg.eigvalsh(moment))[::-1], rtol=1e-10)
    np.testing.assert_allclose(v @ moment @ v.T, np.diag(lam), atol=1e-10)
    pivot = v[np.arange(D), np.argmax(np.abs(v), axis=1)]
    assert np.all(pivot > 0)


def test_chunk_size_does_not_change_the_fit():
    x = jnp.asarray(_gaussian_patches(n=301))
    a = pca_latent.fit_pca_basis(x, chunk_size=7)
    b = pca_latent.fit_pca_basis(x, chunk_size=1000)
    np.testing.assert_allclose(a.eigenvalues, b.eigenvalues, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.components, b.components, atol=1e-10)


@pytest.mark.parametrize("whiten", [False, True])
def test_full_basis_reconstructs_and_truncation_is_a_projection(whiten):
    x = jnp.asarray(_gaussian_patches())
    basis = pca_latent.fit_pca_basis(x, whiten=whiten)
    p = jnp.asarray(_gaussian_patches(seed=5, n=20))
    np.testing.assert_allclose(
        pca_latent.decode(basis, pca_latent.encode(basis, p, D)), p, atol=1e-10
    )
    proj = pca_latent.decode(basis, pca_latent.encode(basis, p, 4))
    again = pca_latent.decode(basis, pca_latent.encode(basis, proj, 4))
    np.testing.assert_allclose(again, proj, atol=1e-10)
    residual = np.asarray(p - proj)
    np.testing.assert_allclose(residual @ np.asarray(basis.components[:4]).T, 0.0, atol=1e-10)
    v4 = np.asarray(basis.components[:4])
    mu = np.asarray(basis.mean)
    np.testing.assert_allclose(proj, mu + (np.asarray(p) - mu) @ v4.T @ v4, atol=1e-10)


def test_whitened_latents_have_unit_variance_on_the_fitting_set():
    x = jnp.asarray(_gaussian_patches())
    z = pca_latent.encode(pca_latent.fit_pca_basis(x, whiten=True), x, 5)
    np.testing.assert_allclose(np.asarray(z).var(axis=0), 1.0, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(z).mean(axis=0), 0.0, atol=1e-10)


def test_extract_merge_round_trip_and_order():
    images = jnp.asarray(_images())
    patches = pca_latent.extract_patches(images, P)
    assert patches.shape == (3, 12, D)
    np.testing.assert_array_equal(pca_latent.merge_patches(patches, P, (6, 8, C)), images)
    # Patch l = i * (W / P) + j, flattened in (p, q, c) order.
    np.testing.assert_array_equal(patches[1, 5], np.asarray(images[1, 2:4, 2:4, :]).reshape(-1))
    single = pca_latent.extract_patches(images[0], P)
    np.testing.assert_array_equal(single, patches[0])


def test_identity_basis_is_the_pixel_tokenizer():
    basis = pca_latent.identity_basis(D, jnp.float64)
    p = jnp.asarray(_gaussian_patches(seed=8, n=7))
    np.testing.assert_array_equal(pca_latent.encode(basis, p, D), p)
    np.testing.assert_array_equal(pca_latent.decode(basis, p), p)
    with pytest.raises(ValueError, match="positive int"):
        pca_latent.identity_basis(0)


def test_coordinates_are_encode_without_the_mean():
    basis = pca_latent.fit_pca_basis(jnp.asarray(_gaussian_patches()), whiten=True)
    p = jnp.asarray(_gaussian_patches(seed=9, n=5))
    np.testing.assert_allclose(
        pca_latent.coordinates(basis, p - basis.mean, 4), pca_latent.encode(basis, p, 4)
    )
    v, lam = np.asarray(basis.components[:4]), np.asarray(basis.eigenvalues[:4])
    np.testing.assert_allclose(
        pca_latent.coordinates(basis, p, 4), np.asarray(p) @ v.T / np.sqrt(lam), rtol=1e-12
    )


def test_bad_inputs_raise():
    basis = pca_latent.fit_pca_basis(jnp.asarray(_gaussian_patches()))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        pca_latent.fit_pca_basis(jnp.zeros((D,)))
    with pytest.raises(ValueError, match="latent_dim"):
        pca_latent.encode(basis, jnp.zeros((5, D)), D + 1)
    with pytest.raises(ValueError, match="patches must end in"):
        pca_latent.encode(basis, jnp.zeros((5, D + 1)), 2)
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        pca_latent.extract_patches(jnp.zeros((5, 8, C)), P)
    with pytest.raises(ValueError, match="do not tile"):
        pca_latent.merge_patches(jnp.zeros((11, D)), P, (6, 8, C))
