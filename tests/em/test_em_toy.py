"""The toy EM in the reference's terms: its metric forms per lap, and the `noclip` variant."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax import em, methods
from diffssl_jax.configs.em.toy import get_config
from diffssl_jax.data import manifold
from diffssl_jax.em import options, toy
from diffssl_jax.evaluation import metrics
from diffssl_jax.sampling.denoisers import GaussianDenoiser, ScaledDenoiser

# Finite, out of range (|x| > 3), non-finite, beyond the default's clip (2 < |x| <= 3).
SAMPLES = np.array(
    [[0.0, 1.0], [np.nan, 0.0], [4.0, 0.0], [np.inf, 9.0], [-2.9, 2.9], [2.5, 0.0], [-1.0, 2.0]]
)


def test_without_a_bound_out_of_range_finite_samples_are_kept_and_non_finite_dropped():
    """`em.sample_bound = 0` (`None` to `filter_samples`): drop only non-finite samples."""
    kept, counts = em.filter_samples(SAMPLES, None)
    np.testing.assert_array_equal(kept, SAMPLES[[0, 2, 4, 5, 6]])
    assert counts == {"num_nonfinite": 2, "num_out_of_range": 0, "num_kept": 5}


def test_noclip_keeps_every_kept_sample_unclipped_and_the_default_clips():
    """The M-step trains on `clip(x / em.data_scale, -1, 1)`: with `noclip`'s data_scale =
    sample_bound = 3 every kept sample is inside; the default's data_scale 2 clips |x| > 2."""
    default, noclip = get_config(), get_config("noclip")
    assert noclip.em.data_scale == noclip.em.sample_bound == default.em.sample_bound == 3.0
    kept, _ = em.filter_samples(SAMPLES, noclip.em.sample_bound)
    assert toy.num_clipped(kept, noclip.em.data_scale) == 0
    assert toy.num_clipped(kept, default.em.data_scale) == 2  # [-2.9, 2.9] and [2.5, 0]
    for config in (noclip, get_config("tiny,noclip"), get_config("paper,noclip")):
        options.check_units(config)
        assert config.objective.sigma_data * config.em.data_scale == pytest.approx(1.0)


def test_noclip_is_the_same_prior_in_toy_units():
    """Same parameters: the two configs' EM-unit denoisers and M-step losses agree, because
    EDM's c_in, c_skip, the time t(sigma) and the loss depend on sigma / s_d and sigma / a
    only; `noclip` changes nothing but the clip."""
    default, noclip = get_config("tiny"), get_config("tiny,noclip")
    recipes = [methods.make_recipe(c) for c in (default, noclip)]
    params = recipes[0].init(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (16, 5), minval=-2.0, maxval=2.0)
    sigmas = jnp.geomspace(2e-3, 8.0, 16)
    outs, losses = [], []
    for config, recipe in zip((default, noclip), recipes, strict=True):
        scale = config.em.data_scale
        prior = ScaledDenoiser(recipe.denoiser(params), (1, 1, 5), scale)
        outs.append(jax.vmap(prior)(x, sigmas))
        batch = {"image": (x / scale).reshape(16, 1, 1, 5)}
        losses.append(recipe.loss(params, batch, jax.random.key(2))[0])
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)


def test_toy_evaluator_logs_both_metric_forms_and_draws_them(tmp_path):
    config = get_config("tiny")
    config.em.num_eval_samples = 32
    experiment = em.make_experiment(config)
    x_clean = experiment.clean_data()
    prior = ScaledDenoiser(GaussianDenoiser.fit(jnp.asarray(x_clean)), (5,), 1.0)
    evaluate = experiment.evaluator(str(tmp_path), x_clean)
    samples = x_clean.copy()
    samples[:3, 0] = 2.5  # three samples the default's M-step would clip
    out = evaluate(0, prior, samples, jax.random.key(0))
    assert out["eval/num_clipped"] == 3
    assert {"eval/divergence", "eval/reference_metric", "eval/sliced_w2"} <= set(out)
    num, n = config.em.num_eval_samples, config.em.num_observations
    truth = np.asarray(manifold.randman(config.em.data_seed, n + 2 * num))[n:]
    # The posterior form: u1 the first observed latents, v the first samples, u2 fresh.
    expected = metrics.reference_toy_metric(x_clean[:num], truth[num:], samples[:num])
    assert out["eval/reference_metric_posterior"] == pytest.approx(expected, rel=1e-6, abs=1e-9)
    # v = the observed latents themselves: closer to u1 than u2 is, so below 0.
    clean = evaluate("clean", prior, x_clean, jax.random.key(0))
    assert clean["eval/reference_metric_posterior"] < 0
    # The prior form, recomputed from its definition on the same prior samples.
    prior_x = em.prior_samples(prior, (5,), num, rng=jax.random.key(0), sampling=config.sampling)
    expected = metrics.reference_toy_metric(truth[:num], truth[num:], prior_x)
    assert clean["eval/reference_metric"] == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert (tmp_path / "figures" / "em_curve_forms.png").exists()
    assert (tmp_path / "figures" / "corner_clean.png").exists()
