"""Linear inverse problems: operators, the one problem type, MMPS and the baselines.

Everything here sees only the denoiser contract ``denoiser(x, sigma) -> x0_hat`` on one
example (``x = x0 + sigma * eps``) and returns a posterior denoiser with the same contract.
"""

from diffssl_jax.posterior.baselines import (
    DiffPIRDenoiser,
    DPSDenoiser,
    DPSGuide,
    PiGDMDenoiser,
    TMPDDenoiser,
    diffpir,
    dps,
    dps_published,
    pigdm,
    tmpd,
)
from diffssl_jax.posterior.cg import CGResult, cg
from diffssl_jax.posterior.jacobian_diagnostics import (
    JacobianStats,
    jacobian_stats,
    record_trajectory,
    summarize_records,
)
from diffssl_jax.posterior.methods import (
    METHODS,
    PosteriorMethod,
    make_posterior,
    method_options,
    posterior_method,
)
from diffssl_jax.posterior.mmps import MMPSDenoiser, mmps
from diffssl_jax.posterior.observations import (
    KINDS,
    box_inpainting,
    deblurring,
    observation_options,
    observe,
    pixel_inpainting,
    random_projections,
    super_resolution,
    undersampled_mri,
)
from diffssl_jax.posterior.operators import (
    Blur,
    BlurDownsample,
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
from diffssl_jax.posterior.problems import (
    InverseProblem,
    check_problem,
    observation_image,
    zero_filled,
)
from diffssl_jax.posterior.sampling import sample_posterior

__all__ = [
    "Blur",
    "BlurDownsample",
    "BoxDownsample",
    "CGResult",
    "DPSDenoiser",
    "DPSGuide",
    "DenseMatrix",
    "DiffPIRDenoiser",
    "Identity",
    "InverseProblem",
    "JacobianStats",
    "KINDS",
    "METHODS",
    "MMPSDenoiser",
    "PiGDMDenoiser",
    "PixelMask",
    "PosteriorMethod",
    "TMPDDenoiser",
    "UndersampledFourier",
    "box_inpainting",
    "box_mask",
    "cg",
    "check_operator",
    "check_problem",
    "deblurring",
    "diffpir",
    "dps",
    "dps_published",
    "gaussian_kernel",
    "jacobian_stats",
    "make_adjoint",
    "make_posterior",
    "method_options",
    "mmps",
    "motion_kernel",
    "mri_column_mask",
    "observation_image",
    "observation_options",
    "observe",
    "pigdm",
    "pixel_inpainting",
    "posterior_method",
    "random_pixel_mask",
    "random_projections",
    "record_trajectory",
    "sample_posterior",
    "summarize_records",
    "super_resolution",
    "tmpd",
    "undersampled_mri",
    "zero_filled",
]
