"""Whether posterior samples are spread like the posterior: intervals and calibration.

A reconstruction metric (PSNR, SSIM) rewards the posterior mean, which is blurry; a sampler
that returned the mean every time would score best. Two measures reward samples that are
spread as the true posterior is, both exact consequences of exchangeability: if the
sampler is correct, the truth ``x`` and ``K`` samples ``x_1 .. x_K`` are ``K + 1``
independent draws of the same posterior ``p(x | y)``.

* **Spread-skill ratio.** ``E ||x_k - x||^2 = 2 tr Cov[x | y] = E ||x_k - x_l||^2``
  (``k != l``), so ``skill / spread = 1`` where ``skill`` is the mean squared error of one
  sample and ``spread`` the mean squared distance of two samples of the same observation.
  Above 1: samples too close to each other for their error (over-confident; infinite for a
  deterministic method); below 1: too spread (under-confident). Pooled over images as
  ``sum skill / sum spread`` (Fortin et al. 2014, "Why should ensemble spread match the RMSE
  of the ensemble mean?", for the ensemble form).
* **Range coverage.** Per pixel, the truth lies between the smallest and largest of the
  ``K`` samples with probability ``(K - 1) / (K + 1)`` (its rank among ``K + 1``
  exchangeable values is uniform): ``1/3`` for ``K = 2``. Lower: over-confident.

Both may be restricted to a region (e.g. the missing pixels of an inpainting task), where the
posterior is wide. Intervals: Student-t over images for means, a percentile bootstrap over
images for ratios.
"""

import numpy as np
import scipy.stats


def mean_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """``(mean, half_width)`` of the Student-t interval for the mean of ``values`` ``[N]``.

    ``half_width = t_{(1 + confidence) / 2, N - 1} s / sqrt(N)`` with ``s`` the sample standard
    deviation; NaN for fewer than 2 values.
    """
    values = np.asarray(values, np.float64).reshape(-1)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"mean_interval needs finite values; got {values[~np.isfinite(values)]}.")
    n = len(values)
    if n < 2:
        return (float(values.mean()) if n else float("nan")), float("nan")
    sem = values.std(ddof=1) / np.sqrt(n)
    return float(values.mean()), float(scipy.stats.t.ppf((1 + confidence) / 2, n - 1) * sem)


def ratio_interval(
    numerators, denominators, *, confidence: float = 0.95, num_resamples: int = 2000, seed=0
) -> tuple[float, float, float]:
    """``(ratio, low, high)``: ``sum(numerators) / sum(denominators)`` over items ``[N]``
    and its percentile-bootstrap interval (items resampled with replacement); infinite when
    every denominator is 0."""
    num = np.asarray(numerators, np.float64)
    den = np.asarray(denominators, np.float64)
    if num.shape != den.shape or num.ndim != 1:
        raise ValueError(f"need two [N] arrays of equal shape, got {num.shape}, {den.shape}.")
    if not den.sum() > 0:  # no spread at all: a deterministic method
        return float("inf"), float("inf"), float("inf")
    ratio = float(num.sum() / den.sum())
    picks = np.random.default_rng(seed).integers(0, len(num), (num_resamples, len(num)))
    boot = num[picks].sum(1) / den[picks].sum(1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(boot, [tail, 100 - tail])
    return ratio, float(low), float(high)


def _weights(truth, region):
    if region is None:
        return np.ones(truth.shape, np.float64)
    region = np.broadcast_to(np.asarray(region, bool), truth.shape)
    if not region.reshape(len(truth), -1).any(axis=1).all():
        raise ValueError("the region is empty for some image; pass region=None there.")
    return region.astype(np.float64)


def spread_and_skill(samples, truth, region=None) -> tuple[np.ndarray, np.ndarray]:
    """Per image ``(skill, spread)``, each ``[N]`` (mean over the region's pixels):
    ``skill = mean_k |x_k - x|^2``, ``spread = mean_{k != l} |x_k - x_l|^2``.

    Args:
      samples: ``[N, K, ...]`` posterior samples, ``K >= 2``.
      truth: ``[N, ...]`` ground truth.
      region: optional bool ``[N, ...]`` (broadcasting): the pixels scored.
    """
    samples = np.asarray(samples, np.float64)
    truth = np.asarray(truth, np.float64)
    if samples.ndim != truth.ndim + 1 or samples.shape[2:] != truth.shape[1:]:
        raise ValueError(f"samples {samples.shape} must be [N, K, *{truth.shape[1:]}].")
    k = samples.shape[1]
    if k < 2:
        raise ValueError(f"the spread needs at least 2 samples per observation, got {k}.")
    w = _weights(truth, region)
    axes = tuple(range(1, truth.ndim))
    total = w.sum(axis=axes)
    skill = (np.square(samples - truth[:, None]).mean(1) * w).sum(axis=axes) / total
    # mean over ordered pairs k != l of |x_k - x_l|^2 = 2 K / (K - 1) * (per-pixel variance)
    spread = 2.0 * k / (k - 1) * (samples.var(axis=1) * w).sum(axis=axes) / total
    return skill, spread


def range_coverage(samples, truth, region=None) -> np.ndarray:
    """Per image ``[N]``: the fraction of the region's pixels whose truth lies within
    ``[min_k x_k, max_k x_k]``; ``(K - 1) / (K + 1)`` in expectation for a correct sampler."""
    samples = np.asarray(samples, np.float64)
    truth = np.asarray(truth, np.float64)
    inside = (samples.min(1) <= truth) & (truth <= samples.max(1))
    w = _weights(truth, region)
    axes = tuple(range(1, truth.ndim))
    return (inside * w).sum(axis=axes) / w.sum(axis=axes)


def expected_coverage(num_samples: int) -> float:
    """``(K - 1) / (K + 1)``: the range coverage of ``K`` samples of a correct posterior."""
    return (num_samples - 1) / (num_samples + 1)
