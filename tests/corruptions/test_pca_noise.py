"""l-DAE's latent noise, corruption and losses, each roadmap flag against its formula.

Float64 throughout; the expected values are direct numpy evaluations with explicit patch
loops (docs/methods.md C.4, C.5; `corruptions/pca_noise.py`).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax.corruptions import pca_latent, pca_noise

P, C, H, W = 2, 3, 6, 8
D, L = P * P * C, (H // P) * (W // P)


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _images(seed, n=1):
    return np.random.RandomState(seed).uniform(-1, 1, (n, H, W, C))


def _basis(whiten=False):
    x = pca_latent.extract_patches(jnp.asarray(_images(2, n=40)), P).reshape(-1, D)
    return pca_latent.fit_pca_basis(x, whiten=whiten)


def _patches_np(image):
    """`[L, D]`: patch l = i (W / P) + j, flattened row, column, channel."""
    return np.stack(
        [image[i : i + P, j : j + P].reshape(-1) for i in range(0, H, P) for j in range(0, W, P)]
    )


def _image_np(patches):
    image, index = np.zeros((H, W, C)), 0
    for i in range(0, H, P):
        for j in range(0, W, P):
            image[i : i + P, j : j + P] = patches[index].reshape(P, P, C)
            index += 1
    return image


def _corrupt(basis, x0, eps, gamma, sigma, d):
    return np.asarray(
        pca_noise.pca_latent_corrupt(
            basis,
            jnp.asarray(x0),
            jnp.asarray(eps),
            gamma=None if gamma is None else jnp.float64(gamma),
            sigma=jnp.float64(sigma),
            patch_size=P,
            latent_dim=d,
        )
    )


def test_noise_scales_follow_both_schedules():
    t = np.array([0.0, 0.1, 0.5, 0.9])
    gamma, sigma = pca_noise.noise_scales(jnp.asarray(t), gamma_scaling=False)
    np.testing.assert_array_equal(gamma, 1.0)
    np.testing.assert_allclose(sigma, math.sqrt(2.0) * t, rtol=1e-15)
    gamma, sigma = pca_noise.noise_scales(jnp.asarray(t), gamma_scaling=True)
    np.testing.assert_allclose(gamma**2, 1.0 - t, rtol=1e-15)
    np.testing.assert_allclose(gamma**2 + sigma**2, 1.0, rtol=1e-15)
    for scaling in (False, True):
        t_of = pca_noise.time_of_sigma(1 / 3, gamma_scaling=scaling)
        np.testing.assert_allclose(pca_noise.noise_scales(t_of, gamma_scaling=scaling)[1], 1 / 3)
    assert pca_noise.time_of_sigma(1 / 3, gamma_scaling=True) == pytest.approx(1 / 9)
    with pytest.raises(ValueError, match="< 1 with gamma scaling"):
        pca_noise.time_of_sigma(1.0, gamma_scaling=True)
    with pytest.raises(ValueError, match="<= sigma_max"):
        pca_noise.time_of_sigma(1.5, gamma_scaling=False)


def test_pixel_tokenizer_at_d_equal_D_adds_pixel_noise():
    # Identity basis, d = D, gamma = 1: x_t = x0 + sigma eps, eps laid out patch by patch.
    x0 = _images(3)[0]
    eps = np.random.RandomState(4).randn(L, D)
    basis = pca_latent.identity_basis(D, jnp.float64)
    for gamma in (1.0, None):  # None: gamma_t = 1 without the product (the final l-DAE)
        xt = _corrupt(basis, x0, eps, gamma, 0.7, D)
        np.testing.assert_allclose(xt, x0 + 0.7 * _image_np(eps), rtol=0, atol=1e-15)


@pytest.mark.parametrize("d", [1, 3, 7])
def test_latent_dim_removes_exactly_the_components_beyond_d(d):
    basis = _basis()
    v, mu = np.asarray(basis.components), np.asarray(basis.mean)
    x0 = _images(5)[0]
    xt = _corrupt(basis, x0, np.zeros((L, d)), 1.0, 0.0, d)
    for p, q in zip(_patches_np(x0), _patches_np(xt), strict=True):
        coeffs, kept = v @ (p - mu), v @ (q - mu)
        np.testing.assert_allclose(kept[:d], coeffs[:d], atol=1e-13)
        np.testing.assert_allclose(kept[d:], 0.0, atol=1e-13)


def test_full_pca_basis_adds_rotated_pixel_noise():
    # d = D with the PCA: no residual is lost, the noise is V^T eps per patch.
    basis = _basis()
    v = np.asarray(basis.components)
    x0, eps = _images(6)[0], np.random.RandomState(7).randn(L, D)
    xt = _corrupt(basis, x0, eps, 1.0, 0.4, D)
    expected = _image_np(
        np.stack([p + 0.4 * v.T @ e for p, e in zip(_patches_np(x0), eps, strict=True)])
    )
    np.testing.assert_allclose(xt, expected, atol=1e-13)


@pytest.mark.parametrize("whiten", [False, True])
def test_gamma_multiplies_every_latent_component_and_leaves_the_mean(whiten):
    # Latent coordinates of x_t are gamma z0_k + sigma eps_k for every component k <= d.
    basis, d, t = _basis(whiten), 5, 0.36
    gamma, sigma = (float(s) for s in pca_noise.noise_scales(t, gamma_scaling=True))
    assert gamma == pytest.approx(0.8) and sigma == pytest.approx(0.6)
    v, mu = np.asarray(basis.components[:d]), np.asarray(basis.mean)
    scale = np.sqrt(np.asarray(basis.eigenvalues[:d])) if whiten else np.ones(d)
    x0, eps = _images(8)[0], np.random.RandomState(9).randn(L, d)
    xt = _corrupt(basis, x0, eps, gamma, sigma, d)
    for p, q, e in zip(_patches_np(x0), _patches_np(xt), eps, strict=True):
        z0 = v @ (p - mu) / scale
        np.testing.assert_allclose(v @ (q - mu) / scale, gamma * z0 + sigma * e, atol=1e-13)
        np.testing.assert_allclose(q, mu + v.T @ (scale * (gamma * z0 + sigma * e)), atol=1e-13)


def _weighted_np(v, x0, xp, d, w_res, gamma, sigma):
    """Chen et al. 2024, Eq. 4, with lambda = gamma^2 / (gamma^2 + sigma^2)."""
    w = np.array([1.0 if k < d else w_res for k in range(D)])
    per_patch = [
        np.sum(w * (v @ (a - b)) ** 2)
        for a, b in zip(_patches_np(x0), _patches_np(xp), strict=True)
    ]
    return np.mean(per_patch) * gamma**2 / (gamma**2 + sigma**2)


@pytest.mark.parametrize("gamma, sigma", [(1.0, 0.7), (0.8, 0.6)])
def test_image_target_loss_matches_eq_4_with_its_weight(gamma, sigma):
    # gamma = 1: lambda = 1 / (1 + sigma^2) (Eq. 4); gamma^2 + sigma^2 = 1: lambda = gamma^2.
    basis = _basis()
    x0, xp = _images(6, n=2)
    for w_res in (0.1, 0.0):
        loss = pca_noise.pca_weighted_loss(
            basis,
            jnp.asarray(x0),
            jnp.asarray(xp),
            gamma=jnp.float64(gamma),
            sigma=jnp.float64(sigma),
            patch_size=P,
            latent_dim=5,
            residual_weight=w_res,
        )
        v = np.asarray(basis.components)
        expected = _weighted_np(v, x0, xp, 5, w_res, gamma, sigma)
        np.testing.assert_allclose(loss, expected, rtol=1e-12)
    if gamma == 1.0:
        unscaled = pca_noise.pca_weighted_loss(
            basis,
            jnp.asarray(x0),
            jnp.asarray(xp),
            gamma=None,
            sigma=jnp.float64(sigma),
            patch_size=P,
            latent_dim=5,
            residual_weight=0.0,
        )
        np.testing.assert_allclose(unscaled, expected, rtol=1e-14)
    lam = expected / _weighted_np(v, x0, xp, 5, 0.0, 1.0, 0.0)
    np.testing.assert_allclose(lam, gamma**2 if gamma < 1 else 1 / (1 + sigma**2), rtol=1e-12)


@pytest.mark.parametrize("whiten", [False, True])
def test_eps_target_loss_reads_the_noise_from_the_output(whiten):
    basis, d = _basis(whiten), 4
    v = np.asarray(basis.components[:d])
    scale = np.sqrt(np.asarray(basis.eigenvalues[:d])) if whiten else np.ones(d)
    eps, out = np.random.RandomState(10).randn(L, d), _images(11)[0]

    def loss(prediction):
        return pca_noise.pca_eps_loss(
            basis, jnp.asarray(eps), jnp.asarray(prediction), patch_size=P, latent_dim=d
        )

    expected = np.mean(
        [np.sum((e - v @ p / scale) ** 2) for e, p in zip(eps, _patches_np(out), strict=True)]
    )
    np.testing.assert_allclose(loss(out), expected, rtol=1e-12)
    # An output whose latent coordinates are eps (the noise image V_d^T S eps) scores 0.
    noise_image = _image_np(np.stack([v.T @ (scale * e) for e in eps]))
    np.testing.assert_allclose(loss(noise_image), 0.0, atol=1e-20)


def test_jit_and_vmap_with_basis_as_argument():
    basis = _basis()
    x0 = jnp.asarray(_images(7, n=4))
    eps = jax.random.normal(jax.random.key(2), (4, L, 3), jnp.float64)
    gamma, sigma = pca_noise.noise_scales(jnp.linspace(0.0, 1.0, 4), gamma_scaling=True)

    @jax.jit
    def corrupt(basis, x0, eps, gamma, sigma):
        fn = lambda x, e, g, s: pca_noise.pca_latent_corrupt(  # noqa: E731
            basis, x, e, gamma=g, sigma=s, patch_size=P, latent_dim=3
        )
        return jax.vmap(fn)(x0, eps, gamma, sigma)

    assert corrupt(basis, x0, eps, gamma, sigma).shape == x0.shape


def test_bad_inputs_raise():
    basis, x0 = _basis(), jnp.zeros((H, W, C))
    one = jnp.float64(1.0)
    with pytest.raises(ValueError, match="eps must have shape"):
        pca_noise.pca_latent_corrupt(
            basis, x0, jnp.zeros((L, 4)), gamma=one, sigma=one, patch_size=P, latent_dim=3
        )
    with pytest.raises(ValueError, match="scalar gamma and sigma"):
        pca_noise.pca_latent_corrupt(
            basis, x0, jnp.zeros((L, 3)), gamma=one, sigma=jnp.ones(2), patch_size=P, latent_dim=3
        )
    with pytest.raises(ValueError, match="same shape"):
        pca_noise.pca_weighted_loss(
            basis, x0, x0[:4], gamma=one, sigma=one, patch_size=P, latent_dim=3
        )
    with pytest.raises(ValueError, match="latent_dim"):
        pca_noise.pca_weighted_loss(basis, x0, x0, gamma=one, sigma=one, patch_size=P, latent_dim=0)
    with pytest.raises(ValueError, match="eps must have shape"):
        pca_noise.pca_eps_loss(basis, jnp.zeros((L, 2)), x0, patch_size=P, latent_dim=3)
