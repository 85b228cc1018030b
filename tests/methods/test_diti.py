"""DiTi: partition tables, c_t and the weighting in float64, G = 0, the frozen prior."""

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax import load_params, methods, recipe_inputs, training
from diffssl_jax.configs.ddpm.digits import get_config as get_ddpm_config
from diffssl_jax.configs.diti.digits import get_config
from diffssl_jax.corruptions.schedules import LinearVP
from diffssl_jax.methods import diti, diti_partition
from diffssl_jax.models.encoder import Encoder

REFERENCE_END_DIMS = (
    [2, 4, 6, 10, 18, 26, 35]
    + [60 + 25 * i for i in range(12)]  # 60 ... 335
    + [362]
    + [370 + 8 * i for i in range(11)]  # 370 ... 450
    + [462]
    + list(range(463, 494))  # 463 ... 493
    + [512]
)


def test_nonuniform_end_dims_equal_the_reference_table():
    end = diti_partition.nonuniform_end_dims(
        64, 512, 1000, (50, 100, 300, 500, 1000), (10, 25, 327, 100, 50)
    )
    assert end.tolist() == REFERENCE_END_DIMS
    assert len(REFERENCE_END_DIMS) == 64


def test_partition_tables_and_indices():
    p = diti_partition.make_partition("uniform", 64, 512)
    assert p.end_dims.tolist() == list(range(8, 513, 8))
    np.testing.assert_array_equal(p.masks, p.earlier_masks + p.own_masks)
    assert p.own_masks.sum(1).tolist() == [8] * 64 and p.masks[-1].sum() == 512
    steps = np.arange(1000)
    idx = diti_partition.step_subset(steps, 64, 1000)
    np.testing.assert_array_equal(idx, diti_partition.subset_index(steps / 1000, 64))
    assert idx[[0, 15, 16, 46, 47, 999]].tolist() == [0, 0, 1, 2, 3, 63]
    np.testing.assert_array_equal(diti_partition.first_steps(64, 1000)[[3, 4, 7]], [47, 63, 110])
    assert diti_partition.subset_dims(p, 2, 3).tolist() == list(range(16, 32))
    with pytest.raises(ValueError, match="holds no subset"):
        diti_partition.nonuniform_end_dims(4, 9, 1000, (10, 20, 1000), (3, 3, 3))


def test_shift_coefficient_and_weighting_match_their_formulas_in_float64():
    with jax.enable_x64(True):
        ab, ab_prev = diti.step_alpha_bars(LinearVP(), 1000, dtype=jnp.float64)
        assert ab.dtype == jnp.float64 and float(ab_prev[0]) == 1.0
        c = np.asarray(diti.shift_coefficient(ab, ab_prev))
        w = np.asarray(diti.loss_weight(ab, 0.1))
    ab, ab_prev = np.asarray(ab), np.asarray(ab_prev)
    # PDAE's form: -(sqrt(alpha) sqrt(1 - ab) / beta) * beta_tilde, beta_tilde the posterior var.
    alpha = ab / ab_prev
    beta = 1.0 - alpha
    beta_tilde = (1.0 - ab_prev) / (1.0 - ab) * beta
    np.testing.assert_allclose(c, -np.sqrt(alpha) * np.sqrt(1.0 - ab) / beta * beta_tilde, 1e-9)
    assert c[0] == 0.0 and np.all(c[1:] < 0)
    snr = ab / (1.0 - ab)
    expected = (snr / (1 + snr)) ** 0.1 * (1 / (1 + snr)) ** 0.9
    np.testing.assert_allclose(w, expected, rtol=1e-12)


def test_reference_encoder_has_the_stated_parameter_count():
    params = jax.eval_shape(Encoder().init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    assert sum(p.size for p in jax.tree.leaves(params)) == 1_487_104


def _digest(tree) -> str:
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    h = hashlib.sha256()
    for path, leaf in leaves:
        h.update(jax.tree_util.keystr(path).encode() + np.asarray(leaf).tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def prior_workdir(tmp_path_factory):
    config = get_ddpm_config("tiny")
    config.train.num_steps = 2
    config.train.sample_every_steps = 0
    workdir = str(tmp_path_factory.mktemp("prior"))
    training.train(config, workdir, methods.make_recipe(config))
    return workdir


def _diti_config(prior_workdir, *variants):
    config = get_config(",".join(["tiny", *variants]))
    config.diti.prior_workdir = prior_workdir
    return config


def test_prior_is_bit_identical_after_training_and_not_in_the_state(prior_workdir, tmp_path):
    before = _digest(load_params(prior_workdir, which="ema"))
    config = _diti_config(prior_workdir)
    config.train.num_steps = 3
    recipe = methods.make_recipe(config, recipe_inputs.prepare(config, str(tmp_path)))
    state = training.train(config, str(tmp_path), recipe)
    assert int(state.step) == 3 and set(state.params) == {"encoder", "shift"}
    assert _digest(load_params(prior_workdir, which="ema")) == before
    model = diti.make_model(config, recipe_inputs.load(str(tmp_path))["prior"])
    assert _digest(model.prior_params) == before
    # The trainable parts did move.
    assert _digest(load_params(str(tmp_path), which="params")) != _digest(
        jax.jit(recipe.init)(jax.random.split(jax.random.key(config.seed))[0])
    )


def test_g_zero_gives_the_prior_and_every_mode_trains_the_encoder(prior_workdir):
    config = _diti_config(prior_workdir)
    inputs = recipe_inputs.compute(config)
    model = diti.make_model(config, inputs["prior"])
    params = jax.jit(methods.make_recipe(config, inputs).init)(jax.random.key(0))
    x0 = jax.random.uniform(jax.random.key(1), (4, 16, 16, 1), minval=-1, maxval=1)
    step = jnp.array([0, 10, 500, 999])
    eps = jax.random.normal(jax.random.key(2), x0.shape)
    # At initialisation G = 0 (zero output conv): the DiTi prediction is the prior's.
    ab = model.alpha_bar[step][:, None, None, None]
    xt = jnp.sqrt(ab) * x0 + jnp.sqrt(1 - ab) * eps
    z = model.encoder.apply({"params": params["encoder"]}, x0)
    prior_eps = diti.prior_outputs(model, xt, step)[0]
    np.testing.assert_array_equal(diti.guided_eps(model, params, xt, step, z), prior_eps)

    def loss(p, mode):
        return diti.diti_loss(model, p, x0, step, eps, mode=mode, gamma=0.1)

    for mode, copies in (("base", 1), ("stop_grad", 1), ("dual", 2)):
        value, prior_value = loss(params, mode)
        assert float(value) == pytest.approx(copies * float(prior_value))
    # Once G != 0 the encoder gets gradients (dual covers both masks).
    moved = {
        "encoder": params["encoder"],
        "shift": jax.tree.map(lambda a: a + 0.01, params["shift"]),
    }
    grads = jax.jit(jax.grad(lambda p: loss(p, "dual")[0]))(moved)
    assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads["encoder"])) > 0


def test_features_are_z(prior_workdir):
    config = _diti_config(prior_workdir)
    recipe = methods.make_recipe(config, recipe_inputs.compute(config))
    params = jax.jit(recipe.init)(jax.random.key(0))
    images = jnp.zeros((2, 16, 16, 1))
    feats = recipe.features(params, images, jax.random.key(0), t=0.1)
    assert feats["z"].shape == (2, 1, 1, config.model.latent_dim)
    with pytest.raises(ValueError, match="DiTi has"):
        recipe.features(params, images, None, blocks=("dec_0",))
