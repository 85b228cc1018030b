"""EM's image experiments (docs/methods.md F): masked digits and undersampled MRI phantoms
(masked natural patches: `em.patches`, on the same base class).

Clean data: the first `em.num_observations` training images (digits 16x16, or phantoms of
`data.image_shape`), in [-1, 1] (EM units = network units, `em.data_scale = 1`).
Observations, seed `em.data_seed + 1`: digits lose exactly `round(em.mask_rate H W)` random
pixels (`posterior.observations.pixel_inpainting`); MRI keeps `W / em.acceleration` k-space
columns with a fully sampled centre (`undersampled_mri`); noise `em.noise_std` per (real)
part. Per lap: the PSNR of the posterior samples against the clean images
(`eval/psnr_posterior`), the experiment's distribution measures of prior samples against
held-out images (`ImageExperiment.distribution_measure`; digits: the Fréchet distance to the
test digits in the features of `evaluation.digit_classifier`, `eval/frechet`; MRI: none),
plus a grid of posterior and prior samples. The floor is the zero-filled observation
`A^H y` (`posterior.problems.zero_filled`) scored in the same units, PSNR and distribution
measures (`baseline_zero_filled.json`); the ceiling scores one MMPS posterior sample per
observation under the clean-data prior.
"""

import abc
import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from diffssl_jax import plotting, storage
from diffssl_jax.data.phantoms import PhantomSource
from diffssl_jax.data.sources import DigitsSource
from diffssl_jax.em.estep import prior_samples
from diffssl_jax.em.toy import lap_label
from diffssl_jax.evaluation import digit_classifier, metrics
from diffssl_jax.posterior.observations import pixel_inpainting, undersampled_mri
from diffssl_jax.posterior.problems import InverseProblem, zero_filled


@functools.lru_cache(maxsize=4)
def _digit_features(workdir: str):
    feature_fn = digit_classifier.load_feature_fn(workdir)
    return feature_fn, feature_fn(digit_classifier.test_images())


def mask_pixels(em, x) -> InverseProblem:
    """Random-pixel masking of the tasks with `em.mask_rate` (digits, patches): each image loses
    exactly `round(em.mask_rate H W)` pixels, noise `em.noise_std`, seed `em.data_seed + 1`."""
    return pixel_inpainting(
        em.data_seed + 1, jnp.asarray(x), noise_std=em.noise_std, rate=em.mask_rate
    )


