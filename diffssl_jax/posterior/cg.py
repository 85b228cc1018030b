"""Conjugate gradients for the MMPS system, with auxiliary outputs and a breakdown guard.

Written for MMPS (Rozet et al. 2024, MMPS; docs/methods.md E.2) rather than calling
``jax.scipy.sparse.linalg.cg``, for three measured reasons (docs/methods.md E.6):

* it never evaluates the matvec at the initial guess (``x0 = 0`` so ``r0 = b``), which saves
  one vjp through the denoiser per call;
* the matvec returns ``(M p, aux(p))`` with ``aux`` linear in ``p``, and the solver keeps
  ``aux(x) = sum_i alpha_i aux(p_i)`` alongside ``x = sum_i alpha_i p_i``. MMPS's final
  ``J^T A^T v`` is then free: ``k`` iterations cost ``k`` vjps;
* a guard for matrices that are not symmetric positive definite: ``Sigma_y + sigma^2 A J A^T``
  of an imperfect network need not be. On ``p^T M p <= 0`` or a non-finite value the
  iteration stops (breakdown). The last iterate is returned when CG did not break down and
  it lowers CG's own objective ``phi(x) = x^T M x / 2 - b^T x`` below ``phi(0) = 0`` (with
  ``M x = b - r``, ``phi(x) = -Re <x, b + r> / 2``: two inner products, no matvec); otherwise
  the iterate with the smallest residual seen (``x = 0`` included) is. On an SPD system
  ``phi`` falls at every iteration, so the guard never fires and the result is textbook CG
  even when its residual 2-norm rises above ``||b||`` (CG minimises the M-norm of the error,
  not the residual). An earlier guard fell back whenever ``||b - M x|| > ||b||``: on the
  phantoms MRI prior it zeroed every valid correction for sigma in [0.2, 10) and cost MMPS
  5.8 dB at 300 steps (docs/posterior_2026-12-04.md). ``max_residual_growth`` sets a looser cap
  (MMPS uses 10: without any cap, steps of a non-symmetric ``M`` that lower ``phi`` can
  still be large enough to wreck a sample at 10 steps).

``safeguard`` chooses what is returned (docs/methods.md E.6 asks of a safeguard that it never
fires on SPD systems and stays finite on the others): ``"residual_cap"`` is the rule above;
``"steihaug"`` is truncated CG (Steihaug 1983, Toint 1981): stop at the first direction of
non-positive curvature ``p^T M p <= 0`` (or a non-finite value) and return the iterate
before it, which on an SPD system is plain CG; ``"none"`` is textbook CG with no check at all
(breakdowns propagate inf and NaN; a reference for studies). Every result reports
``breakdown``, ``fallback`` (the safeguard changed the result from CG's last iterate), the
Rayleigh quotient ``p^T M p / p^T p`` of every search direction and the residual growth
``||b - M x_k|| / ||b||`` of the last iterate: scalars the iteration computes anyway, so
diagnostics (``posterior.jacobian_diagnostics``) read the guard's behaviour without a
second solve.

The loop is a ``lax.while_loop``: ``maxiter`` bounds the iterations and the optional relative
tolerance stops early (``||r|| <= rtol ||b||``). It jits and vmaps (a vmapped loop runs until
every member stops; finished members are frozen); it is not reverse-differentiable.

Vectors are pytrees (a flat array is a pytree). Inner products are ``Re <u, w>``, the real
inner product of the realified space: for a Hermitian positive definite complex ``M`` the CG
scalars are real and this is ordinary complex CG; it also solves real-linear systems on
complex vectors, such as MMPS with a complex operator on real images.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class CGResult(NamedTuple):
    """What ``cg`` returns.

    Attributes:
      x: the solution estimate, same pytree as ``b``.
      aux: ``aux(x)``, the matvec's auxiliary output at ``x`` (accumulated, never recomputed).
      residual_norm: ``||b - M x||`` of the returned ``x`` (recursive residual), real scalar.
      iterations: number of matvecs evaluated, int32 scalar.
      breakdown: whether CG broke down (``p^T M p <= 0`` or a non-finite value).
      fallback: whether the safeguard returned something other than CG's last iterate
        (``residual_cap``: the smallest-residual iterate; ``steihaug``: truncated at a
        breakdown; ``none``: never).
      curvature: ``[maxiter]`` Rayleigh quotients ``p_k^T M p_k / p_k^T p_k`` of the search
        directions (negative: ``M`` is not positive definite along ``p_k``), NaN for the
        iterations not run.
      growth: ``||b - M x_k|| / ||b||`` of CG's last accepted iterate ``x_k`` (before the
        safeguard's choice; recursive residual), NaN when ``b = 0``.
    """

    x: Any
    aux: Any
    residual_norm: jax.Array
    iterations: jax.Array
    breakdown: jax.Array
    fallback: jax.Array
    curvature: jax.Array
    growth: jax.Array


class _State(NamedTuple):
    i: jax.Array
    x: Any
    aux: Any
    r: Any
    p: Any
    rr: jax.Array
    best_x: Any
    best_aux: Any
    best_rr: jax.Array
    done: jax.Array
    breakdown: jax.Array
    curvature: jax.Array


SAFEGUARDS = ("residual_cap", "steihaug", "none")


def real_dot(u, w):
    """``Re <u, w> = Re sum conj(u) w`` over all leaves of two pytrees; a real scalar."""
    parts = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.real(jnp.vdot(a, b)), u, w))
    return sum(parts[1:], parts[0])


def _axpy(alpha, u, w):
    """``w + alpha * u`` leafwise, ``alpha`` a real scalar cast to each leaf's dtype."""
    return jax.tree.map(lambda a, b: b + alpha.astype(a.dtype) * a, u, w)


