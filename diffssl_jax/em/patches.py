"""EM on natural-image patches (docs/em.md; docs/methods.md F): random-pixel masking.

Clean data: the first `em.num_observations` training patches (`data.patches.PatchSource`,
16x16 grey crops of the seven training photographs, in [-1, 1], in the source's fixed random
order, so any prefix mixes the photographs). Observations as for digits
(`images.mask_pixels`: exactly `round(em.mask_rate H W)` random pixels removed, noise
`em.noise_std`, seed `em.data_seed + 1`). Held-out data: the 739 test patches (astronaut,
grass, flower), never a training photograph.

Per lap, besides the posterior PSNR of `ImageExperiment`, the `em.num_eval_samples` prior
samples (clipped to [-1, 1]) are compared with the test patches by two measures that do not
rest on a learned feature extractor:

* `eval/sinkhorn`: the debiased Sinkhorn divergence `S_eps` in pixel space (256-d vectors;
  `evaluation.metrics.sinkhorn_divergence`, squared Euclidean cost, at most 1024 iterations,
  threshold 1e-3) with `eps = SINKHORN_EPSILON = 1`. Why 1: the median squared distance
  between two training patches is 61 and from a test patch to its nearest training patch 13
  (of 500), so eps = 1 keeps the entropic plan close to the unregularised one at the scale
  on which patches differ, and Sinkhorn converges within the cap (about 230 iterations);
  eps = 0.1 does not converge in 1024 iterations, and a large eps (16) tends to a
  comparison of means and covariances, which a Gaussian fitted to the data matches by
  construction.
* `eval/kurtosis_gap`: `|k(prior samples) - k(test patches)|`, where `k` is the excess
  kurtosis (`scipy.stats.kurtosis`, Fisher, biased estimator) of the horizontal neighbour
  differences `x[i, j + 1] - x[i, j]` pooled over images, rows and channels
  (`difference_kurtosis`). Natural images have heavy-tailed derivative statistics (Field
  1987; Simoncelli and Olshausen 2001): `k` = 7.3 on the test patches and 11.8 on the
  training patches, while any Gaussian gives 0. `eval/kurtosis` logs the samples' own `k`:
  the gap is not monotone in it (any `k` nearer 7.3 than 11.8 beats the training data).

Scale (`configs/em/patches.py`: 1024 images per draw against the 739 test patches, six
draws each, mean +- standard deviation): real training patches give Sinkhorn 18.64 +- 0.29
(18.21-18.95) and a kurtosis gap of 4.45 +- 0.59; clipped samples of the Gaussian fitted to
the training patches (`evaluation.priors.fit_gaussian_prior`) give 20.18 +- 0.30
(19.90-20.75) and 7.27 +- 0.02; the zero-filled observations of 1024 training patches give
39.1 / 49.2 (50 % / 75 % masked) and 6.10 / 4.42. (With 512 images per draw, ten draws:
19.29 +- 0.55 against 20.81 +- 0.38, gaps 4.77 +- 0.96 and 7.27.) The Sinkhorn divergence
is the curve's key: it separates the Gaussian from real patches by five standard deviations
of a draw (its floor is far above both), while the kurtosis gap, 2.5 units apart from real
data but with a wider spread, puts the 75 % floor (4.42) below real data. Both depend on the
sample count (the divergence's bias, the kurtosis estimator's variance): compare values
only at one `em.num_eval_samples`. Most of the divergence of real patches is the difference
between the training and the test photographs.
"""

import dataclasses
import functools

import numpy as np
import scipy.stats

from diffssl_jax.data.patches import PatchSource
from diffssl_jax.em.images import ImageExperiment, mask_pixels
from diffssl_jax.evaluation import metrics
from diffssl_jax.posterior.problems import InverseProblem

SINKHORN_EPSILON = 1.0  # squared [-1, 1] pixel units summed over 256 pixels (module doc)


def difference_kurtosis(images) -> float:
    """Excess kurtosis `m4 / m2^2 - 3` of the horizontal neighbour differences of `images`.

    Args:
      images: `[N, H, W, C]`, `W >= 2`.

    Returns:
      `scipy.stats.kurtosis` (Fisher, biased: central moments with `1 / n`) of every
      `x[n, i, j + 1, c] - x[n, i, j, c]`, pooled, in float64; 0 for a Gaussian.
    """
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 4 or x.shape[2] < 2:
        raise ValueError(f"difference_kurtosis needs images [N, H, W >= 2, C]; got {x.shape}.")
    return float(scipy.stats.kurtosis(np.diff(x, axis=2).ravel(), fisher=True, bias=True))


def kurtosis_gap(samples, reference) -> float:
    """`|difference_kurtosis(samples) - difference_kurtosis(reference)|`."""
    return abs(difference_kurtosis(samples) - difference_kurtosis(reference))


@functools.lru_cache(maxsize=2)
def _test_patches(patch_size: int) -> tuple[np.ndarray, float]:
    """The test patches `[N, S, S, 1]` and their `difference_kurtosis`, computed once."""
    images = PatchSource("test", patch_size=patch_size).images
    return images, difference_kurtosis(images)


def patch_measures(images, test_images, test_kurtosis: float) -> dict:
    """`eval/sinkhorn`, `eval/kurtosis_gap` and `eval/kurtosis` of `images [N, S, S, 1]`
    against the test patches (module docstring); non-finite images are left out and counted
    (`eval/num_nonfinite_prior`)."""
    flat = np.asarray(images, dtype=np.float32).reshape(len(images), -1)
    finite = np.all(np.isfinite(flat), axis=1)
    if not finite.any():
        raise ValueError(f"all {len(flat)} images are non-finite; no distribution to measure.")
    kept = np.asarray(images)[finite]
    k = difference_kurtosis(kept)
    return {
        "eval/sinkhorn": metrics.sinkhorn_divergence(
            flat[finite], test_images.reshape(len(test_images), -1), epsilon=SINKHORN_EPSILON
        ),
        "eval/kurtosis_gap": abs(k - test_kurtosis),
        "eval/kurtosis": k,
        "eval/num_nonfinite_prior": int((~finite).sum()),
    }


@dataclasses.dataclass(frozen=True)
class PatchesExperiment(ImageExperiment):
    """Masked natural patches: `em.mask_rate` of the pixels removed; the Sinkhorn divergence
    and the kurtosis gap to the test patches per lap (module docstring)."""

    name = "patches"
    curve_key = "eval/sinkhorn"
    curve_label = "Sinkhorn divergence to the test patches"
    curve_log_y = False

    @property
    def title(self) -> str:
        return f"natural patches, {self.em.mask_rate:.0%} masked"

    @property
    def patch_size(self) -> int:
        """`S` of `data.image_shape = (S, S, 1)` (ValueError for any other shape)."""
        h, w, c = self.image_shape
        if h != w or c != 1:
            raise ValueError(
                f"the patches task needs data.image_shape=(S, S, 1) (grey square patches); got "
                f"{self.image_shape}."
            )
        return h

    def training_images(self) -> np.ndarray:
        return PatchSource("train", patch_size=self.patch_size).images

    def observe(self, x) -> InverseProblem:
        return mask_pixels(self.em, x)

    def distribution_measure(self):
        """`patch_measures` against the test patches, loaded now."""
        test_images, test_kurtosis = _test_patches(self.patch_size)
        return functools.partial(
            patch_measures, test_images=test_images, test_kurtosis=test_kurtosis
        )
