"""Baseline posterior denoisers with the MMPS contract: DPS, PiGDM, TMPD and DiffPIR.

Each factory ``(denoiser, A, y, noise_var, **step) -> posterior_denoiser`` returns a pytree
``posterior_denoiser(x, sigma) -> x0`` on one example, so the same samplers consume them
(docs/methods.md E.3); ``dps_published`` returns instead a ``samplers.Guided`` whose step
``ddpm_ancestral`` applies in its own variable (Chung et al. 2023, Alg. 1). Where a method
approximates the likelihood score ``grad_x log p(y | x)`` by ``g``, the denoiser returns the
Tweedie form ``D(x) + sigma^2 g`` (VE, ``x = x0 + sigma eps``): a sampler that steps along
``(D_post(x) - x) / sigma^2`` then follows the prior score plus ``g``. Operators,
``noise_var`` and complex observations follow ``posterior.operators``; inner solves use
``posterior.cg``. Outputs keep ``x``'s dtype.
"""

import math
import numbers
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from diffssl_jax.posterior import operators
from diffssl_jax.posterior.cg import cg, real_dot
from diffssl_jax.posterior.checks import check_call, check_cg_options, noise_array, validate_inputs
from diffssl_jax.sampling import samplers


def _num_real(y):
    return y.size * (2 if jnp.iscomplexobj(y) else 1)


def _observation_solve(A, adjoint, noise, scale, residual, maxiter, rtol, adjoint_like):
    """Solves ``(Sigma_y + scale A A^T) v = residual``; returns ``(v, A^T v)``."""

    def matvec(v):
        at_v = adjoint(v)
        return noise * v + scale * A(at_v), at_v

    maxiter = _num_real(residual) if maxiter is None else maxiter
    solution = cg(matvec, residual, maxiter=maxiter, rtol=rtol, aux_like=adjoint_like)
    return solution.x, solution.aux


def _residual_gradient(denoiser, A, y, x, sigma):
    """``(D(x), 1 / ||r||, J^T A^T r)``, ``r = y - A D(x)`` (``1 / ||r|| = 0`` when ``r = 0``):
    ``grad_x ||r||^2 = -2 J^T A^T r``, the norm of THIS example (realified for complex ``y``),
    ``A^T`` the real-linear adjoint. 1 forward + 1 vjp."""
    check_call(A, x, y)
    x0_hat, vjp_fn = jax.vjp(lambda u: denoiser(u, sigma), x)
    residual = y - A(x0_hat)
    norm = jnp.sqrt(real_dot(residual, residual))
    inv_norm = jnp.where(norm > 0, 1 / jnp.where(norm > 0, norm, 1), 0)
    (jt_at_r,) = vjp_fn(operators.make_adjoint(A, x)(residual))
    return x0_hat, inv_norm, jt_at_r


@flax.struct.dataclass
class DPSDenoiser:
    """DPS as a posterior denoiser: ``D(x) - zeta sigma^2 grad_x ||y - A D(x)||``.

    The gradient of the (unsquared) residual norm is the reference's step "normalised by the
    residual norm": ``grad ||r|| = grad ||r||^2 / (2 ||r||)``, the official code's
    ``norm_grad`` (Chung et al. write ``zeta_i = zeta' / ||r||`` on the squared norm, a
    factor 2 apart). The norm is taken PER EXAMPLE (not over a batch, unlike azula), so
    ``grad ||r|| = -J^T A^T r / ||r||``, ``r = y - A D(x)``, and 0 when ``r = 0``.
    As a likelihood score ``-zeta grad ||r||`` the guidance moves a VE DDPM step from
    ``sigma_t`` to ``sigma_s`` by ``-(sigma_t^2 - sigma_s^2) zeta grad ||r||`` (the step's
    coefficient on ``D`` is ``1 - sigma_s^2 / sigma_t^2``): the step of ``DPSGuide`` (DPS as
    published, ``zeta_i grad ||r||^2`` with ``zeta_i = zeta' / ||r||``) with
    ``zeta' = zeta (sigma_t^2 - sigma_s^2) / 2``, which depends on the grid, so one ``zeta``
    is a different published step at 10 and at 1000 steps. ``noise_var`` is validated but
    unused (DPS's Gaussian likelihood is unweighted). Cost: 1 forward + 1 vjp.
    """

    denoiser: Any
    A: Any
    y: jax.Array
    noise_var: Any
    zeta: float = flax.struct.field(pytree_node=False, default=1.0)

    def __call__(self, x, sigma):
        sigma2 = jnp.square(jnp.asarray(sigma, x.dtype))
        x0_hat, inv_norm, jt_at_r = _residual_gradient(self.denoiser, self.A, self.y, x, sigma)
        return x0_hat + (self.zeta * sigma2 * inv_norm).astype(x.dtype) * jt_at_r


