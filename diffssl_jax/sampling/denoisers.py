"""Denoisers ``denoiser(x, sigma) -> x0_hat`` on ONE example, with ``x = x0 + sigma * eps``.

Here live the closed-form ``GaussianDenoiser`` (test oracle and EM initialiser), the
wrappers that turn a network into this contract (``make_vp_denoiser`` for a network trained
on ``x_t = alpha(t) x0 + sigma(t) eps``, ``EDMDenoiser`` for the EDM-preconditioned VE prior
of ``methods.edm``) and ``ScaledDenoiser``, the change of units and shape between a network's
examples and the space a caller works in (EM's data units). All are pytrees, so they can be
passed to jitted functions, closed over and vmapped.
"""

import dataclasses
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp

from diffssl_jax.corruptions import gaussian


def _is_array(value):
    return isinstance(value, (jax.Array, list, tuple)) or hasattr(value, "__array__")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GaussianDenoiser:
    """Exact denoiser of Gaussian data ``x0 ~ N(mean, cov)`` on flat vectors ``[D]``.

    Maths: ``D(x, sigma) = E[x0 | x] = x - sigma^2 (cov + sigma^2 I)^-1 (x - mean)``
    (Rozet et al. 2024, Sec. 4 / docs/methods.md E.1). Built as ``GaussianDenoiser(mean, cov)``;
    the eigendecomposition ``cov = Q diag(lam) Q^T`` is computed once at construction
    (eigenvalues clipped at 0) and stored, so a call costs two ``[D, D]`` matvecs. ``replace``
    of ``cov`` recomputes it. Differentiating through ``cov`` goes through
    ``eigh``, which is undefined for repeated eigenvalues; differentiating in ``x`` is fine.

    Attributes:
      mean: ``[D]``.
      cov: ``[D, D]`` symmetric positive semi-definite (positive definite if ``sigma = 0``
        is ever queried).
      eigvals: ``[D]`` eigenvalues of ``cov`` (filled in at construction).
      eigvecs: ``[D, D]`` orthonormal eigenvectors, as columns (filled in at construction).
    """

    mean: Any
    cov: Any
    eigvals: Any = None
    eigvecs: Any = None

    def __post_init__(self):
        # Unflattening calls __init__ with the stored leaves (or placeholders such as None):
        # only a fresh construction from arrays, without a decomposition, computes one.
        if self.eigvals is not None or not (_is_array(self.mean) and _is_array(self.cov)):
            return
        mean, cov = jnp.asarray(self.mean), jnp.asarray(self.cov)
        if mean.ndim != 1 or cov.shape != (mean.shape[0], mean.shape[0]):
            raise ValueError(
                f"GaussianDenoiser needs mean [D] and cov [D, D], got {mean.shape} and "
                f"{cov.shape}; flatten images to vectors first."
            )
        eigvals, eigvecs = jnp.linalg.eigh(cov)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "cov", cov)
        object.__setattr__(self, "eigvals", jnp.maximum(eigvals, 0.0))
        object.__setattr__(self, "eigvecs", eigvecs)

    def replace(self, **updates):
        """Returns a copy with fields replaced; a new ``cov`` is decomposed afresh."""
        if "cov" in updates:
            updates = {"eigvals": None, "eigvecs": None, **updates}
        return dataclasses.replace(self, **updates)

    @classmethod
    def fit(cls, samples, ridge=1e-6):
        """Fits the Gaussian by its empirical moments.

        Args:
          samples: ``[N, D]`` with ``N >= 2``.
          ridge: added to the diagonal of the unbiased covariance, ``>= 0``.

        Returns:
          ``GaussianDenoiser(mean, cov + ridge I)``.
        """
        samples = jnp.asarray(samples)
        if samples.ndim != 2 or samples.shape[0] < 2:
            raise ValueError(
                f"fit needs samples [N, D] with N >= 2, got shape {samples.shape}; "
                "reshape images to [N, H * W * C]."
            )
        if not ridge >= 0:
            raise ValueError(f"ridge must be >= 0, got {ridge}.")
        mean = jnp.mean(samples, axis=0)
        cov = jnp.cov(samples, rowvar=False).reshape(mean.shape * 2)
        return cls(mean, cov + ridge * jnp.eye(mean.shape[0], dtype=cov.dtype))

    def __call__(self, x, sigma):
        """Posterior mean ``E[x0 | x0 + sigma eps = x]``.

        Args:
          x: ``[D]`` noisy example.
          sigma: scalar VE noise level.

        Returns:
          ``x0_hat`` ``[D]``.
        """
        if jnp.shape(x) != jnp.shape(self.mean) or jnp.ndim(sigma) != 0:
            raise ValueError(
                f"GaussianDenoiser works on one flat example: x must have shape "
                f"{jnp.shape(self.mean)} and sigma must be a scalar, got {jnp.shape(x)} and "
                f"{jnp.shape(sigma)}; batch with jax.vmap."
            )
        sigma2 = jnp.asarray(sigma) ** 2
        coeffs = self.eigvecs.T @ (x - self.mean)
        return x - self.eigvecs @ (sigma2 / (self.eigvals + sigma2) * coeffs)

    def posterior(self, A, y, cov_y):
        """Closed-form ``p(x0 | y)`` for ``y = A x0 + n``, ``n ~ N(0, cov_y)``.

        Maths: ``K = cov A^T (A cov A^T + cov_y)^-1``, mean ``mean + K (y - A mean)``,
        covariance ``cov - K A cov`` (Gaussian conditioning; Bishop 2006, Eqs. 2.113-2.117).

        Args:
          A: ``[M, D]`` observation matrix.
          y: ``[M]`` observation.
          cov_y: noise covariance: a scalar variance, ``[M]`` diagonal, or ``[M, M]``.

        Returns:
          ``(mean [D], cov [D, D])`` of the posterior (covariance symmetrised).
        """
        A, y, cov_y = jnp.asarray(A), jnp.asarray(y), jnp.asarray(cov_y)
        d = self.mean.shape[0]
        if A.ndim != 2 or A.shape[1] != d or y.shape != (A.shape[0],):
            raise ValueError(f"posterior needs A [M, {d}] and y [M], got {A.shape} and {y.shape}.")
        m = A.shape[0]
        if cov_y.ndim == 0:
            noise = cov_y * jnp.eye(m, dtype=A.dtype)
        elif cov_y.shape == (m,):
            noise = jnp.diag(cov_y)
        elif cov_y.shape == (m, m):
            noise = cov_y
        else:
            raise ValueError(
                f"cov_y must be a scalar, [{m}] (diagonal) or [{m}, {m}], got {cov_y.shape}."
            )
        cov_a = self.cov @ A.T
        gram = A @ cov_a + noise
        gain = jax.scipy.linalg.solve(gram, cov_a.T, assume_a="pos").T
        mean = self.mean + gain @ (y - A @ self.mean)
        cov = self.cov - gain @ cov_a.T
        return mean, 0.5 * (cov + cov.T)

    posterior_mean_cov = posterior


