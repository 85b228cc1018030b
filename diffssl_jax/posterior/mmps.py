"""Moment Matching Posterior Sampling (MMPS): a posterior denoiser from a prior denoiser.

For ``y = A x0 + n``, ``n ~ N(0, Sigma_y)``, and ``x = x0 + sigma * eps`` (VE), Tweedie's
formulas give ``E[x0 | x] = D(x, sigma) = x0_hat`` and ``Cov[x0 | x] = sigma^2 J`` with
``J = dD/dx``. Approximating ``p(x0 | x)`` by the Gaussian with these moments gives
(Rozet et al. 2024, MMPS; docs/methods.md E.2)

    E[x0 | x, y] ~= x0_hat + sigma^2 J^T A^T v,   (Sigma_y + sigma^2 A J A^T) v = y - A x0_hat,

exact when the prior is Gaussian. ``J`` is never materialised: one ``jax.vjp`` of the
denoiser gives ``u -> J^T u`` (``J`` is symmetric for an optimal denoiser, so ``J^T`` is used
where ``J`` appears), ``A^T`` comes from ``jax.linear_transpose``, and the system is solved by
``posterior.cg`` from ``v = 0``, which accumulates ``J^T A^T v`` alongside ``v``. Cost per
call with ``cg_maxiter = k``: one forward pass kept for the vjp plus ``k`` vjps;
``jax.scipy.sparse.linalg.cg`` would need ``k + 2`` (docs/methods.md E.6). On XLA:CPU the vjp
goes through ``cpu_convs.canonical_conv_kernels`` (in a loop body XLA:CPU left a vjp's
convolutions on its naive path, 10-25x slower: ``benchmarks/vjp_in_loop.py``), and CG runs in
a ``while_loop`` above one iteration; elsewhere, or with that switched off, up to
``MAX_UNROLLED_ITERATIONS`` the iterations are unrolled, so an early stop (tolerance,
breakdown guard) freezes the result but saves no vjp; above it a ``while_loop`` stops early.

With an imperfect network ``Sigma_y + sigma^2 A J^T A^T`` need not be SPD; the option
``safeguard`` chooses what CG returns then (docs/methods.md E.6): ``"trust_region"``
(default), in the manner of Steihaug (1983) and Toint (1981): truncated CG
(``posterior.cg``'s ``steihaug``: the iterate before the first direction of non-positive
curvature) with the correction ``sigma^2 J^T A^T v`` cut to the radius of
``trust_radius_of``; ``"residual_cap"`` (the default until 2026-12-07: ``posterior.cg``'s
objective test and residual cap, which replaces the posterior denoiser by the prior one when
it fires); or ``"none"``, textbook CG (a
control: it wrecks samples of an indefinite prior). Truncation alone is not offered: with an
untrained MLP or an indefinite linear denoiser its samples reached 1e2-1e99 times the
unguided scale at 5 and 20 iterations (near-zero positive curvature, not only breakdowns,
makes the steps huge), as E.6 measured for "CG that merely stops at breakdown".
``symmetrise`` replaces ``J^T`` by ``(J + J^T) / 2`` (one ``jax.linearize`` of the denoiser,
then a jvp and a transposed jvp per matvec: ``k`` jvps and ``k`` vjps instead of ``k`` vjps).
Every choice is plain CG, hence exact, where ``J`` is symmetric positive definite (a Gaussian
prior), except that ``trust_region`` also cuts an exact correction beyond its radius (which
the tests' Gaussian cases never reach).

Complex operators (MRI) act on real ``x``: ``A^T`` is the real-linear adjoint ``Re(A^H .)``,
so the system is the one of the realified observation ``(Re y, Im y)`` with ``noise_var`` the
variance of each part, and the returned mean is real in ``x``'s dtype. Everything runs in the
dtype of ``x`` and ``y`` (float64 end to end when x64 is enabled).
"""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from diffssl_jax.posterior import cpu_convs, operators
from diffssl_jax.posterior.cg import cg, real_dot
from diffssl_jax.posterior.checks import (
    check_call,
    check_cg_options,
    noise_array,
    validate_inputs,
)