@flax.struct.dataclass
class DPSGuide:
    """DPS as published (Chung et al. 2023, Alg. 1, line 7): the step ``zeta_i grad ||r||^2``.

    ``guide(x, sigma) -> (D(x), shift)`` for ``samplers.Guided``: ``ddpm_ancestral`` steps
    to ``x'_s`` with ``x0_hat = D(x)`` and returns ``x_s = x'_s - shift``, with
    ``shift = zeta_i grad_x ||y - A D(x)||^2 = (zeta / ||r||) 2 J^T A^T (A D(x) - y)``,
    ``zeta_i = zeta / ||r||`` (the paper's ``zeta'``; the official code's ``scale`` multiplies
    ``grad ||r||`` and is ``2 zeta``), the norm per example, no step when ``r = 0``. The step
    is in the sampler's variable, the VE ``x``, and its size does not depend on ``sigma`` or
    on the grid: ``DPSDenoiser`` with ``zeta_dps`` makes the same move when
    ``2 zeta = zeta_dps (sigma_t^2 - sigma_s^2)``. Alg. 1 steps in the VP variable
    ``sqrt(abar) x``, where the same ``zeta`` is a VE step ``zeta sqrt((1 + t^2)(1 + s^2))``
    (unit-scaled VP); here ``zeta`` is tuned per task and step count anyway. The official code
    also steps after the last ancestral step (to ``sigma = 0``); so does ``ddpm_ancestral``.
    ``noise_var`` is validated but unused. Cost: 1 forward + 1 vjp.
    """

    denoiser: Any
    A: Any
    y: jax.Array
    noise_var: Any
    zeta: float = flax.struct.field(pytree_node=False, default=1.0)

    def __call__(self, x, sigma):
        x0_hat, inv_norm, jt_at_r = _residual_gradient(self.denoiser, self.A, self.y, x, sigma)
        return x0_hat, (-2 * self.zeta * inv_norm).astype(x.dtype) * jt_at_r


@flax.struct.dataclass
class PiGDMDenoiser:
    """PiGDM (Song et al. 2023): ``D(x) + sigma^2 J^T A^T (Sigma_y + r^2 A A^T)^-1 (y - A D(x))``.

    ``Cov[x0 | x] ~= r^2 I`` with ``r^2 = sigma^2 data_var / (sigma^2 + data_var)``, the
    posterior variance under an ``N(0, data_var I)`` prior (deepinv fixes ``data_var = 1``;
    docs/methods.md E.6). The gradient goes through the denoiser (one vjp). The inner system is
    solved by CG with ``cg_maxiter`` iterations, default ``dim(y)`` real unknowns (exact in
    exact arithmetic), stopping at ``cg_rtol``; for masks and box downsampling ``A A^T`` is
    diagonal or a multiple of ``I`` and CG converges in at most two iterations.

    Unlike MMPS, the gain is not normalised by the network's own Jacobian: where ``sigma^2 J``
    exceeds ``r^2`` (an epsilon-network at large sigma) the correction is amplified. On the
    digits U-Net at sigma = 80, ``data_var = 1`` gives a first correction of ~1.9e3 and the
    sampler diverges; ``data_var = 1000`` gives ~2 (`scripts/compare_posterior.py` tunes it).
    """

    denoiser: Any
    A: Any
    y: jax.Array
    noise_var: Any
    data_var: float = flax.struct.field(pytree_node=False, default=1.0)
    cg_maxiter: Any = flax.struct.field(pytree_node=False, default=None)
    cg_rtol: float = flax.struct.field(pytree_node=False, default=1e-6)

    def __call__(self, x, sigma):
        check_call(self.A, x, self.y)
        sigma2 = jnp.square(jnp.asarray(sigma, x.dtype))
        r2 = sigma2 * self.data_var / (sigma2 + self.data_var)
        noise = noise_array(self.noise_var, self.y)
        x0_hat, vjp_fn = jax.vjp(lambda u: self.denoiser(u, sigma), x)
        adjoint = operators.make_adjoint(self.A, x)
        residual = self.y - self.A(x0_hat)
        _, at_v = _observation_solve(
            self.A, adjoint, noise, r2, residual, self.cg_maxiter, self.cg_rtol, x
        )
        (jt_at_v,) = vjp_fn(at_v)
        return x0_hat + sigma2 * jt_at_v


