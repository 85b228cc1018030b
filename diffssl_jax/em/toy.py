"""EM's toy experiment (Rozet et al. 2024, E.4; docs/methods.md F): the random 1-d manifold.

Clean data: `N = em.num_observations` latents in R^5 on the manifold of seed `em.data_seed`
(`data.manifold.randman`, in [-2, 2]: EM units). Observations: one random `em.obs_dim x 5`
projection with unit-norm rows per latent plus noise `em.noise_std`
(`posterior.observations.random_projections`, seed `em.data_seed + 1`).

Per lap, with `K = em.num_eval_samples`, `u1`, `u2` two independent sets of K fresh points of
the manifold and `v` K prior samples (`evaluation.metrics`, eps = 1e-3):

* `eval/divergence`: the library's form, debiased `S_eps(u1, v) - S_eps(u1, u2)`;
* `eval/reference_metric`: the reference's form `W_eps(u1, v) - W_eps(u1, u2)` on the same
  points (`W_eps` the transport cost of the entropic plan, as the reference's POT call);
* `eval/reference_metric_posterior`: the reference's form on the points its own script
  scores: `u1` the first K observed latents, `v` the first K kept posterior samples of the
  lap (its `pi[:16384]`), `u2` the fresh `u2` above;
* `eval/sliced_w2` (prior samples against `u1`) and `eval/num_clipped`: kept samples with an
  entry beyond `em.data_scale`, which the next M-step clips into the network's [-1, 1]
  (`em.laps.m_step`; 0 in `configs/em/toy.py:noclip`).

Figures: a corner plot of the posterior samples per lap, and `figures/em_curve_forms.png`
(the three forms per lap, with the clean-data ceiling dashed). The ceiling scores the
clean-data prior the same way, with one posterior sample per observation under it; there is
no floor.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffssl_jax import plotting, storage
from diffssl_jax.data import manifold
from diffssl_jax.em.estep import prior_samples
from diffssl_jax.em.laps import completed_laps, lap_dir
from diffssl_jax.evaluation import metrics
from diffssl_jax.posterior.observations import random_projections
from diffssl_jax.posterior.problems import InverseProblem

FORMS = {  # legend names (S: debiased Sinkhorn divergence, W: entropic transport cost)
    "eval/divergence": "S(u1, prior) - S(u1, u2)",
    "eval/reference_metric": "W(u1, prior) - W(u1, u2)",
    "eval/reference_metric_posterior": "W(x_obs, posterior) - W(x_obs, u2)",
}


def lap_label(lap) -> str:
    """`lap_003` for a lap, or the name of a baseline (`clean`) as given."""
    return lap if isinstance(lap, str) else f"lap_{lap:03d}"


def num_clipped(samples, data_scale: float) -> int:
    """Samples `[N, D]` with any `|x| > data_scale`: those the M-step clips into [-1, 1]."""
    flat = np.asarray(samples).reshape(len(samples), -1)
    return int(np.sum(np.any(np.abs(flat) > data_scale, axis=1)))


def save_forms_curve(workdir: str, infos: dict, clean: dict | None) -> str:
    """`figures/em_curve_forms.png`: each metric form of `FORMS` per lap (`infos`: lap ->
    metrics), the clean ceiling's dashed; log axis when every value is positive."""
    lap_ids = sorted(infos)
    curves, hlines = {}, {}
    for key, label in FORMS.items():
        if all(key in infos[k] for k in lap_ids):
            curves[label] = np.asarray([infos[k][key] for k in lap_ids])
        if clean and key in clean:
            hlines[f"clean prior: {label}"] = clean[key]
    values = np.concatenate([*curves.values(), np.asarray(list(hlines.values()))])
    return plotting.save_curves(
        np.asarray(lap_ids),
        curves,
        storage.path(workdir) / "figures" / "em_curve_forms.png",
        hlines=hlines,
        ylabel="eps = 1e-3; 0: as good as fresh true latents",
        log_y=bool(np.all(values > 0)),
        title="EM, toy manifold: the metric in both forms per lap",
    )


@dataclasses.dataclass(frozen=True)
class ToyExperiment:
    """The toy manifold (module docstring); the `experiments.Experiment` interface.

    Attributes:
      em: the `em` group (num_observations, data_seed, obs_dim, noise_std, num_eval_samples,
        data_scale).
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
        """The per-lap metrics and figures `(lap, prior, samples, rng) -> {name: float}`;
        `samples` are the lap's kept posterior samples, in the order of the observations."""
        num, n = self.em.num_eval_samples, self.em.num_observations
        figures = storage.path(workdir) / "figures"
        # The same manifold (same seed) as the observed latents; the points after the first
        # num_observations are independent of them.
        truth = np.asarray(manifold.randman(self.em.data_seed, n + 2 * num))[n:]
        u1, u2, observed = truth[:num], truth[num:], np.asarray(x_clean)[:num]
        # E.4's offsets: each form between two independent samples of the truth.
        offset = metrics.sinkhorn_divergence(u1, u2)
        offset_w = metrics.entropic_transport_cost(u1, u2)
        offset_w_observed = metrics.entropic_transport_cost(observed, u2)
        shape = tuple(x_clean.shape[1:])

        def evaluate(lap, prior, samples, rng):
            label = lap_label(lap)
            prior_x = prior_samples(prior, shape, num, rng=rng, sampling=self.sampling)
            finite = prior_x[np.all(np.isfinite(prior_x), axis=1)]
            posterior_x = np.asarray(samples)[:num]
            out = {
                "eval/divergence": metrics.sinkhorn_divergence(u1, finite) - offset,
                "eval/reference_metric": metrics.entropic_transport_cost(u1, finite) - offset_w,
                "eval/reference_metric_posterior": (
                    metrics.entropic_transport_cost(observed, posterior_x) - offset_w_observed
                ),
                "eval/sliced_w2": metrics.sliced_wasserstein(u1, finite, rng=rng),
                "eval/num_clipped": num_clipped(samples, self.em.data_scale),
            }
            if storage.is_primary():
                plotting.save_corner_plot(
                    samples[:num],
                    figures / f"corner_{label}.png",
                    u1,
                    title=f"EM, toy manifold, {label.replace('_', ' ')}",
                )
                _save_curve_so_far(workdir, lap, out)
            return out

        return evaluate

    def floor(self, workdir: str, x_clean, problem) -> None:
        """No floor: a projection is no estimate of a latent."""
        del workdir, x_clean, problem

    def ceiling(self, prior, x_clean, evaluate, rng, posterior_samples) -> dict:
        """The clean-data prior scored like a lap: one posterior sample per observation under
        it (key `fold_in(rng, 0)`; its drop counts are recorded) and its prior samples."""
        del x_clean
        kept, counts = posterior_samples(jax.random.fold_in(rng, 0))
        return {**counts, **evaluate("clean", prior, kept, rng)}


def _save_curve_so_far(workdir: str, lap, out: dict) -> None:
    """Redraws `em_curve_forms.png` from the completed laps' `lap.json` and `out` (lap `lap`,
    not yet written, or the ceiling `"clean"`)."""
    done = completed_laps(workdir)
    infos = {k: storage.read_json(lap_dir(workdir, k) / "lap.json") for k in done}
    if isinstance(lap, str):
        save_forms_curve(workdir, infos, out)
    else:
        save_forms_curve(workdir, {**infos, lap: out}, None)
