"""Denoisers ``denoiser(x, sigma) -> x0_hat`` and the samplers that consume them.

``denoisers``: ``GaussianDenoiser``, ``make_vp_denoiser``.
``samplers``: ``sigma_grid``, ``ddpm_ancestral``, ``ddim``, ``edm_heun``,
``euler_maruyama``, ``make_sampler``, ``sample``. Import the submodules explicitly.
"""