@flax.struct.dataclass
class VPDenoiser:
    """A network trained on ``x_t = alpha(t) x0 + sigma(t) eps``, seen as a VE denoiser.

    Built by ``make_vp_denoiser``; see there for the conversion.
    """

    params: Any
    schedule: Any
    apply_fn: Callable = flax.struct.field(pytree_node=False)
    prediction: str = flax.struct.field(pytree_node=False)

    def __call__(self, x, sigma):
        """``x0_hat`` for one example ``x = x0 + sigma eps`` (any shape ``[...]``, scalar sigma)."""
        if jnp.ndim(sigma) != 0:
            raise ValueError(
                f"The denoiser works on one example and needs a scalar sigma, got shape "
                f"{jnp.shape(sigma)}; batch with jax.vmap."
            )
        t = self.schedule.t_from_ve_sigma(sigma)
        alpha, sigma_t = self.schedule.alpha(t), self.schedule.sigma(t)
        xt = alpha * x
        pred = self.apply_fn(self.params, xt[None], t[None])[0]
        return gaussian.x0_from_prediction(self.prediction, pred, xt, alpha, sigma_t)


def make_vp_denoiser(apply_fn, params, schedule, prediction):
    """Wraps a network trained in VP (or any ``alpha, sigma``) form into the denoiser contract.

    Maths: with ``t = t_from_ve_sigma(sigma)``, ``sigma(t) / alpha(t) = sigma``, so
    ``x_t = alpha(t) x = alpha(t) x0 + sigma(t) eps`` is exactly the network's input at
    ``t``; its prediction is turned into ``x0_hat`` by ``x0_from_prediction`` (Kingma et al.
    2021, Eq. 2 / Karras et al. 2022, Eq. 4: the VP and VE processes differ by the scaling
    ``alpha(t)``; for VP ``alpha = 1 / sqrt(1 + sigma^2)``).

    Args:
      apply_fn: ``apply_fn(params, x_t [1, ...], t [1]) -> prediction [1, ...]``; ``t`` is
        continuous in ``[0, 1]`` (multiply by 1000 inside for a discrete-step embedding).
      params: the network parameters (a pytree leaf of the denoiser, not a constant).
      schedule: the training schedule from ``corruptions.schedules``.
      prediction: what the network predicts: ``"eps"``, ``"x0"`` or ``"v"``.

    Returns:
      ``denoiser(x, sigma) -> x0_hat`` (a ``VPDenoiser`` pytree). Query it only at
      ``schedule.ve_sigma(0) < sigma <= schedule.ve_sigma(1)``: outside that range the
      network is asked for times outside ``[0, 1]``.
    """
    gaussian.check_kind(prediction)
    if not callable(apply_fn):
        raise ValueError(f"apply_fn must be callable, got {type(apply_fn).__name__}.")
    return VPDenoiser(params=params, schedule=schedule, apply_fn=apply_fn, prediction=prediction)


