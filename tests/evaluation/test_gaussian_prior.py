"""The Gaussian prior fitted to clean training images: its moments, its denoiser, its units,
and the posterior runner that takes it in place of a trained prior."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax.configs.posterior import patches as patches_problem
from diffssl_jax.data.sources import make_source
from diffssl_jax.evaluation import posterior as posterior_eval
from diffssl_jax.evaluation import priors


def test_fitted_moments_equal_numpy_in_float64():
    images = np.random.default_rng(0).uniform(-1, 1, size=(40, 3, 3, 1))
    with jax.enable_x64(True):
        denoiser = priors.fit_gaussian_prior(images, ridge=1e-3)
        flat = images.reshape(40, 9)
        np.testing.assert_allclose(denoiser.inner.mean, flat.mean(axis=0), rtol=0, atol=1e-14)
        expected_cov = np.cov(flat, rowvar=False) + 1e-3 * np.eye(9)
        np.testing.assert_allclose(denoiser.inner.cov, expected_cov, rtol=0, atol=1e-14)
        # The denoiser acts on one image in data units: E[x0 | x] of N(mean, cov), reshaped.
        x, sigma = jnp.asarray(images[0] + 0.3), jnp.asarray(0.7)
        gain = sigma**2 * np.linalg.inv(expected_cov + sigma**2 * np.eye(9))
        expected = flat[0] + 0.3 - gain @ (flat[0] + 0.3 - flat.mean(axis=0))
        out = denoiser(x, sigma)
        assert out.shape == (3, 3, 1) and out.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(out).ravel(), expected, rtol=0, atol=1e-12)


def test_gaussian_prior_of_a_problem_dataset_is_fitted_to_its_train_split():
    denoiser, shape, record = priors.gaussian_prior("digits")
    train = make_source("digits", "train").images
    assert shape == (16, 16, 1) and denoiser.inner_shape == (256,)
    assert record == {
        "kind": "gaussian",
        "fitted_to": "digits/train",
        "num_images": 1347,
        "ridge": priors.GAUSSIAN_RIDGE,
    }
    np.testing.assert_allclose(denoiser.inner.mean, train.reshape(1347, -1).mean(0), atol=1e-5)
    assert priors.gaussian_prior("shepp_logan")[2]["fitted_to"] == "phantoms/train"


def test_bad_priors_and_images_fail_clearly():
    with pytest.raises(ValueError, match="unknown prior 'flow'"):
        priors.load_prior("flow", None, "patches")
    with pytest.raises(ValueError, match=r"needs images \[N >= 2, H, W, C\]"):
        priors.fit_gaussian_prior(np.zeros((1, 4, 4, 1)))


def test_write_posterior_under_the_gaussian_prior(tmp_path):
    config = patches_problem.get_config("pixels,tiny")
    out = posterior_eval.write_posterior(str(tmp_path), config, prior="gaussian")
    assert out["metrics"].endswith("eval/posterior_patches_pixels_gaussian.json")
    metrics = json.loads((tmp_path / "eval" / "posterior_patches_pixels_gaussian.json").read_text())
    assert metrics["prior"]["fitted_to"] == "patches/train"
    assert metrics["num_images"] == 2 and metrics["all_finite"] and metrics["num_steps"] == 4
    files = np.load(tmp_path / "eval" / "posterior_patches_pixels_gaussian.npz")
    np.testing.assert_array_equal(files["images"], make_source("patches", "validation").images[:2])
    assert (tmp_path / "figures" / "posterior_patches_pixels_gaussian.png").exists()