@dataclasses.dataclass(frozen=True)
class ImageExperiment(abc.ABC):
    """What the image tasks share (module docstring); the `experiments.Experiment` interface.

    Attributes:
      em: the `em` group (num_observations, data_seed, noise_std, the task's operator keys,
        num_eval_samples, and what the task's distribution measure reads).
      sampling: the `sampling` group (the prior samples' grid, in EM units).
      image_shape: `data.image_shape` `(H, W, C)`.
    """

    em: Any
    sampling: Any
    image_shape: tuple

    curve_key = "eval/psnr_posterior"
    curve_label = "PSNR of posterior samples (dB)"
    curve_log_y = False

    @property
    @abc.abstractmethod
    def title(self) -> str:
        """The task as figure titles name it."""

    @abc.abstractmethod
    def training_images(self) -> np.ndarray:
        """Every training image of the task, `[M, H, W, C]`."""

    @abc.abstractmethod
    def observe(self, x) -> InverseProblem:
        """The task's observations of the clean images `x` (seed `em.data_seed + 1`)."""

    def distribution_measure(self) -> Callable[[np.ndarray], dict] | None:
        """`measure(images [N, H, W, C] in [-1, 1]) -> {name: float}`: the task's distances of
        a set of images to held-out data, with what it reads loaded now (a missing file fails
        before any lap), or None (the task has none)."""
        return None

    def clean_data(self) -> np.ndarray:
        """The first `em.num_observations` training images (EM units)."""
        images, n = self.training_images(), self.em.num_observations
        if n > len(images):
            raise ValueError(
                f"em.num_observations={n} asks for more observations than the {len(images)} "
                f"{self.name} training images; lower it."
            )
        return images[:n]

    def evaluator(self, workdir: str, x_clean: np.ndarray):
        """The per-lap metric and figure `(lap, prior, samples, rng) -> {name: float}`."""
        num = self.em.num_eval_samples
        figures = storage.path(workdir) / "figures"
        measure = self.distribution_measure()  # loaded now: a missing file fails before any lap
        shape = tuple(x_clean.shape[1:])

        def evaluate(lap, prior, samples, rng):
            label = lap_label(lap)
            prior_x = prior_samples(prior, shape, num, rng=rng, sampling=self.sampling)
            out = {}
            if len(samples) == len(x_clean):
                out["eval/psnr_posterior"] = float(jnp.mean(metrics.psnr(samples, x_clean)))
            if measure is not None:
                out.update(measure(np.clip(prior_x, -1, 1)))
            if storage.is_primary():
                plotting.save_image_grid(
                    {
                        "posterior\nsamples": samples[:32],
                        "prior\nsamples": np.clip(prior_x[:32], -1, 1),
                    },
                    figures / f"samples_{label}.png",
                    num_cols=16,
                    title=f"EM, {self.title}, {label.replace('_', ' ')}: one posterior "
                    "sample per observation, then samples of the prior",
                )
            return out

        return evaluate

    def floor(self, workdir: str, x_clean, problem: InverseProblem) -> dict:
        """The floor (`baseline_zero_filled.json`), in the per-lap units.

        The zero-filled reconstruction `A^H y` (the observation with the missing pixels at 0
        for digits, `Re(F^H y)` for MRI) against the clean images: `eval/psnr_posterior` =
        PSNR(A^H y, x) and the task's distribution measures of `A^H y` clipped to [-1, 1]
        (digits: `eval/frechet`). Also draws
        `figures/observations.png` (clean images above their zero-filled observations).
        """
        filled = np.asarray(zero_filled(problem)).reshape(x_clean.shape)
        floor = {"eval/psnr_posterior": float(jnp.mean(metrics.psnr(filled, x_clean)))}
        measure = self.distribution_measure()
        if measure is not None:
            floor.update(measure(np.clip(filled, -1, 1)))
        if storage.is_primary():
            storage.write_json(storage.path(workdir) / "baseline_zero_filled.json", floor)
            plotting.save_image_grid(
                {"clean": x_clean[:16], "zero-filled\nobservation": np.clip(filled[:16], -1, 1)},
                storage.path(workdir) / "figures" / "observations.png",
                num_cols=16,
                title=f"EM, {self.title}: clean images and their zero-filled observations",
            )
        return floor

    def ceiling(self, prior, x_clean, evaluate, rng, posterior_samples) -> dict:
        """The clean-data prior scored like a lap: one MMPS posterior sample per observation
        under it (`posterior_samples(key) -> (kept, counts)`, key `fold_in(rng, 0)`), then the
        per-lap metric (key `fold_in(rng, 1)`)."""
        del x_clean
        kept, counts = posterior_samples(jax.random.fold_in(rng, 0))
        return {**counts, **evaluate("clean", prior, kept, jax.random.fold_in(rng, 1))}


@dataclasses.dataclass(frozen=True)
class DigitsExperiment(ImageExperiment):
    """Masked digits: `em.mask_rate` of the pixels removed; Fréchet distance per lap."""

    name = "digits"
    curve_key = "eval/frechet"
    curve_label = "Fréchet distance to the test digits"
    curve_log_y = True  # divergences span decades

    @property
    def title(self) -> str:
        return f"digits with {self.em.mask_rate:.0%} of pixels masked"

    def training_images(self) -> np.ndarray:
        return DigitsSource("train").images

    def distribution_measure(self):
        """`eval/frechet`: the Fréchet distance to the test digits in the features of the
        classifier in `em.classifier_workdir` (FileNotFoundError with the command that trains
        it), loaded once per directory (the per-lap metric and the floor share it)."""
        feature_fn, test_features = _digit_features(str(storage.path(self.em.classifier_workdir)))

        def measure(images):
            return {"eval/frechet": metrics.frechet_distance(feature_fn(images), test_features)}

        return measure

    def observe(self, x) -> InverseProblem:
        return mask_pixels(self.em, x)


@dataclasses.dataclass(frozen=True)
class MRIExperiment(ImageExperiment):
    """Undersampled MRI of phantoms at `em.acceleration`; PSNR per lap."""

    name = "mri"

    @property
    def title(self) -> str:
        return f"MRI at {self.em.acceleration:g}x acceleration"

    def training_images(self) -> np.ndarray:
        return PhantomSource("train", size=self.image_shape[0]).images

    def observe(self, x) -> InverseProblem:
        c = self.em
        return undersampled_mri(
            c.data_seed + 1,
            jnp.asarray(x),
            noise_std=c.noise_std,
            acceleration=c.acceleration,
            center_fraction=c.center_fraction,
        )