@flax.struct.dataclass
class EDMDenoiser:
    """A network with the EDM preconditioning of a VE prior (docs/methods.md E.1), on one example.

    Maths (Karras et al. 2022, Table 1; E.1's with ``s_d = 1``):
    ``D(x, sigma) = c_skip x + c_out net(c_in x, t(sigma))`` with
    ``c_skip = s_d^2 / (sigma^2 + s_d^2)``, ``c_out = sigma s_d / sqrt(sigma^2 + s_d^2)``,
    ``c_in = 1 / sqrt(sigma^2 + s_d^2)`` and ``t(sigma)`` the schedule's time of ``sigma``
    (``LogLinearVE.t_from_ve_sigma``, an affine function of ``log sigma``). ``sigma`` is in
    the network's units (those it was trained in).

    Attributes:
      params: network parameters (pytree leaves).
      apply_fn: ``(params, x [1, ...], t [1]) -> output [1, ...]`` (static).
      schedule: the ``LogLinearVE`` giving ``t(sigma)`` (static fields only).
      sigma_data: ``s_d`` (static).
    """

    params: Any
    apply_fn: Callable = flax.struct.field(pytree_node=False)
    schedule: Any = flax.struct.field(pytree_node=False)
    sigma_data: float = flax.struct.field(pytree_node=False, default=0.5)

    def __call__(self, x, sigma):
        sigma = jnp.asarray(sigma, x.dtype)
        if jnp.ndim(sigma) != 0:
            raise ValueError(f"sigma must be a scalar (one example), got {jnp.shape(sigma)}.")
        skip, out, inp = edm_preconditioning(sigma, self.sigma_data)
        t = self.schedule.t_from_ve_sigma(sigma)
        net = self.apply_fn(self.params, (inp * x)[None].astype(jnp.float32), t[None])[0]
        return (skip * x + out * net.astype(x.dtype)).astype(x.dtype)


def edm_preconditioning(sigma, sigma_data):
    """``(c_skip, c_out, c_in)`` of ``EDMDenoiser`` (Karras et al. 2022, Table 1)."""
    total = sigma**2 + sigma_data**2
    return sigma_data**2 / total, sigma * sigma_data / jnp.sqrt(total), 1.0 / jnp.sqrt(total)


@flax.struct.dataclass
class ScaledDenoiser:
    """``D(x, sigma) = scale * inner((x / scale).reshape(inner_shape), sigma / scale)``.

    Adapts a denoiser in network units (data divided by ``scale``, examples of
    ``inner_shape``, e.g. ``[1, 1, D]`` for the toy's vectors, ``[D]`` for a
    ``GaussianDenoiser``, ``[H, W, C]`` for images) to the caller's units and shape (EM's
    data units, the shape its operators act on). Exact: if ``x0' = x0 / s`` then
    ``E[x0 | x0 + sigma eps] = s E[x0' | x0' + (sigma / s) eps]`` (docs/methods.md E.4).

    Attributes:
      inner: the denoiser in network units.
      inner_shape: the shape of one of its examples (static).
      scale: data units per network unit, ``> 0`` (static).
    """

    inner: Any
    inner_shape: tuple = flax.struct.field(pytree_node=False)
    scale: float = flax.struct.field(pytree_node=False, default=1.0)

    def __call__(self, x, sigma):
        z = (x / self.scale).reshape(self.inner_shape)
        return (self.scale * self.inner(z, sigma / self.scale)).reshape(x.shape).astype(x.dtype)