SAFEGUARDS = ("residual_cap", "trust_region", "none")

# CG iterations up to this count are unrolled, more run in a ``lax.while_loop``. 16 where the
# vjp is plain (GPU, TPU, or XLA:CPU with ``cpu_convs`` switched off: there a vjp through a
# conv net in a loop body ran 10-25x slower); 1 on XLA:CPU with ``cpu_convs``'s canonical
# kernels, with which the loop costs what the unrolled code costs (digits U-Net, batch 8:
# k = 2 / 3 / 10 in 80 / 100 / 287 ms looped, 76 / 106 / 271 ms unrolled, same results;
# benchmarks/README.md) and stops early, with a program that does not grow with k.
MAX_UNROLLED_ITERATIONS = 16
CPU_MAX_UNROLLED_ITERATIONS = 1


def max_unrolled_iterations() -> int:
    """CG iterations MMPS unrolls: ``CPU_MAX_UNROLLED_ITERATIONS`` when ``cpu_convs`` is on."""
    if cpu_convs.enabled():
        return CPU_MAX_UNROLLED_ITERATIONS
    return MAX_UNROLLED_ITERATIONS


def trust_radius_of(radius, sigma, dim):
    """The trust region's radius ``radius * sigma * sqrt(dim / (1 + sigma^2))`` of the
    correction ``||E[x0 | x, y] - D(x)||``.

    Under the model the correction is ``V A^T S^-1 (y - A D(x))`` with ``V = Cov[x0 | x]`` and
    ``S = Sigma_y + A V A^T`` the covariance of ``y - A D(x)``, so its mean square is
    ``tr(V A^T S^-1 A V) <= tr(V)``. For data of unit variance per coordinate (docs/methods.md
    E.1) and a Gaussian prior ``tr(V) <= dim sigma^2 / (1 + sigma^2)`` (PiGDM's ``r_sigma^2``
    per coordinate, E.3), so by Markov's inequality a correction above ``radius`` times this
    root has probability at most ``1 / radius^2``; for any prior of unit variance, on average
    over ``x``, ``tr(V) <= dim min(1, sigma^2)`` (the law of total variance, and the error of
    the estimator ``x`` itself), at most twice ``dim sigma^2 / (1 + sigma^2)``.
    """
    return radius * sigma * jnp.sqrt(dim / (1 + jnp.square(sigma)))


def _jacobian_map(denoiser, x, sigma, symmetrise):
    """``(D(x), u -> J^T u)`` (one ``jax.vjp``) or ``(D(x), u -> (J + J^T) u / 2)`` (one
    ``jax.linearize``, its jvp and its transpose): one forward pass either way."""
    if symmetrise:
        x0_hat, jvp_fn = jax.linearize(lambda u: denoiser(u, sigma), x)
        vjp_fn = cpu_convs.canonical_conv_kernels(jax.linear_transpose(jvp_fn, x))
        jvp_fn = cpu_convs.canonical_conv_kernels(jvp_fn)
        return x0_hat, lambda u: 0.5 * (jvp_fn(u) + vjp_fn(u)[0])
    x0_hat, vjp_fn = jax.vjp(lambda u: denoiser(u, sigma), x)
    vjp_fn = cpu_convs.canonical_conv_kernels(vjp_fn)  # fast in CG's loop on XLA:CPU
    return x0_hat, lambda u: vjp_fn(u)[0]


