"""Denoisers ``denoiser(x, sigma) -> x0_hat`` and the samplers that consume them.

``denoisers``: ``GaussianDenoiser``, ``make_vp_denoiser``, ``EDMDenoiser``, ``ScaledDenoiser``.
``samplers``: ``sigma_grid``, ``sigmas_from_config``, ``ddpm_ancestral``, ``ddim``, ``edm_heun``,
``euler_maruyama``, ``make_sampler``, ``sample``. Import the submodules explicitly.
"""
