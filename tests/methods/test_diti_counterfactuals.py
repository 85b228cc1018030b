"""DiTi's counterfactual generation: DDIM round trip, step grid, feature mixing, slerp of
x_T (float64), and the reconstruction PSNR of guided vs prior-only round trips."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax import methods, recipe_inputs, training
from diffssl_jax.configs.ddpm.digits import get_config as get_ddpm_config
from diffssl_jax.configs.diti.digits import get_config as get_diti_config
from diffssl_jax.corruptions.schedules import LinearVP
from diffssl_jax.data import DigitsSource
from diffssl_jax.evaluation import counterfactuals
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


@pytest.fixture
def _x64():
    with jax.enable_x64(True):
        yield


def test_a_clipped_ddim_step_rederives_the_noise_and_stays_on_the_ddim_line(_x64):
    # The reference's DDIM (PDAE's diffusion/ddim.py): x0_hat clipped to [-1, 1], then
    # eps' = (x - sqrt(ab) x0_hat) / sqrt(1 - ab) and x' = sqrt(ab') x0_hat + sqrt(1 - ab') eps'.
    ab, ab_to = 0.3, 0.05
    x, eps = _gaussians(8, (2, 4, 4, 1)), _gaussians(9, (2, 4, 4, 1))
    x0_hat = np.clip((np.asarray(x) - np.sqrt(1 - ab) * np.asarray(eps)) / np.sqrt(ab), -1, 1)
    assert 0 < np.mean(np.abs(x0_hat) == 1) < 1  # some pixels clip, some do not
    eps_new = (np.asarray(x) - np.sqrt(ab) * x0_hat) / np.sqrt(1 - ab)
    got = diti_counterfactuals.ddim_update(x, eps, ab, ab_to, clip=True)
    np.testing.assert_allclose(got, np.sqrt(ab_to) * x0_hat + np.sqrt(1 - ab_to) * eps_new,
                               rtol=1e-12, atol=1e-12)  # fmt: skip
    # x stays on its DDIM line: a clipped step to the same level changes nothing.
    same = diti_counterfactuals.ddim_update(x, eps, ab, ab, clip=True)
    np.testing.assert_allclose(same, x, rtol=1e-12, atol=1e-12)
    # Where nothing clips, the clipped and unclipped steps agree; from ab = 1, x is x0_hat.
    small = 0.1 * x
    np.testing.assert_allclose(
        diti_counterfactuals.ddim_update(small, 0.0 * eps, ab, ab_to, clip=True),
        diti_counterfactuals.ddim_update(small, 0.0 * eps, ab, ab_to),
        rtol=1e-12,
    )
    x0 = jnp.clip(x, -1, 1)
    np.testing.assert_allclose(
        diti_counterfactuals.ddim_update(x0, eps, 1.0, ab_to, clip=True),
        np.sqrt(ab_to) * x0 + np.sqrt(1 - ab_to) * eps,
        rtol=1e-12,
    )
    # The inversion clips too: with an eps whose x0 estimate leaves [-1, 1], invert equals the
    # loop of clipped steps, and differs from the unclipped one.
    abs_, _ = diti.step_alpha_bars(LinearVP(), 1000, dtype=jnp.float64)
    steps = diti_counterfactuals.step_grid(1000, 6)
    eps_fn = lambda x, n, z: 3.0 * jnp.tanh(x)  # noqa: E731
    h = diti_counterfactuals.ddim_update(x0, eps_fn(x0, 0, None), 1.0, abs_[steps[0]], True)
    for n, n_next in zip(steps[:-1], steps[1:], strict=True):
        h = diti_counterfactuals.ddim_update(h, eps_fn(h, n, None), abs_[n], abs_[n_next], True)
    inverted = diti_counterfactuals.invert(eps_fn, abs_, x0, None, steps)
    np.testing.assert_allclose(inverted, h, rtol=1e-10, atol=1e-12)
    unclipped = diti_counterfactuals.invert(eps_fn, abs_, x0, None, steps, clip=False)
    assert not np.allclose(inverted, unclipped, atol=1e-3)


def _gaussians(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape))


def test_slerp_endpoints_and_the_norm_on_orthogonal_gaussians(_x64):
    a, b = _gaussians(2, (3, 4, 4, 2)), _gaussians(3, (3, 4, 4, 2))
    np.testing.assert_allclose(diti_counterfactuals.slerp(a, b, 0.0), a, rtol=1e-14)
    np.testing.assert_allclose(diti_counterfactuals.slerp(a, b, 1.0), b, rtol=1e-13, atol=1e-14)
    # Exactly orthogonal maps of equal norm r: every slerp has norm r, and at alpha = 1/2 it
    # is (a + b) / sqrt(2); the straight line would have norm r sqrt((1 - alpha)^2 + alpha^2).
    flat_a, flat_b = np.asarray(a).reshape(3, -1), np.asarray(b).reshape(3, -1)
    flat_b = (
        flat_b - np.sum(flat_a * flat_b, 1, keepdims=True) / np.sum(flat_a**2, 1)[:, None] * flat_a
    )
    flat_b *= np.linalg.norm(flat_a, axis=1, keepdims=True) / np.linalg.norm(
        flat_b, axis=1, keepdims=True
    )
    ortho = jnp.asarray(flat_b.reshape(a.shape))
    r = np.linalg.norm(flat_a, axis=1)
    for alpha in (0.1, 0.25, 0.5, 0.9):
        mixed = np.asarray(diti_counterfactuals.slerp(a, ortho, alpha)).reshape(3, -1)
        np.testing.assert_allclose(np.linalg.norm(mixed, axis=1), r, rtol=1e-13)
    half = np.asarray(diti_counterfactuals.slerp(a, ortho, 0.5)).reshape(3, -1)
    np.testing.assert_allclose(half, (flat_a + flat_b) / np.sqrt(2.0), rtol=1e-12, atol=1e-13)
    # Independent Gaussian maps in many dimensions are nearly orthogonal: the norm stays
    # sqrt(D) within 2%, where the straight line at 1/2 loses about 29%.
    big_a, big_b = _gaussians(4, (1, 64, 64, 1)), _gaussians(5, (1, 64, 64, 1))
    mid = diti_counterfactuals.slerp(big_a, big_b, 0.5)
    assert abs(float(jnp.linalg.norm(mid)) / 64.0 - 1.0) < 0.02
    assert float(jnp.linalg.norm(0.5 * (big_a + big_b))) / 64.0 < 0.73
    # A map paired with itself (sin(theta) = 0) comes back unchanged, not NaN.
    np.testing.assert_allclose(diti_counterfactuals.slerp(a, a, 0.3), a, rtol=1e-14)


def _toy_counterfactuals(slerp_xt):
    ab, _ = diti.step_alpha_bars(LinearVP(), 1000, dtype=jnp.float64)
    steps = diti_counterfactuals.step_grid(1000, 8)

    def encode(params, x):
        return x.reshape(len(x), -1)[:, :4] * params

    def eps_fn(params, x, n, z):
        return 0.5 * jnp.tanh(x) + 0.1 * jnp.mean(z, axis=1)[:, None, None, None]

    make = diti_counterfactuals.make_counterfactual_fn
    return make(encode, eps_fn, ab, steps, slerp_xt=slerp_xt), (encode, eps_fn, ab, steps)


def test_counterfactuals_start_from_the_slerped_inversions(_x64):
    x1 = jnp.asarray(np.random.default_rng(6).uniform(-0.9, 0.9, (2, 4, 4, 1)))
    x2 = jnp.asarray(np.random.default_rng(7).uniform(-0.9, 0.9, (2, 4, 4, 1)))
    mask, alphas, params = jnp.array([0.0, 1.0, 1.0, 0.0]), jnp.array([0.0, 0.4, 1.0]), 2.0
    published, (encode, eps_fn, ab, steps) = _toy_counterfactuals(True)
    kept, _ = _toy_counterfactuals(False)
    got, old = published(params, x1, x2, mask, alphas), kept(params, x1, x2, mask, alphas)
    eps = lambda x, n, z: eps_fn(params, x, n, z)  # noqa: E731
    z1, z2 = encode(params, x1), encode(params, x2)
    xt1 = diti_counterfactuals.invert(eps, ab, x1, z1, steps)
    xt2 = diti_counterfactuals.invert(eps, ab, x2, z2, steps)
    for i, alpha in enumerate(np.asarray(alphas)):
        z = diti_counterfactuals.mix_features(z1, z2, mask, alpha)
        xt = diti_counterfactuals.slerp(xt1, xt2, alpha)
        expected = diti_counterfactuals.generate(eps, ab, xt, z, steps)
        np.testing.assert_allclose(got[:, i], expected, rtol=1e-12, atol=1e-12)
        kept_expected = diti_counterfactuals.generate(eps, ab, xt1, z, steps)
        np.testing.assert_allclose(old[:, i], kept_expected, rtol=1e-12, atol=1e-12)
    # Weight 0 is today's path (image 1's own inversion); weight 1 is not.
    np.testing.assert_allclose(got[:, 0], old[:, 0], rtol=1e-12, atol=1e-12)
    assert not np.allclose(got[:, 2], old[:, 2], atol=1e-3)
    # Weight 1 with every dim swapped reconstructs image 2 exactly as its own round trip does.
    everything = published(params, x1, x2, jnp.ones(4), jnp.array([1.0]))[:, 0]
    own = diti_counterfactuals.make_reconstruction_fn(encode, eps_fn, ab, steps)(params, x2)
    np.testing.assert_allclose(everything, own, rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def tiny_diti(tmp_path_factory):
    prior = get_ddpm_config("tiny")
    prior.train.num_steps, prior.train.sample_every_steps = 2, 0
    workdir = str(tmp_path_factory.mktemp("prior"))
    training.train(prior, workdir, methods.make_recipe(prior))
    config = get_diti_config("tiny")
    config.diti.prior_workdir = workdir
    inputs = recipe_inputs.compute(config)
    params = jax.jit(methods.make_recipe(config, inputs).init)(jax.random.key(0))
    return prior, diti.make_model(config, inputs["prior"]), params


def test_reconstruction_psnr_of_the_guided_and_the_prior_only_round_trip(tiny_diti):
    prior_config, model, params = tiny_diti
    images = np.asarray(DigitsSource("test").images[:3])
    at_init = counterfactuals.reconstruction_psnrs(model, params, images, 4)
    assert at_init["prior"].shape == (3,) and np.all(np.isfinite(at_init["prior"]))
    # G = 0 at initialisation (zero output conv), so guidance changes nothing.
    np.testing.assert_array_equal(at_init["guided"], at_init["prior"])
    # The prior's PSNR is 10 log10(2^2 / MSE) of its own DDIM round trip.
    steps = diti_counterfactuals.step_grid(model.num_steps, 4)
    prior_eps = lambda p, x, n, z: diti.prior_outputs(  # noqa: E731
        model, x, jnp.full((x.shape[0],), n, jnp.int32)
    )[0]
    encode = lambda p, x: model.encoder.apply({"params": p["encoder"]}, x)  # noqa: E731
    back = diti_counterfactuals.make_reconstruction_fn(encode, prior_eps, model.alpha_bar, steps)
    mse = np.mean(
        (np.asarray(back(params, jnp.asarray(images)), np.float64) - images) ** 2, (1, 2, 3)
    )
    np.testing.assert_allclose(at_init["prior"], 10 * np.log10(4.0 / mse), rtol=1e-4)
    # Once G != 0 the guided round trip differs and the prior's does not move.
    moved = {
        "encoder": params["encoder"],
        "shift": jax.tree.map(lambda a: a + 0.01, params["shift"]),
    }
    after = counterfactuals.reconstruction_psnrs(model, moved, images, 4)
    np.testing.assert_array_equal(after["prior"], at_init["prior"])
    assert not np.allclose(after["guided"], after["prior"], atol=1e-3)
    with pytest.raises(ValueError, match="needs a DiTi workdir"):
        counterfactuals.reconstruction_psnr("unused", prior_config, images)
