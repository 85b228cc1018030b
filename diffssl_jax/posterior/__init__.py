"""Posterior denoisers for linear inverse problems: operators, CG, MMPS and baselines.

Everything here sees only the denoiser contract ``denoiser(x, sigma) -> x0_hat`` on one
example (``x = x0 + sigma * eps``) and returns a posterior denoiser with the same contract.
"""

from diffssl_jax.posterior.baselines import (
    DiffPIRDenoiser,
    DPSDenoiser,
    PiGDMDenoiser,
    TMPDDenoiser,
    diffpir,
    dps,
    pigdm,
    tmpd,
)
from diffssl_jax.posterior.cg import CGResult, cg
from diffssl_jax.posterior.mmps import MMPSDenoiser, mmps
from diffssl_jax.posterior.operators import (
    Blur,
    BoxDownsample,
    DenseMatrix,
    Identity,
    PixelMask,
    UndersampledFourier,
    box_mask,
    check_operator,
    gaussian_kernel,
    make_adjoint,
    motion_kernel,
    mri_column_mask,
    random_pixel_mask,
)
from diffssl_jax.posterior.sampling import sample_posterior

__all__ = [
    "Blur",
    "BoxDownsample",
    "CGResult",
    "DPSDenoiser",
    "DenseMatrix",
    "DiffPIRDenoiser",
    "Identity",
    "MMPSDenoiser",
    "PiGDMDenoiser",
    "PixelMask",
    "TMPDDenoiser",
    "UndersampledFourier",
    "box_mask",
    "cg",
    "check_operator",
    "diffpir",
    "dps",
    "gaussian_kernel",
    "make_adjoint",
    "mmps",
    "motion_kernel",
    "mri_column_mask",
    "pigdm",
    "random_pixel_mask",
    "sample_posterior",
    "tmpd",
]
