"""PSNR and SSIM against scikit-image's reference implementations."""

import numpy as np
import pytest
from skimage import data, metrics

from diffssl_jax.evaluation.image_metrics import psnr, ssim


def _pair():
    ref = data.camera()[::8, ::8].astype(np.float64) / 127.5 - 1.0  # 64x64 in [-1, 1]
    noisy = np.clip(ref + 0.1 * np.random.default_rng(0).normal(size=ref.shape), -1, 1)
    return ref[..., None].astype(np.float32), noisy[..., None].astype(np.float32)


def test_psnr_and_ssim_match_scikit_image():
    ref, noisy = _pair()
    expected_psnr = metrics.peak_signal_noise_ratio(ref, noisy, data_range=2.0)
    np.testing.assert_allclose(psnr(noisy, ref, data_range=2.0), expected_psnr, rtol=1e-5)
    expected_ssim = metrics.structural_similarity(
        ref[..., 0],
        noisy[..., 0],
        data_range=2.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    # skimage pads ("reflect") and crops; dm-pix uses valid convolutions: close, not equal.
    np.testing.assert_allclose(ssim(noisy, ref, data_range=2.0), expected_ssim, atol=0.01)
    np.testing.assert_allclose(ssim(ref, ref), 1.0, rtol=1e-6)
    batch = np.stack([noisy, ref])
    assert psnr(batch, np.stack([ref, ref])).shape == (2,)


def test_bad_shapes():
    ref, noisy = _pair()
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(noisy[:10], ref)
    with pytest.raises(ValueError, match="exceeds the image side"):
        ssim(noisy[:8, :8], ref[:8, :8])
