"""The EDM recipe (`methods/edm.py`): the registered prior of EM, its denoiser and its units."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax import methods
from diffssl_jax.configs.em.toy import get_config
from diffssl_jax.sampling import samplers
from diffssl_jax.sampling.denoisers import EDMDenoiser, edm_preconditioning


def test_edm_is_a_registered_recipe_with_a_denoiser():
    config = get_config("tiny")
    recipe = methods.make_recipe(config)
    params = recipe.init(jax.random.key(0))
    denoiser = recipe.denoiser(params)
    assert isinstance(denoiser, EDMDenoiser)
    x = jnp.linspace(-1.0, 1.0, 5).reshape(1, 1, 5)
    assert denoiser(x, 0.1).shape == x.shape
    batch = {"image": jnp.tile(x, (4, 1, 1, 1))}
    loss, _ = recipe.loss(params, batch, jax.random.key(1))
    assert np.isfinite(float(loss))
    samples = recipe.sample(params, jax.random.key(2), 3)
    assert samples.shape == (3, 1, 1, 5) and float(jnp.max(jnp.abs(samples))) <= 1.0


def test_preconditioning_is_the_identity_at_zero_noise():
    """c_skip = 1, c_out = 0 at sigma = 0: D(x, 0) = x whatever the network."""
    skip, out, inp = edm_preconditioning(jnp.float32(0.0), 0.5)
    assert (float(skip), float(out), float(inp)) == pytest.approx((1.0, 0.0, 2.0))


def test_recipe_samples_in_network_units():
    """The toy's sampling.sigma_* are in EM units (x 2); the recipe's grid is the training
    range corruption.sigma_* in network units (to float rounding)."""
    config = get_config("tiny")
    grid = samplers.sigmas_from_config(config.sampling, scale=1.0 / config.em.data_scale)
    c = config.sampling
    network = samplers.sigma_grid(
        c.grid, c.num_steps, config.corruption.sigma_min, config.corruption.sigma_max
    )
    np.testing.assert_allclose(grid, network, rtol=1e-6)