@flax.struct.dataclass
class MMPSDenoiser:
    """The MMPS posterior denoiser ``(x, sigma) -> E[x0 | x, y]`` (Rozet et al. 2024).

    A pytree: the prior denoiser, the operator, ``y`` and ``noise_var`` are leaves (a batch of
    observations vmaps), the CG options are static. Build it with ``mmps``.
    """

    denoiser: Any
    A: Any
    y: jax.Array
    noise_var: Any
    cg_maxiter: int = flax.struct.field(pytree_node=False, default=1)
    cg_rtol: float = flax.struct.field(pytree_node=False, default=0.0)
    cg_max_residual_growth: float | None = flax.struct.field(pytree_node=False, default=10.0)
    safeguard: str = flax.struct.field(pytree_node=False, default="trust_region")
    trust_radius: float = flax.struct.field(pytree_node=False, default=3.0)
    symmetrise: bool = flax.struct.field(pytree_node=False, default=False)

    def solve(self, x, sigma):
        """``(E[x0 | x, y], CGResult)``: the posterior mean and the CG solve behind it.

        ``CGResult.aux`` is ``J^T A^T v`` (``(J + J^T) A^T v / 2`` when symmetrised) before any
        trust-region cut; ``CGResult.fallback`` includes the cut.
        """
        check_call(self.A, x, self.y)
        sigma2 = jnp.square(jnp.asarray(sigma, x.dtype))
        noise = noise_array(self.noise_var, self.y)
        x0_hat, jacobian = _jacobian_map(self.denoiser, x, sigma, self.symmetrise)
        adjoint = operators.make_adjoint(self.A, x)

        def matvec(v):
            j_at_v = jacobian(adjoint(v))
            return noise * v + sigma2 * self.A(j_at_v), j_at_v

        residual = self.y - self.A(x0_hat)
        cap = self.cg_max_residual_growth if self.safeguard == "residual_cap" else None
        solution = cg(
            matvec,
            residual,
            maxiter=self.cg_maxiter,
            rtol=self.cg_rtol,
            safeguard="steihaug" if self.safeguard == "trust_region" else self.safeguard,
            max_residual_growth=cap,
            aux_like=x,
            unroll=self.cg_maxiter <= max_unrolled_iterations(),
        )
        correction = sigma2 * solution.aux
        if self.safeguard == "trust_region":
            radius = trust_radius_of(self.trust_radius, jnp.asarray(sigma, x.dtype), x.size)
            norm = jnp.sqrt(real_dot(correction, correction))
            cut = norm > radius
            correction = correction * jnp.where(cut, radius / jnp.where(cut, norm, 1), 1)
            solution = solution._replace(fallback=solution.fallback | cut)
        return x0_hat + correction, solution

    def __call__(self, x, sigma):
        """``E[x0 | x, y]``.

        Args:
          x: one noisy example ``x = x0 + sigma * eps``, real, any shape.
          sigma: scalar VE noise level.

        Returns:
          The posterior mean estimate, shape and dtype of ``x``.
        """
        return self.solve(x, sigma)[0]


def check_safeguard(safeguard, trust_radius, symmetrise):
    """Raises ValueError unless ``safeguard`` is one of ``SAFEGUARDS``, ``trust_radius > 0``
    and ``symmetrise`` is a bool."""
    if safeguard not in SAFEGUARDS:
        raise ValueError(f"safeguard must be one of {SAFEGUARDS}, got {safeguard!r}.")
    if isinstance(trust_radius, bool) or not trust_radius > 0:
        raise ValueError(f"trust_radius must be > 0, got {trust_radius!r}.")
    if not isinstance(symmetrise, bool):
        raise ValueError(f"symmetrise must be True or False, got {symmetrise!r}.")


