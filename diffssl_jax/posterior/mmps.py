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
from diffssl_jax.posterior.cg import cg
from diffssl_jax.posterior.checks import (
    check_call,
    check_cg_options,
    noise_array,
    validate_inputs,
)

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

    def __call__(self, x, sigma):
        """``E[x0 | x, y]``.

        Args:
          x: one noisy example ``x = x0 + sigma * eps``, real, any shape.
          sigma: scalar VE noise level.

        Returns:
          The posterior mean estimate, shape and dtype of ``x``.
        """
        check_call(self.A, x, self.y)
        sigma2 = jnp.square(jnp.asarray(sigma, x.dtype))
        noise = noise_array(self.noise_var, self.y)
        x0_hat, vjp_fn = jax.vjp(lambda u: self.denoiser(u, sigma), x)
        vjp_fn = cpu_convs.canonical_conv_kernels(vjp_fn)  # fast in CG's loop on XLA:CPU
        adjoint = operators.make_adjoint(self.A, x)

        def matvec(v):
            (jt_at_v,) = vjp_fn(adjoint(v))
            return noise * v + sigma2 * self.A(jt_at_v), jt_at_v

        residual = self.y - self.A(x0_hat)
        unroll = self.cg_maxiter <= max_unrolled_iterations()
        solution = cg(
            matvec,
            residual,
            maxiter=self.cg_maxiter,
            rtol=self.cg_rtol,
            max_residual_growth=self.cg_max_residual_growth,
            aux_like=x,
            unroll=unroll,
        )
        return x0_hat + sigma2 * solution.aux


def mmps(
    denoiser,
    A,
    y,
    noise_var,
    *,
    cg_maxiter=1,
    cg_rtol=0.0,
    cg_max_residual_growth=10.0,
    x_like=None,
):
    """Wraps a prior denoiser into the MMPS posterior denoiser for ``y = A x0 + n``.

    ``E[x0 | x, y] ~= D(x) + sigma^2 J^T A^T v`` with
    ``(Sigma_y + sigma^2 A J A^T) v = y - A D(x)`` solved by ``cg_maxiter`` CG iterations
    (Rozet et al. 2024, MMPS; docs/methods.md E.2). The paper's default is one iteration; for a
    Gaussian prior ``dim(y)`` iterations give the exact posterior mean (float64: <= 2e-13
    relative in the tests, complex MRI included). With an imperfect network the system need
    not be SPD: CG stops at breakdown and keeps its last iterate only if it lowers CG's
    objective and its residual is at most ``cg_max_residual_growth`` times ``||b||``, else
    the smallest-residual one (``posterior.cg``); with an untrained or indefinite denoiser
    the samples stay finite and at the unguided scale (docs/methods.md E.6). The default cap 10
    was measured on the phantoms MRI prior (4x, 4 images, PSNR of one sample): MMPS-3 at 10
    steps 20.3 dB without a cap (one image exploded to 5 dB), 25.2 at 10, 26.5 at 1; at 100
    steps 30.9 / 31.0 / 28.3; MMPS-1 at 100 steps 29.7 / 29.7 / 27.2 (docs/posterior.md).
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
        ``max_residual_growth``; 10 by default.
      x_like: array or ``jax.ShapeDtypeStruct`` like one ``x``, for the construction-time
        operator checks; defaults to ``A.input_struct(y)`` for this package's operators.

    Returns:
      ``MMPSDenoiser``, a pytree callable as ``posterior_denoiser(x, sigma)``.

    Raises:
      ValueError: from ``operators.check_operator`` (shapes, dtypes, noise, non-linear A).
    """
    check_cg_options(cg_maxiter, cg_rtol, cg_max_residual_growth)
    validate_inputs(A, y, noise_var, x_like)
    return MMPSDenoiser(
        denoiser,
        A,
        y,
        noise_var,
        cg_maxiter=cg_maxiter,
        cg_rtol=cg_rtol,
        cg_max_residual_growth=cg_max_residual_growth,
    )
