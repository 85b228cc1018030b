"""Tests for the l-DAE patch PCA tokenizer, corruption and loss, in float64."""

import math

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


def _fitted_basis(whiten=False):
    x = pca_latent.extract_patches(jnp.asarray(_images(seed=2, n=40)), P).reshape(-1, D)
    return pca_latent.fit_pca_basis(x, whiten=whiten)


@pytest.mark.parametrize("whiten", [False, True])
def test_corruption_at_t_zero_is_the_pca_projection(whiten):
    basis = _fitted_basis(whiten)
    x0 = jnp.asarray(_images(seed=3, n=1)[0])
    eps = jax.random.normal(jax.random.key(0), (12, 6))
    xt = pca_latent.pca_latent_corrupt(basis, x0, jnp.float64(0.0), eps, patch_size=P, latent_dim=6)
    p = np.asarray(pca_latent.extract_patches(x0, P))
    v, mu = np.asarray(basis.components[:6]), np.asarray(basis.mean)
    expected = pca_latent.merge_patches(jnp.asarray(mu + (p - mu) @ v.T @ v), P, x0.shape)
    np.testing.assert_allclose(xt, expected, atol=1e-10)


@pytest.mark.parametrize("whiten", [False, True])
def test_latent_noise_variance_is_sigma_squared(whiten):
    basis, d, t = _fitted_basis(whiten), 6, 0.3
    sigma = math.sqrt(2.0) * t
    x0 = jnp.asarray(_images(seed=4, n=1)[0])
    eps = jax.random.normal(jax.random.key(1), (4000, 12, d))
    corrupt = jax.vmap(
        lambda e: pca_latent.pca_latent_corrupt(
            basis, x0, jnp.float64(t), e, patch_size=P, latent_dim=d
        )
    )
    xt = corrupt(eps)
    clean = pca_latent.pca_latent_corrupt(
        basis, x0, jnp.float64(0.0), eps[0], patch_size=P, latent_dim=d
    )
    noise_latent = pca_latent.encode(
        basis, pca_latent.extract_patches(xt - clean, P) + basis.mean, d
    )
    np.testing.assert_allclose(np.var(np.asarray(noise_latent)), sigma**2, rtol=0.02)
    # Pixel-space noise covariance is sigma^2 V_d^T S^2 V_d (S = sqrt(lambda) if whitening).
    noise_pix = np.asarray(pca_latent.extract_patches(xt - clean, P)).reshape(-1, D)
    scale2 = np.asarray(basis.eigenvalues[:d]) if whiten else np.ones(d)
    v = np.asarray(basis.components[:d])
    expected = sigma**2 * (v.T * scale2) @ v
    np.testing.assert_allclose(np.cov(noise_pix.T), expected, atol=0.03 * np.abs(expected).max())


def _loss_numpy(v, x0, xp, d, w_res, sigma):
    """Direct evaluation of Chen et al. 2024, Eq. 4, with explicit patch loops."""
    height, width, _ = x0.shape
    per_patch = []
    for i in range(0, height, P):
        for j in range(0, width, P):
            diff = (x0[i : i + P, j : j + P] - xp[i : i + P, j : j + P]).reshape(-1)
            r = v @ diff
            w = np.array([1.0 if k < d else w_res for k in range(len(r))])
            per_patch.append(np.sum(w * r**2))
    return np.mean(per_patch) / (1.0 + sigma**2)


def test_weighted_loss_matches_formula():
    basis = _fitted_basis()
    x0, xp = _images(seed=6, n=2)
    loss = pca_latent.pca_weighted_loss(
        basis, jnp.asarray(x0), jnp.asarray(xp), sigma=jnp.float64(0.7), patch_size=P, latent_dim=5
    )
    expected = _loss_numpy(np.asarray(basis.components), x0, xp, 5, 0.1, 0.7)
    np.testing.assert_allclose(loss, expected, rtol=1e-12)
    zero = pca_latent.pca_weighted_loss(
        basis, jnp.asarray(x0), jnp.asarray(x0), sigma=jnp.float64(0.7), patch_size=P, latent_dim=5
    )
    assert float(zero) == 0.0
    # With unit weights the orthonormal basis drops out: mean per-patch squared pixel error.
    unit = pca_latent.pca_weighted_loss(
        basis,
        jnp.asarray(x0),
        jnp.asarray(xp),
        sigma=jnp.float64(0.0),
        patch_size=P,
        latent_dim=5,
        residual_weight=1.0,
    )
    np.testing.assert_allclose(unit, np.sum((x0 - xp) ** 2) / 12, rtol=1e-12)


def test_jit_and_vmap_with_basis_as_argument():
    basis = _fitted_basis()
    x0 = jnp.asarray(_images(seed=7, n=4))
    eps = jax.random.normal(jax.random.key(2), (4, 12, 3))
    t = jnp.linspace(0.0, 1.0, 4)

    @jax.jit
    def corrupt(basis, x0, t, eps):
        fn = lambda x, s, e: pca_latent.pca_latent_corrupt(
            basis, x, s, e, patch_size=P, latent_dim=3
        )
        return jax.vmap(fn)(x0, t, eps)

    assert corrupt(basis, x0, t, eps).shape == x0.shape


def test_bad_inputs_raise():
    basis = _fitted_basis()
    x0 = jnp.zeros((6, 8, C))
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
    with pytest.raises(ValueError, match="eps must have shape"):
        pca_latent.pca_latent_corrupt(
            basis, x0, jnp.float64(0.1), jnp.zeros((12, 4)), patch_size=P, latent_dim=3
        )
    with pytest.raises(ValueError, match="scalar t"):
        pca_latent.pca_latent_corrupt(
            basis, x0, jnp.zeros(2), jnp.zeros((12, 3)), patch_size=P, latent_dim=3
        )
    with pytest.raises(ValueError, match="same shape"):
        pca_latent.pca_weighted_loss(basis, x0, x0[:4], sigma=0.0, patch_size=P, latent_dim=3)