def mmps(
    denoiser,
    A,
    y,
    noise_var,
    *,
    cg_maxiter=1,
    cg_rtol=0.0,
    cg_max_residual_growth=10.0,
    safeguard="trust_region",
    trust_radius=3.0,
    symmetrise=False,
    x_like=None,
):
    """Wraps a prior denoiser into the MMPS posterior denoiser for ``y = A x0 + n``.

    ``E[x0 | x, y] ~= D(x) + sigma^2 J^T A^T v`` with
    ``(Sigma_y + sigma^2 A J A^T) v = y - A D(x)`` solved by ``cg_maxiter`` CG iterations
    (Rozet et al. 2024, MMPS; docs/methods.md E.2). The paper's default is one iteration; for a
    Gaussian prior ``dim(y)`` iterations give the exact posterior mean (float64: <= 2e-13
    relative in the tests, complex MRI included), with every ``safeguard`` and with
    ``symmetrise``. With an imperfect network the system need not be SPD; the default
    safeguard (``trust_region``) truncates CG at the first non-positive curvature and bounds
    the correction; with an untrained or indefinite denoiser the samples stay finite and at
    the unguided scale (docs/methods.md E.6). It was chosen on validation images of the
    trained digits, patches and phantoms priors (docs/posterior_study.md): at 1 CG iteration
    every safeguard gives the same PSNR within 0.4 dB, at 3 iterations and 10 steps the
    trust region beats the residual cap by 0.7 / 2.0 / 1.9 dB, at the same cost (``k``
    vjps). ``residual_cap`` keeps CG's last iterate only if it lowers CG's objective and its
    residual is at most ``cg_max_residual_growth`` times ``||b||``, else the smallest-residual
    one (``posterior.cg``). Its cap 10 was measured on the phantoms MRI prior (4x, 4 images,
    PSNR of one sample): MMPS-3 at 10 steps 20.3 dB without a cap (one image exploded to
    5 dB), 25.2 at 10, 26.5 at 1; at 100 steps 30.9 / 31.0 / 28.3; MMPS-1 at 100 steps
    29.7 / 29.7 / 27.2 (docs/posterior_2026-12-04.md).
    A cap of 1 is E.6's ``||y - A out - Sigma_y v|| <= ||y - A D(x)||``; it also rejects
    valid steps of ill-conditioned SPD systems, which cost MMPS most at many steps.

    Args:
      denoiser: ``denoiser(x, sigma) -> x0_hat`` on one example (a pytree or a function).
      A: a linear operator on one example (``posterior.operators`` or any linear callable).
      y: the observation, real or complex, with ``A(x)``'s shape and dtype.
      noise_var: ``Sigma_y``, a scalar or a diagonal array broadcasting to ``y`` (``>= 0``).
      cg_maxiter: CG iterations, ``>= 1`` (each costs one vjp through the denoiser).
      cg_rtol: relative residual at which CG stops early (0: run ``cg_maxiter``).
      cg_max_residual_growth: ``None`` (no cap) or ``>= 1``, see ``posterior.cg``'s
        ``max_residual_growth``; 10 by default; read by ``safeguard="residual_cap"`` only.
      safeguard: ``"trust_region"`` (default), ``"residual_cap"`` or ``"none"`` (module
        docstring; ``none`` is a control and does not keep samples finite).
      trust_radius: ``> 0``, read by ``trust_region`` only: the correction is cut to
        ``trust_radius * sigma * sqrt(dim(x) / (1 + sigma^2))`` (``trust_radius_of``).
      symmetrise: use ``(J + J^T) / 2`` for ``J^T``: ``k`` jvps and ``k`` vjps per call.
      x_like: array or ``jax.ShapeDtypeStruct`` like one ``x``, for the construction-time
        operator checks; defaults to ``A.input_struct(y)`` for this package's operators.

    Returns:
      ``MMPSDenoiser``, a pytree callable as ``posterior_denoiser(x, sigma)``.

    Raises:
      ValueError: from ``operators.check_operator`` (shapes, dtypes, noise, non-linear A) or
        an invalid CG or safeguard option.
    """
    check_cg_options(cg_maxiter, cg_rtol, cg_max_residual_growth)
    check_safeguard(safeguard, trust_radius, symmetrise)
    validate_inputs(A, y, noise_var, x_like)
    return MMPSDenoiser(
        denoiser,
        A,
        y,
        noise_var,
        cg_maxiter=cg_maxiter,
        cg_rtol=cg_rtol,
        cg_max_residual_growth=cg_max_residual_growth,
        safeguard=safeguard,
        trust_radius=trust_radius,
        symmetrise=symmetrise,
    )
