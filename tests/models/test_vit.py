"""Tests for the ViT / DiT used by l-DAE and MAE."""

from collections.abc import Callable
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax.models.vit import ViT, sincos_2d_position_embedding

SMALL = dict(hidden_size=16, depth=2, num_heads=2, patch_size=4, mlp_ratio=2.0, frequency_dim=8)


@jax.jit
def _perturb(variables, seed=1, scale=0.3):
    leaves, treedef = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    noisy = [
        leaf + scale * jax.random.normal(k, leaf.shape)
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(treedef, noisy)


class Built(NamedTuple):
    model: ViT
    init: dict  # variables at initialisation
    perturbed: dict  # every parameter moved by N(0, 0.3^2)
    apply: Callable


def _build(model, x, t):
    variables = jax.jit(model.init)(jax.random.key(0), x, t)
    apply = jax.jit(model.apply, static_argnames="train")
    return Built(model, variables, _perturb(variables), apply)


@pytest.fixture(scope="module")
def inputs():
    x = jax.random.uniform(jax.random.key(2), (2, 8, 12, 3), minval=-1, maxval=1)
    return x, jnp.array([0.1, 0.9])


@pytest.fixture(scope="module")
def dit(inputs):
    """Time-conditioned (l-DAE), default out_channels and encoder_depth."""
    return _build(ViT(**SMALL), *inputs)


@pytest.fixture(scope="module")
def mae(inputs):
    """No time conditioning (MAE), 5 output channels, encoder = both blocks, dropout."""
    model = ViT(**SMALL, time_conditioning=False, out_channels=5, encoder_depth=2, dropout=0.5)
    return _build(model, *inputs)


def _layer_norm(h):
    mean = h.mean(-1, keepdims=True)
    return (h - mean) / jnp.sqrt(((h - mean) ** 2).mean(-1, keepdims=True) + 1e-6)


@pytest.mark.parametrize("name,channels", [("dit", 3), ("mae", 5)])
def test_shapes_feature_names_and_zero_output_at_init(inputs, request, name, channels):
    built = request.getfixturevalue(name)
    out, features = built.apply(built.init, *inputs)
    chex.assert_shape(out, (2, 8, 12, channels))
    assert out.dtype == jnp.float32
    assert set(features) == {"tokens", "block_0", "block_1", "encoder"}
    for value in features.values():
        chex.assert_shape(value, (2, 2, 3, 16))
        assert value.dtype == jnp.float32
    np.testing.assert_array_equal(out, 0.0)  # zero-initialised head


def test_adaln_zero_blocks_are_identity_at_init(inputs, dit):
    _, features = dit.apply(dit.init, *inputs)
    for i in range(2):
        np.testing.assert_array_equal(features[f"block_{i}"], features["tokens"])


def test_time_conditioning_changes_outputs_only_when_enabled(inputs, dit, mae):
    x, t = inputs
    t_other = jnp.array([0.5, 0.2])
    out_a, _ = dit.apply(dit.perturbed, x, t)
    out_b, _ = dit.apply(dit.perturbed, x, t_other)
    assert float(jnp.abs(out_a - out_b).max()) > 1e-3
    assert "time_embed_0" not in mae.init["params"]
    out_a, _ = mae.apply(mae.perturbed, x, t)
    out_b, _ = mae.apply(mae.perturbed, x, t_other)
    np.testing.assert_array_equal(out_a, out_b)
    assert float(jnp.abs(out_a).max()) > 1e-3


def test_encoder_feature(inputs, dit, mae):
    # Default encoder_depth = depth // 2 = 1: a parameter-free LayerNorm of block_0.
    _, features = dit.apply(dit.perturbed, *inputs)
    np.testing.assert_allclose(features["encoder"], _layer_norm(features["block_0"]), atol=1e-5)
    _, features = mae.apply(mae.perturbed, *inputs)
    np.testing.assert_allclose(features["encoder"], _layer_norm(features["block_1"]), atol=1e-5)


def test_head_unpatchify_order(inputs, mae):
    # Token (i, j) maps to output pixels [iP:(i+1)P, jP:(j+1)P, :] in (p, q, c) order.
    out, features = mae.apply(mae.perturbed, *inputs)
    params = mae.perturbed["params"]
    final = _layer_norm(features["block_1"][0, 1, 2])
    final = final * params["final_norm"]["scale"] + params["final_norm"]["bias"]
    head = final @ params["head"]["kernel"] + params["head"]["bias"]
    np.testing.assert_allclose(out[0, 4:8, 8:12, :].reshape(-1), head, atol=1e-4)


def test_dropout_is_active_only_in_training(inputs, mae):
    eval_a, _ = mae.apply(mae.perturbed, *inputs)
    eval_b, _ = mae.apply(mae.perturbed, *inputs, train=False)
    np.testing.assert_array_equal(eval_a, eval_b)
    train_a, _ = mae.apply(mae.perturbed, *inputs, train=True, rngs={"dropout": jax.random.key(0)})
    train_b, _ = mae.apply(mae.perturbed, *inputs, train=True, rngs={"dropout": jax.random.key(1)})
    assert float(jnp.abs(train_a - train_b).max()) > 1e-4
    assert float(jnp.abs(train_a - eval_a).max()) > 1e-4


def test_bfloat16_compute_keeps_float32_outputs(inputs):
    x, t = inputs
    built = _build(ViT(**SMALL, dtype="bfloat16"), x, t)
    out, features = built.apply(built.perturbed, x, t)
    assert out.dtype == jnp.float32 and features["block_1"].dtype == jnp.float32
    assert np.all(np.isfinite(out))


def test_sincos_position_embedding():
    emb = sincos_2d_position_embedding(2, 3, 8)
    assert emb.shape == (2, 3, 8)
    np.testing.assert_allclose(emb[0, 0], [0, 0, 1, 1, 0, 0, 1, 1], atol=1e-7)
    # Column half depends on the column only, row half on the row only.
    np.testing.assert_array_equal(emb[0, :, :4], emb[1, :, :4])
    np.testing.assert_array_equal(emb[:, 0, 4:], emb[:, 2, 4:])
    np.testing.assert_allclose(emb[1, 2, :2], np.sin([2.0, 2.0 / 100]), rtol=1e-6)
    flat = emb.reshape(6, 8)
    assert len({tuple(np.round(row, 6)) for row in flat}) == 6


def test_bad_inputs_raise(inputs):
    x, t = inputs
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        ViT(**SMALL).init(jax.random.key(0), x[:, :6], t)
    with pytest.raises(ValueError, match=r"t must have shape \[B\]"):
        ViT(**SMALL).init(jax.random.key(0), x, t[:1])
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        ViT(**SMALL).init(jax.random.key(0), x[0], t)
    with pytest.raises(ValueError, match="multiple of 4"):
        ViT(**{**SMALL, "hidden_size": 18}).init(jax.random.key(0), x, t)
    with pytest.raises(ValueError, match="encoder_depth"):
        ViT(**SMALL, encoder_depth=4).init(jax.random.key(0), x, t)
    with pytest.raises(ValueError, match="width divisible by 4"):
        sincos_2d_position_embedding(2, 2, 6)