def _clip_parts(z, floor):
    """``max(z, floor)``, for complex ``z`` separately on the real and imaginary parts."""
    if jnp.iscomplexobj(z):
        return jax.lax.complex(jnp.maximum(z.real, floor), jnp.maximum(z.imag, floor))
    return jnp.maximum(z, floor)


def _divide_parts(a, b):
    """``a / b`` (0 where ``b = 0``), for complex arrays part by part (realified diagonal)."""

    def div(u, w):
        return jnp.where(w > 0, u / jnp.where(w > 0, w, 1), 0)

    if jnp.iscomplexobj(a):
        return jax.lax.complex(div(a.real, b.real), div(a.imag, b.imag))
    return div(a, b)


@flax.struct.dataclass
class TMPDDenoiser:
    """Diagonal TMPD (Boys et al. 2023): ``D(x) + sigma^2 J^T A^T [(y - A D(x)) / c]``.

    ``c = Sigma_y + sigma^2 max(A J A^T 1, floor)``: the covariance of ``A x0`` given ``x`` is
    replaced by the diagonal of its row sums, as in the official code (tmpdjax
    ``KGDMVEplus.analysis``; also azula ``DTMPDenoiser``); for ``A = I`` this is the row sums
    of ``sigma^2 J``, i.e. ``sigma^2 J 1``. ``A J A^T 1`` costs one jvp (``jax.linearize``,
    whose transpose gives the final ``J^T``: 1 forward + 1 jvp + 1 transposed jvp, no solve).
    Row sums ``<= 0`` (imperfect networks; the authors' NaN failure mode, docs/methods.md E.3) are
    clipped to ``floor = rel_floor * mean(|A J A^T 1|)``; entries with ``c = 0`` (noiseless
    and all row sums 0) get no correction. Complex ``y``: real and imaginary parts are
    separate realified coordinates. The official code takes the sums with a vjp (column sums,
    equal for a symmetric ``J``); the jvp here needs a forward-differentiable denoiser (no
    ``jax.custom_vjp`` inside). A tiny floor lets a near-zero row sum weight its residual by
    ``~1 / rel_floor``: on the digits U-Net at sigma = 80, ``rel_floor = 1e-3`` gives a first
    correction of ~1e4 and 11 dB samples, ``0.1`` a correction of ~1e2 and 23 dB.
    Real images under a Fourier operator break the row-sum diagonal itself: ``Y[k]`` and
    ``Y[-k]`` are conjugate, so the imaginary rows of ``A A^T`` hold ``+1/2`` and ``-1/2``
    and sum to 0 (88% of them on the 4x MRI masks with ``J = I``); those residuals get the
    weight ``1 / floor`` and the samples blow up at any ``rel_floor``
    (`docs/posterior_2026-12-04.md`).
    """

    denoiser: Any
    A: Any
    y: jax.Array
    noise_var: Any
    rel_floor: float = flax.struct.field(pytree_node=False, default=1e-3)

    def __call__(self, x, sigma):
        check_call(self.A, x, self.y)
        sigma2 = jnp.square(jnp.asarray(sigma, x.dtype))
        noise = noise_array(self.noise_var, self.y)
        x0_hat, jvp_fn = jax.linearize(lambda u: self.denoiser(u, sigma), x)
        adjoint = operators.make_adjoint(self.A, x)
        ones = jnp.ones_like(self.y) * (1 + 1j if jnp.iscomplexobj(self.y) else 1)
        row_sums = self.A(jvp_fn(adjoint(ones)))
        magnitude = jnp.abs(row_sums.real) + jnp.abs(row_sums.imag)
        floor = self.rel_floor * jnp.mean(magnitude) / (2 if jnp.iscomplexobj(self.y) else 1)
        var = noise * ones + sigma2 * _clip_parts(row_sums, floor)
        weighted = _divide_parts(self.y - self.A(x0_hat), var)
        (jt_at_w,) = jax.linear_transpose(jvp_fn, x)(adjoint(weighted))
        return x0_hat + sigma2 * jt_at_w