def _where(pred, u, w):
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), u, w)


def _step(matvec, stop_rr, guarded, s):
    """One CG iteration (Hestenes and Stiefel 1952); if ``guarded``, a step along a direction
    of non-positive curvature or with a non-finite value changes nothing and stops."""
    mp, aux_p = matvec(s.p)
    pmp = real_dot(s.p, mp)
    alpha = s.rr / pmp
    x = _axpy(alpha, s.p, s.x)
    aux = _axpy(alpha, aux_p, s.aux)
    r = _axpy(-alpha, mp, s.r)
    rr = real_dot(r, r)
    healthy = (pmp > 0) & jnp.isfinite(pmp) & jnp.isfinite(alpha) & jnp.isfinite(rr)
    ok = healthy if guarded else jnp.ones_like(healthy)
    better = ok & (rr < s.best_rr)
    p = _axpy(rr / s.rr, s.p, r)
    return _State(
        i=s.i + 1,
        x=_where(ok, x, s.x),
        aux=_where(ok, aux, s.aux),
        r=_where(ok, r, s.r),
        p=_where(ok, p, s.p),
        rr=jnp.where(ok, rr, s.rr),
        best_x=_where(better, x, s.best_x),
        best_aux=_where(better, aux, s.best_aux),
        best_rr=jnp.where(better, rr, s.best_rr),
        done=~ok | (rr <= stop_rr),
        breakdown=s.breakdown | ~healthy,
        curvature=s.curvature.at[s.i].set(pmp / real_dot(s.p, s.p)),
    )


def _frozen_step(matvec, stop_rr, guarded, s):
    """``_step`` that leaves a finished state (``s.done``) unchanged, for unrolled loops."""
    new = _step(matvec, stop_rr, guarded, s)
    return jax.tree.map(lambda old, upd: jnp.where(s.done, old, upd), s, new)


