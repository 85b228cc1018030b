"""Distribution metrics of EM (Rozet et al. 2024, E.4; docs/methods.md F): Sinkhorn divergence,
the reference's entropic-OT form, sliced Wasserstein, Fréchet distance; and PSNR/SSIM
(re-exported from `image_metrics`).

* Debiased Sinkhorn divergence (Genevay et al. 2018; Feydy et al. 2019, Eq. 3) with the
  squared Euclidean cost and uniform weights, through ott-jax:

      S_eps(a, b) = OT_eps(a, b) - OT_eps(a, a) / 2 - OT_eps(b, b) / 2.

  E.4's metric uses the reference's regularisation `eps = 1e-3` (absolute, on the cost
  `|x - y|^2` in the toy's units), at most 1024 Sinkhorn iterations and a stopping threshold
  of 1e-3, and subtracts the same quantity between two halves of the true latents, so that
  0 means "as close as an independent sample of the truth" (`em_toy_divergence`); here both
  terms are debiased, which is the library's choice.
* The reference's own form of that metric (its `experiments/manifold/utils.py`), through
  ott-jax with the same `eps`, iteration cap and threshold (`reference_toy_metric`):

      W_eps(u1, v) - W_eps(u1, u2),    W_eps(u, v) = <P_eps, C>,  C_ij = |u_i - v_j|^2,

  where `P_eps` is the entropic optimal plan between the uniform clouds and `W_eps` its
  transport cost without the entropy term (what POT's `sinkhorn2` returns), `u1`, `u2` two
  independent sets of true latents and `v` the samples scored. It is biased (`W_eps(u, u) >
  0`), so it can be negative: `v = u2` gives 0 exactly, `v` closer to `u1` than `u2` is gives
  a negative value. The reference clips it below at 1e-6 for its log plots; this does not.
* Sliced Wasserstein-2 (Rabin et al. 2011): the mean over random unit directions of the
  squared 1-D W2 between the projections (quantile matching).
* Fréchet distance (Heusel et al. 2017, Eq. 6) between Gaussians fitted to features:
  `|mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1^(1/2) S_2 S_1^(1/2))^(1/2))`, in the feature
  space of `evaluation.digit_classifier` for digits.
"""

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import pointcloud
from ott.solvers import linear
from ott.tools import sinkhorn_divergence as ott_divergence

from diffssl_jax.evaluation.image_metrics import psnr, ssim

REFERENCE_EPSILON = 1e-3  # E.4: entropic regularisation of the toy's Sinkhorn divergence
REFERENCE_MAX_ITERATIONS = 1024
REFERENCE_THRESHOLD = 1e-3


def _check_clouds(x, y):
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or 0 in (len(x), len(y)):
        raise ValueError(f"need point clouds [N, D] and [M, D], got {x.shape} and {y.shape}.")
    if not (bool(jnp.all(jnp.isfinite(x))) and bool(jnp.all(jnp.isfinite(y)))):
        raise ValueError("point clouds contain NaN or inf; filter them first.")
    return x, y


def sinkhorn_divergence(
    x,
    y,
    *,
    epsilon: float = REFERENCE_EPSILON,
    max_iterations: int = REFERENCE_MAX_ITERATIONS,
    threshold: float = REFERENCE_THRESHOLD,
) -> float:
    """Debiased `S_eps(x, y)` of uniform point clouds `x [N, D]`, `y [M, D]` (module doc).

    Exact identity used by the tests: `S_eps(mu, mu + t) = |t|^2` for any translation `t`.
    """
    x, y = _check_clouds(x, y)
    value, _ = ott_divergence.sinkhorn_divergence(
        pointcloud.PointCloud,
        x,
        y,
        epsilon=epsilon,
        solve_kwargs={"max_iterations": max_iterations, "threshold": threshold},
    )
    return float(value)