@flax.struct.dataclass
class DiffPIRDenoiser:
    """DiffPIR's data step (Zhu et al. 2023, Alg. 1): a proximal step on ``D(x)``.

    ``argmin_z ||y - A z||^2_{Sigma_y^-1} / 2 + lambda_ ||z - D(x)||^2 / (2 sigma^2)``, i.e.
    for ``Sigma_y = sigma_n^2 I`` the paper's ``||y - A z||^2 + rho ||z - D(x)||^2`` with
    ``rho = lambda_ sigma_n^2 / sigma^2`` (official code: ``rhos = lambda_ * sigma**2 /
    sigma_ks**2``, ``sigma_ks`` the VE noise level). Solved in observation space,
    ``z = D(x) + (sigma^2 / lambda_) A^T (Sigma_y + (sigma^2 / lambda_) A A^T)^-1 (y - A D(x))``
    (equal by Woodbury, and it stays defined for ``Sigma_y = 0``: then a projection on
    ``A z = y``), by CG as in PiGDM. No vjp: 1 forward pass. The paper's re-noising with
    ``zeta`` is the sampler's business (a DDIM-type sampler with stochasticity).
    """

    denoiser: Any
    A: Any
    y: jax.Array
    noise_var: Any
    lambda_: float = flax.struct.field(pytree_node=False, default=1.0)
    cg_maxiter: Any = flax.struct.field(pytree_node=False, default=None)
    cg_rtol: float = flax.struct.field(pytree_node=False, default=1e-6)

    def __call__(self, x, sigma):
        check_call(self.A, x, self.y)
        scale = jnp.square(jnp.asarray(sigma, x.dtype)) / self.lambda_
        noise = noise_array(self.noise_var, self.y)
        x0_hat = self.denoiser(x, sigma)
        adjoint = operators.make_adjoint(self.A, x)
        residual = self.y - self.A(x0_hat)
        _, at_v = _observation_solve(
            self.A, adjoint, noise, scale, residual, self.cg_maxiter, self.cg_rtol, x
        )
        return x0_hat + scale * at_v


def _check_cg(cg_maxiter, cg_rtol):
    check_cg_options(1 if cg_maxiter is None else cg_maxiter, cg_rtol)


def dps(denoiser, A, y, noise_var, *, zeta=1.0, x_like=None):
    """DPS posterior denoiser; see ``DPSDenoiser`` for the exact step convention."""
    validate_inputs(A, y, noise_var, x_like)
    return DPSDenoiser(denoiser, A, y, noise_var, zeta=zeta)


def dps_published(denoiser, A, y, noise_var, *, zeta=1.0, x_like=None):
    """DPS as published, ``samplers.Guided(DPSGuide(...))`` (``ddpm_ancestral`` only); ``zeta``
    > 0 is the paper's ``zeta'`` (official FFHQ ``scale`` 0.3-0.5: ``zeta`` 0.15-0.25, VP)."""
    if isinstance(zeta, bool) or not (isinstance(zeta, numbers.Real) and 0 < zeta < math.inf):
        raise ValueError(f"dps_published needs a finite zeta > 0, got {zeta!r}.")
    validate_inputs(A, y, noise_var, x_like)
    return samplers.Guided(DPSGuide(denoiser, A, y, noise_var, zeta=float(zeta)))


def pigdm(denoiser, A, y, noise_var, *, data_var=1.0, cg_maxiter=None, cg_rtol=1e-6, x_like=None):
    """PiGDM posterior denoiser (``data_var`` > 0: the prior variance in ``r^2``)."""
    if not data_var > 0:
        raise ValueError(f"pigdm needs data_var > 0, got {data_var!r}.")
    _check_cg(cg_maxiter, cg_rtol)
    validate_inputs(A, y, noise_var, x_like)
    return PiGDMDenoiser(
        denoiser, A, y, noise_var, data_var=data_var, cg_maxiter=cg_maxiter, cg_rtol=cg_rtol
    )


def tmpd(denoiser, A, y, noise_var, *, rel_floor=1e-3, x_like=None):
    """Diagonal TMPD posterior denoiser (``rel_floor`` > 0 clips non-positive row sums)."""
    if not rel_floor > 0:
        raise ValueError(f"tmpd needs rel_floor > 0, got {rel_floor!r}.")
    validate_inputs(A, y, noise_var, x_like)
    return TMPDDenoiser(denoiser, A, y, noise_var, rel_floor=rel_floor)


def diffpir(denoiser, A, y, noise_var, *, lambda_=1.0, cg_maxiter=None, cg_rtol=1e-6, x_like=None):
    """DiffPIR posterior denoiser (``lambda_`` > 0; 1.0 is the official inpainting default)."""
    if not lambda_ > 0:
        raise ValueError(f"diffpir needs lambda_ > 0, got {lambda_!r}.")
    _check_cg(cg_maxiter, cg_rtol)
    validate_inputs(A, y, noise_var, x_like)
    return DiffPIRDenoiser(
        denoiser, A, y, noise_var, lambda_=lambda_, cg_maxiter=cg_maxiter, cg_rtol=cg_rtol
    )
