"""DiTi's counterfactual generation: DDIM round trip, step grid, feature mixing, slerp."""

import jax.numpy as jnp
import numpy as np

from diffssl_jax.corruptions.schedules import LinearVP
from diffssl_jax.methods import diti, diti_counterfactuals


def test_inversion_then_generation_is_the_identity_for_an_input_free_eps():
    # With a constant eps every DDIM update is affine and generation undoes inversion (a real
    # eps changes between the two evaluations of a step, the known error of DDIM inversion).
    ab, _ = diti.step_alpha_bars(LinearVP(), 1000)
    steps = diti_counterfactuals.step_grid(1000, 20)
    assert steps[0] == 0 and steps[-1] == 999 and np.all(np.diff(steps) > 0)
    noise = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 4, 1)), jnp.float32)
    eps_fn = lambda x, n, z: noise  # noqa: E731
    x0 = jnp.asarray(np.random.default_rng(1).uniform(-0.9, 0.9, (2, 4, 4, 1)), jnp.float32)
    xt = diti_counterfactuals.invert(eps_fn, ab, x0, None, steps)
    back = diti_counterfactuals.generate(eps_fn, ab, xt, None, steps, clip=False)
    np.testing.assert_allclose(back, x0, atol=1e-3)


def test_ddim_update_to_the_same_level_is_the_identity_and_mixing_touches_only_the_mask():
    x, eps = jnp.ones((1, 2, 2, 1)), jnp.full((1, 2, 2, 1), 0.3)
    np.testing.assert_allclose(diti_counterfactuals.ddim_update(x, eps, 0.5, 0.5), x, rtol=1e-6)
    z1, z2 = jnp.zeros((1, 4)), jnp.ones((1, 4))
    mask = jnp.array([0.0, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(
        diti_counterfactuals.mix_features(z1, z2, mask, 0.5), [[0, 0.5, 0.5, 0]]
    )
    a = jnp.asarray(np.random.default_rng(2).normal(size=(2, 8)))
    b = jnp.asarray(np.random.default_rng(3).normal(size=(2, 8)))
    np.testing.assert_allclose(diti_counterfactuals.slerp(a, b, 0.0), a, atol=1e-5)
    np.testing.assert_allclose(diti_counterfactuals.slerp(a, b, 1.0), b, atol=1e-5)