def em_toy_divergence(truth_a, truth_b, samples, **kwargs) -> float:
    """E.4's metric: `S_eps(truth_a, samples) - S_eps(truth_a, truth_b)` (0 is perfect).

    Args:
      truth_a: `[N, D]` true latents.
      truth_b: `[N, D]` other true latents (the reference's second half).
      samples: `[M, D]` samples of the learned prior.
      **kwargs: `sinkhorn_divergence`'s options.
    """
    return sinkhorn_divergence(truth_a, samples, **kwargs) - sinkhorn_divergence(
        truth_a, truth_b, **kwargs
    )


def entropic_transport_cost(
    x,
    y,
    *,
    epsilon: float = REFERENCE_EPSILON,
    max_iterations: int = REFERENCE_MAX_ITERATIONS,
    threshold: float = REFERENCE_THRESHOLD,
) -> float:
    """`W_eps(x, y) = <P_eps, C>` of uniform clouds `x [N, D]`, `y [M, D]` (module doc).

    `P_eps` is ott-jax's Sinkhorn plan for the cost `C_ij = |x_i - y_j|^2` and regularisation
    `epsilon` (absolute); the value is its transport cost at `C` (`primal_cost`), without the
    entropy term. With one point each, `W_eps(x, y) = |x_1 - y_1|^2` exactly.
    """
    x, y = _check_clouds(x, y)
    geometry = pointcloud.PointCloud(x, y, epsilon=epsilon)
    out = linear.solve(geometry, max_iterations=max_iterations, threshold=threshold)
    return float(out.primal_cost)


def reference_toy_metric(u1, u2, v, **kwargs) -> float:
    """The reference's E.4 metric `W_eps(u1, v) - W_eps(u1, u2)` (module doc; not clipped).

    Args:
      u1: `[N, D]` true latents.
      u2: `[N, D]` other true latents, independent of `u1`.
      v: `[M, D]` the samples scored.
      **kwargs: `entropic_transport_cost`'s options.

    Returns:
      A float; 0 exactly for `v = u2`, negative when `v` is closer to `u1` than `u2` is.
    """
    return entropic_transport_cost(u1, v, **kwargs) - entropic_transport_cost(u1, u2, **kwargs)


def sliced_wasserstein(x, y, *, rng, num_projections: int = 128, num_quantiles: int = 256):
    """Sliced W2^2: mean over random directions of the 1-D W2^2 between projections.

    Args:
      x: `[N, D]`; y: `[M, D]`.
      rng: key of the directions.
      num_projections: random unit directions.
      num_quantiles: quantile levels of the 1-D distances (midpoints `(i + 1/2) / Q`).

    Returns:
      A float `>= 0` (0 for identical clouds).
    """
    x, y = _check_clouds(x, y)
    theta = jax.random.normal(rng, (x.shape[1], num_projections), x.dtype)
    theta = theta / jnp.linalg.norm(theta, axis=0, keepdims=True)
    levels = (jnp.arange(num_quantiles) + 0.5) / num_quantiles
    qx = jnp.quantile(x @ theta, levels, axis=0)
    qy = jnp.quantile(y @ theta, levels, axis=0)
    return float(jnp.mean(jnp.square(qx - qy)))


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(0.5 * (matrix + matrix.T))
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance(features_a, features_b) -> float:
    """Fréchet distance between Gaussians fitted to `[N, F]` and `[M, F]` (module doc)."""
    a = np.asarray(features_a, np.float64)
    b = np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need features [N, F] and [M, F], N, M >= 2; got {a.shape}, {b.shape}.")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = _sqrtm_psd(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ cov_b @ root), 0.0, None)).sum()
    value = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross
    return float(max(value, 0.0))


__all__ = [
    "em_toy_divergence",
    "entropic_transport_cost",
    "frechet_distance",
    "psnr",
    "reference_toy_metric",
    "sinkhorn_divergence",
    "sliced_wasserstein",
    "ssim",
]