def cg(
    matvec,
    b,
    *,
    maxiter,
    rtol=0.0,
    safeguard="residual_cap",
    max_residual_growth=None,
    aux_like=None,
    unroll=False,
):
    """Solves ``M x = b`` by conjugate gradients from ``x0 = 0``, accumulating ``aux(x)``.

    ``x_{k+1} = x_k + alpha_k p_k``, ``alpha_k = r_k^H r_k / p_k^H M p_k``,
    ``r_{k+1} = r_k - alpha_k M p_k``, ``p_{k+1} = r_{k+1} + (r_{k+1}^H r_{k+1} / r_k^H r_k) p_k``
    (Hestenes and Stiefel 1952), and ``aux(x_{k+1}) = aux(x_k) + alpha_k aux(p_k)``: exact for
    any ``aux`` linear in its argument. The matvec is never applied to ``x0``, so ``k``
    iterations cost exactly ``k`` matvecs (MMPS, Rozet et al. 2024, MMPS: ``k`` vjps).

    Args:
      matvec: ``p -> (M p, aux(p))``, ``M`` linear and, for convergence, self-adjoint positive
        definite in ``Re <., .>``; ``aux`` linear in ``p``, any pytree (``()`` if unused).
      b: right-hand side, a pytree of real or complex arrays (float32 or float64).
      maxiter: maximum number of iterations (matvecs), a Python int ``>= 0``. In exact
        arithmetic ``dim(b)`` iterations (``2 dim(b)`` for a real-linear system on complex
        vectors) solve an SPD system exactly.
      rtol: stop early once ``||b - M x|| <= rtol ||b||``; ``0`` runs ``maxiter`` iterations
        unless the residual vanishes or the guard fires.
      safeguard: one of ``SAFEGUARDS`` (module docstring): ``"residual_cap"`` (default),
        ``"steihaug"`` or ``"none"``.
      max_residual_growth: ``residual_cap`` only: if set (``>= 1``), also fall back to the
        smallest-residual iterate when the last residual exceeds
        ``max_residual_growth * ||b||``; ``1`` guarantees ``||b - M x|| <= ||b||`` at the price
        of rejecting valid steps on ill-conditioned SPD systems. ``None`` (default): no cap,
        the objective test alone.
      aux_like: pytree of arrays or ``jax.ShapeDtypeStruct`` with the structure of ``aux``;
        by default found by ``jax.eval_shape`` (one abstract trace of ``matvec``, no FLOPs).
      unroll: unroll the ``maxiter`` iterations in Python instead of a ``lax.while_loop``
        (finished iterations are frozen, so the result is the same; every matvec is then
        evaluated even after an early stop). On XLA:CPU a vjp through a conv net in a loop
        body is 10-25x slower unless its convolutions have canonical kernels
        (``posterior.cpu_convs``, which MMPS applies; then the loop costs what unrolling
        costs), so without that MMPS unrolls up to 16 iterations.

    Returns:
      ``CGResult``; ``x`` and ``aux`` have the structures of ``b`` and of ``aux(b)``. With
      ``residual_cap`` either ``x`` is CG's last iterate and ``phi(x) < 0``, or it is the
      smallest-residual iterate (``||b - M x|| <= ||b||``); with ``steihaug`` it is the last
      iterate before the first breakdown.
    """
    if int(maxiter) != maxiter or maxiter < 0:
        raise ValueError(f"cg needs an integer maxiter >= 0, got {maxiter!r}.")
    if not rtol >= 0:
        raise ValueError(f"cg needs rtol >= 0, got {rtol!r}.")
    if safeguard not in SAFEGUARDS:
        raise ValueError(f"cg's safeguard must be one of {SAFEGUARDS}, got {safeguard!r}.")
    if max_residual_growth is not None and not max_residual_growth >= 1:
        raise ValueError(f"cg needs max_residual_growth >= 1 or None, got {max_residual_growth!r}.")
    if max_residual_growth is not None and safeguard != "residual_cap":
        raise ValueError(f"max_residual_growth is an option of residual_cap, not {safeguard}.")
    if aux_like is None:
        aux_like = jax.eval_shape(lambda p: matvec(p)[1], b)
    zero_aux = jax.tree.map(lambda s: jnp.zeros(jnp.shape(s), s.dtype), aux_like)
    zero_x = jax.tree.map(jnp.zeros_like, b)
    bb = real_dot(b, b)
    stop_rr = jnp.asarray(rtol, bb.dtype) ** 2 * bb
    init = _State(
        i=jnp.zeros((), jnp.int32),
        x=zero_x,
        aux=zero_aux,
        r=b,
        p=b,
        rr=bb,
        best_x=zero_x,
        best_aux=zero_aux,
        best_rr=bb,
        done=~(bb > stop_rr),
        breakdown=~jnp.isfinite(bb),
        curvature=jnp.full((max(maxiter, 1),), jnp.nan, bb.dtype),  # traced even if empty
    )
    guarded = safeguard != "none"
    if unroll:
        s = init
        for _ in range(maxiter):
            s = _frozen_step(matvec, stop_rr, guarded, s)
    else:
        s = jax.lax.while_loop(
            lambda s: (s.i < maxiter) & ~s.done,
            lambda s: _step(matvec, stop_rr, guarded, s),
            init,
        )
    if safeguard == "residual_cap":
        descends = real_dot(s.x, b) + real_dot(s.x, s.r) > 0  # phi(x) < phi(0)
        use_best = s.breakdown | ~descends
        if max_residual_growth is not None:
            use_best = use_best | (s.rr > jnp.asarray(max_residual_growth, bb.dtype) ** 2 * bb)
    else:
        use_best = jnp.zeros((), bool)
    fallback = use_best if safeguard == "residual_cap" else s.breakdown & guarded
    return CGResult(
        x=_where(use_best, s.best_x, s.x),
        aux=_where(use_best, s.best_aux, s.aux),
        residual_norm=jnp.sqrt(jnp.where(use_best, s.best_rr, s.rr)),
        iterations=s.i,
        breakdown=s.breakdown,
        fallback=fallback,
        curvature=s.curvature[:maxiter],
        growth=jnp.where(bb > 0, jnp.sqrt(s.rr / jnp.where(bb > 0, bb, 1)), jnp.nan),
    )
