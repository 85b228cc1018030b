"""EM's toy experiment (Rozet et al. 2024, E.4; docs/methods.md F): the random 1-d manifold.

Clean data: `N = em.num_observations` latents in R^5 on the manifold of seed `em.data_seed`
(`data.manifold.randman`, in [-2, 2]: EM units). Observations: one random `em.obs_dim x 5`
projection with unit-norm rows per latent plus noise `em.noise_std`
(`posterior.observations.random_projections`, seed `em.data_seed + 1`). Per lap: E.4's Sinkhorn
divergence of `em.num_eval_samples` prior samples to as many fresh points of the manifold,
minus the divergence between two independent samples of the truth (`eval/divergence`), the
sliced W2 (`eval/sliced_w2`) and a corner plot of the posterior samples. The ceiling scores
the clean-data prior the same way; there is no floor.
"""

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from diffssl_jax import plotting, storage
from diffssl_jax.data import manifold
from diffssl_jax.em.estep import prior_samples
from diffssl_jax.evaluation import metrics
from diffssl_jax.posterior.observations import random_projections
from diffssl_jax.posterior.problems import InverseProblem


def lap_label(lap) -> str:
    """`lap_003` for a lap, or the name of a baseline (`clean`) as given."""
    return lap if isinstance(lap, str) else f"lap_{lap:03d}"


@dataclasses.dataclass(frozen=True)
class ToyExperiment:
    """The toy manifold (module docstring); the `experiments.Experiment` interface.

    Attributes:
      em: the `em` group (num_observations, data_seed, obs_dim, noise_std, num_eval_samples).
      sampling: the `sampling` group (the prior samples' grid, in EM units).
      image_shape: `data.image_shape` (unused: the latents are vectors).
    """

    em: Any
    sampling: Any
    image_shape: tuple = ()

    name = "toy"
    title = "toy manifold"
    curve_key = "eval/divergence"
    curve_label = "Sinkhorn divergence to the truth"
    curve_log_y = True  # divergences span decades

    def clean_data(self) -> np.ndarray:
        """`[N, 5]` latents on the manifold (EM units)."""
        return np.asarray(manifold.randman(self.em.data_seed, self.em.num_observations))

    def observe(self, x) -> InverseProblem:
        """Random projections of `x` (E.4)."""
        c = self.em
        return random_projections(
            c.data_seed + 1, jnp.asarray(x), noise_std=c.noise_std, obs_dim=c.obs_dim
        )

    def evaluator(self, workdir: str, x_clean: np.ndarray):
        """The per-lap metric and figure `(lap, prior, samples, rng) -> {name: float}`."""
        num, n = self.em.num_eval_samples, self.em.num_observations
        figures = storage.path(workdir) / "figures"
        # The same manifold (same seed) as the observed latents; the points after the first
        # num_observations are independent of them.
        truth = np.asarray(manifold.randman(self.em.data_seed, n + 2 * num))[n:]
        # E.4's offset: the divergence between two independent samples of the truth.
        offset = metrics.sinkhorn_divergence(truth[:num], truth[num:])
        shape = tuple(x_clean.shape[1:])

        def evaluate(lap, prior, samples, rng):
            label = lap_label(lap)
            prior_x = prior_samples(prior, shape, num, rng=rng, sampling=self.sampling)
            finite = prior_x[np.all(np.isfinite(prior_x), axis=1)]
            out = {
                "eval/divergence": metrics.sinkhorn_divergence(truth[:num], finite) - offset,
                "eval/sliced_w2": metrics.sliced_wasserstein(truth[:num], finite, rng=rng),
            }
            if storage.is_primary():
                plotting.save_corner_plot(
                    samples[:num],
                    figures / f"corner_{label}.png",
                    truth[:num],
                    title=f"EM, toy manifold, {label.replace('_', ' ')}",
                )
            return out

        return evaluate

    def floor(self, workdir: str, x_clean, problem) -> None:
        """No floor: a projection is no estimate of a latent."""
        del workdir, x_clean, problem

    def ceiling(self, prior, x_clean, evaluate, rng, posterior_samples) -> dict:
        """The clean-data prior scored like a lap; its metric reads only prior samples, so it
        is given the clean data."""
        del posterior_samples
        return evaluate("clean", prior, np.asarray(x_clean), rng)
