"""Checks and conversions shared by every posterior denoiser (MMPS and the baselines).

Construction-time checks (`validate_inputs`, `check_cg_options`) run when a posterior
denoiser is built, before any sampling; `check_call` runs when it is first traced.
"""

import inspect

import jax.numpy as jnp

from diffssl_jax.posterior import operators


def validate_inputs(A, y, noise_var, x_like=None):
    """Construction-time checks of every posterior wrapper (``mmps`` and ``baselines``).

    ``x_like`` defaults to ``A.input_struct(y)`` for ``posterior.operators``; for a plain
    callable without ``x_like`` only ``noise_var`` is checked here (shapes are checked when
    the posterior denoiser is first traced).
    """
    if not jnp.issubdtype(jnp.result_type(y), jnp.inexact):
        raise ValueError(f"y must be a floating or complex array, got {jnp.result_type(y)}.")
    if x_like is None and hasattr(A, "input_struct"):
        x_like = A.input_struct(y)
    if x_like is None:
        operators.check_noise_var(noise_var, y)
    else:
        operators.check_operator(A, x_like, y, noise_var)


def check_call(A, x, y):
    """Trace-time checks of one posterior-denoiser call: ``x`` real and ``A x`` like ``y``."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"posterior denoisers act on real images x (the denoiser contract), got {x.dtype}; "
            "a complex measurement belongs in the operator (e.g. UndersampledFourier)."
        )
    operators.check_shapes(A, x, y)


def noise_array(noise_var, y):
    """``noise_var`` as an array in ``y``'s real dtype (so ``Sigma_y v = noise * v``)."""
    return jnp.asarray(noise_var, jnp.finfo(y.dtype).dtype)


def check_cg_options(cg_maxiter, cg_rtol, cg_max_residual_growth=None):
    """Raises ValueError unless ``cg_maxiter`` is an int ``>= 1``, ``cg_rtol >= 0`` and
    ``cg_max_residual_growth`` is ``None`` or ``>= 1``."""
    if isinstance(cg_maxiter, bool) or int(cg_maxiter) != cg_maxiter or cg_maxiter < 1:
        raise ValueError(f"cg_maxiter must be an integer >= 1, got {cg_maxiter!r}.")
    if not cg_rtol >= 0:
        raise ValueError(f"cg_rtol must be >= 0, got {cg_rtol!r}.")
    if cg_max_residual_growth is not None and not cg_max_residual_growth >= 1:
        raise ValueError(
            f"cg_max_residual_growth must be None or >= 1, got {cg_max_residual_growth!r}."
        )


def keyword_defaults(function, skip=()) -> dict:
    """`{name: default}` of `function`'s keyword arguments (`inspect.Parameter.empty` for a
    required one), without the names in `skip`: the options a method or builder takes."""
    parameters = inspect.signature(function).parameters.values()
    return {
        p.name: p.default
        for p in parameters
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in skip
    }
