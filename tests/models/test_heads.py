"""Tests for the pixel-classifier MLP and the linear-probe head."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax.models.heads import LinearHead, PixelMLP, PixelMLPEnsemble, pixel_mlp_hidden


def test_pixel_mlp_hidden_follows_the_30_class_rule():
    assert pixel_mlp_hidden(2) == (128, 32)
    assert pixel_mlp_hidden(29) == (128, 32)
    assert pixel_mlp_hidden(30) == (256, 128)
    with pytest.raises(ValueError, match="num_classes"):
        pixel_mlp_hidden(1)


def test_pixel_mlp_layers_and_init():
    model = PixelMLP(num_classes=5, hidden=(128, 32))
    x = jax.random.normal(jax.random.key(0), (16, 256))
    variables = model.init(jax.random.key(1), x, train=False)
    params = variables["params"]
    shapes = {k: v["kernel"].shape for k, v in params.items() if k.startswith("Dense")}
    assert shapes == {"Dense_0": (256, 128), "Dense_1": (128, 32), "Dense_2": (32, 5)}
    for name in ("Dense_0", "Dense_1", "Dense_2"):
        np.testing.assert_array_equal(params[name]["bias"], 0.0)
    assert abs(float(jnp.std(params["Dense_0"]["kernel"])) - 0.02) < 1e-3
    assert abs(float(jnp.mean(params["Dense_0"]["kernel"]))) < 1e-3
    assert set(variables["batch_stats"]) == {"BatchNorm_0", "BatchNorm_1"}
    chex.assert_shape(model.apply(variables, x, train=False), (16, 5))


def test_pixel_mlp_batchnorm_train_mode_updates_stats_with_torch_momentum():
    model = PixelMLP(num_classes=3, hidden=(8, 4))
    x = jax.random.normal(jax.random.key(0), (32, 6)) + 3.0
    variables = model.init(jax.random.key(1), x, train=False)
    _, new = model.apply(variables, x, train=True, mutable=["batch_stats"])
    h = jax.nn.relu(x @ variables["params"]["Dense_0"]["kernel"])
    np.testing.assert_allclose(
        new["batch_stats"]["BatchNorm_0"]["mean"], 0.1 * h.mean(0), rtol=1e-5, atol=1e-7
    )


def test_pixel_mlp_mask_leaves_padding_out_of_batch_statistics():
    model = PixelMLP(num_classes=3, hidden=(8, 4))
    x = jax.random.normal(jax.random.key(0), (10, 6))
    variables = model.init(jax.random.key(1), x, train=False)
    padded = jnp.concatenate([x, 100.0 * jnp.ones((6, 6))])
    mask = jnp.arange(16) < 10
    out_masked, stats_masked = model.apply(
        variables, padded, train=True, mask=mask, mutable=["batch_stats"]
    )
    out, stats = model.apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(out_masked[:10], out, rtol=1e-4, atol=1e-5)
    chex.assert_trees_all_close(stats_masked, stats, rtol=1e-5, atol=1e-6)


def test_pixel_mlp_rejects_image_shaped_input():
    model = PixelMLP(num_classes=3)
    with pytest.raises(ValueError, match=r"\[P, D\]"):
        model.init(jax.random.key(0), jnp.zeros((2, 4, 4, 8)), train=False)


def test_linear_head_is_parameter_free_batchnorm_then_dense():
    head = LinearHead(num_classes=4)
    x = 5.0 + 2.0 * jax.random.normal(jax.random.key(0), (64, 12))
    variables = head.init(jax.random.key(1), x, train=False)
    assert set(variables["params"]) == {"Dense_0"}
    assert float(jnp.std(variables["params"]["Dense_0"]["kernel"])) < 0.02
    logits, _ = head.apply(variables, x, train=True, mutable=["batch_stats"])
    z = (x - x.mean(0)) / jnp.sqrt(x.var(0) + 1e-6)
    dense = variables["params"]["Dense_0"]
    np.testing.assert_allclose(logits, z @ dense["kernel"] + dense["bias"], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="pooled"):
        head.apply(variables, x.reshape(4, 4, 4, 12), train=False)


def test_pixel_mlp_ensemble_members_are_independent_pixel_mlps():
    ensemble = PixelMLPEnsemble(num_models=3, num_classes=4, hidden=(8, 4))
    x = jax.random.normal(jax.random.key(0), (3, 10, 6))
    variables = ensemble.init(jax.random.key(1), x, train=False)
    kernels = variables["params"]["members"]["Dense_0"]["kernel"]
    chex.assert_shape(kernels, (3, 6, 8))
    assert not np.allclose(kernels[0], kernels[1])
    logits, _ = ensemble.apply(variables, x, train=True, mutable=["batch_stats"])
    member = jax.tree.map(lambda a: a[1], variables)
    single = {
        "params": member["params"]["members"],
        "batch_stats": member["batch_stats"]["members"],
    }
    expected, _ = PixelMLP(4, (8, 4)).apply(single, x[1], train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(logits[1], expected, rtol=1e-5, atol=1e-6)
    shared = ensemble.apply(variables, x[0], train=False)
    chex.assert_shape(shared, (3, 10, 4))
    with pytest.raises(ValueError, match=r"\[3, P, D\]"):
        ensemble.apply(variables, x[:2], train=False)
