"""Tests of the guided-diffusion U-Net: shapes, features, the A.4 config, conditioning, errors."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax.models import UNet, unet_decoder_channels, unet_encoder_channels
from diffssl_jax.models.layers import AttentionBlock, ResBlock, timestep_embedding

TINY = dict(
    model_channels=16,
    channel_mult=(1, 2),
    num_res_blocks=1,
    attention_resolutions=(2,),
    num_head_channels=8,
    num_groups=8,
)
MDM_256 = dict(
    model_channels=192,
    channel_mult=(1, 1, 2, 2, 4, 4),
    num_res_blocks=2,
    attention_resolutions=(8, 16, 32),
    num_head_channels=64,
    resblock_updown=True,
)


def _x(batch=2, size=16, channels=1):
    return jax.random.normal(jax.random.key(1), (batch, size, size, channels))


def _t(batch=2):
    return jnp.linspace(0.1, 0.9, batch)


def _num_params(tree):
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(tree))


def _perturb(params, scale=0.1):
    """Random normal parameters everywhere, so zero-initialised layers no longer hide inputs."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(7), len(leaves))
    new = [scale * jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, new)


@pytest.fixture(scope="module")
def tiny():
    model = UNet(**TINY)
    (out, features), variables = jax.jit(model.init_with_output)(jax.random.key(0), _x(), _t())
    return model, variables["params"], out, features


def test_output_shape_dtype_and_zero_at_init(tiny):
    _, params, out, _ = tiny
    chex.assert_shape(out, (2, 16, 16, 1))
    assert out.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(out), 0.0)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(params))


def test_out_channels_overrides_input_channels():
    model = UNet(**TINY, out_channels=3)
    out, _ = jax.eval_shape(model.init_with_output, jax.random.key(0), _x(), _t())[0]
    assert out.shape == (2, 16, 16, 3)


def test_feature_names_and_shapes_match_helpers(tiny):
    _, _, _, features = tiny
    dec = unet_decoder_channels(16, (1, 2), 1)
    enc = unet_encoder_channels(16, (1, 2), 1)
    assert dec == [(32, 2), (32, 1), (16, 1), (16, 1)]
    assert enc == [(16, 1), (16, 1), (16, 2), (32, 2)]
    expected = {"emb", "mid"} | {f"dec_{i}" for i in range(4)} | {f"enc_{i}" for i in range(4)}
    assert set(features) == expected
    chex.assert_shape(features["emb"], (2, 64))
    chex.assert_shape(features["mid"], (2, 8, 8, 32))
    for prefix, plan in (("dec", dec), ("enc", enc)):
        for i, (channels, ds) in enumerate(plan):
            chex.assert_shape(features[f"{prefix}_{i}"], (2, 16 // ds, 16 // ds, channels))


def test_mdm_256_config_decoder_blocks():
    """docs/methods.md A.4: 18 decoder blocks; {8..12} give 1728 channels and {5..12} 3264."""
    model = UNet(**MDM_256)
    x = jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32)
    t = jax.ShapeDtypeStruct((1,), jnp.float32)
    (out, features), variables = jax.eval_shape(model.init_with_output, jax.random.key(0), x, t)
    assert out.shape == (1, 256, 256, 3)
    table = [(768, 8)] * 2 + [(768, 16)] * 3 + [(768, 32), (384, 32), (384, 32)]
    table += [(384, 64)] * 3 + [(384, 128), (192, 128), (192, 128)] + [(192, 256)] * 4
    dec = [(features[f"dec_{i}"].shape[-1], features[f"dec_{i}"].shape[1]) for i in range(18)]
    assert "dec_18" not in features
    assert dec == table
    plan = unet_decoder_channels(192, MDM_256["channel_mult"], 2)
    assert [(channels, 256 // ds) for channels, ds in plan] == table
    assert sum(dec[i][0] for i in range(8, 13)) == 1728
    assert sum(dec[i][0] for i in range(5, 13)) == 3264
    params = variables["params"]
    assert "out_0_attn" in params and "out_8_attn" in params and "out_9_attn" not in params
    assert "out_2_up" in params and "in_3_down" in params  # resblock_updown: ResBlocks
    assert "skip" in params["out_0_res"] and "emb_dense" in params["out_2_up"]
    assert params["mid_attn"]["qkv"]["kernel"].shape == (768, 3 * 768)


def test_guided_diffusion_256_uncond_parameter_count():
    """The released 256x256_diffusion_uncond.pt holds 552,814,086 parameters (public count).

    Same design as A.4 with 256 channels and learn_sigma (6 output channels); the port must
    match it exactly, which pins every block's structure at full scale (shapes only).
    """
    model = UNet(**{**MDM_256, "model_channels": 256, "out_channels": 6})
    x = jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32)
    t = jax.ShapeDtypeStruct((1,), jnp.float32)
    assert _num_params(jax.eval_shape(model.init, jax.random.key(0), x, t)) == 552_814_086


@pytest.fixture(scope="module")
def perturbed(tiny):
    """`run(seed, train)`: the tiny net with dropout 0.5 and random params on one image
    repeated twice, at t = 0.1 and t = 0.9 (one compile per `train` value)."""
    _, params, _, _ = tiny
    model = UNet(**TINY, dropout=0.5)
    variables = {"params": _perturb(params)}
    x = jnp.repeat(_x(batch=1), 2, axis=0)

    @functools.partial(jax.jit, static_argnames="train")
    def run(seed, train):
        rngs = {"dropout": jax.random.key(seed)}
        return model.apply(variables, x, jnp.array([0.1, 0.9]), train=train, rngs=rngs)[0]

    return run


def test_time_conditioning_changes_output(perturbed):
    out = perturbed(0, False)
    assert np.all(np.isfinite(out))
    assert float(jnp.max(jnp.abs(out[0] - out[1]))) > 1e-3


def test_dropout_only_in_train_mode(perturbed):
    run = perturbed
    np.testing.assert_array_equal(run(0, False), run(1, False))
    assert float(jnp.max(jnp.abs(run(0, True) - run(0, False)))) > 1e-3
    np.testing.assert_array_equal(run(0, True), run(0, True))
    assert float(jnp.max(jnp.abs(run(0, True) - run(1, True)))) > 1e-3


def test_cond_is_added_to_the_embedding(tiny):
    _, params, _, _ = tiny
    model = UNet(**TINY)
    cond = jax.random.normal(jax.random.key(3), (2, 5))
    variables = jax.jit(model.init)(jax.random.key(0), _x(), _t(), cond=cond)
    assert variables["params"]["cond_embed"]["kernel"].shape == (5, 64)
    variables = {"params": _perturb(variables["params"])}
    apply = jax.jit(model.apply)
    out_a, feats_a = apply(variables, _x(), _t(), cond=cond)
    out_b, feats_b = apply(variables, _x(), _t(), cond=-cond)
    assert float(jnp.max(jnp.abs(out_a - out_b))) > 1e-3
    dense = variables["params"]["cond_embed"]
    np.testing.assert_allclose(
        feats_a["emb"] - feats_b["emb"], 2 * cond @ dense["kernel"], rtol=1e-4, atol=1e-5
    )


def test_bfloat16_compute_keeps_float32_params_and_output():
    model = UNet(**TINY, dtype="bfloat16")
    (out, features), variables = jax.eval_shape(
        model.init_with_output, jax.random.key(0), _x(), _t()
    )
    assert out.dtype == jnp.float32
    assert features["dec_0"].dtype == jnp.bfloat16
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(variables)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize(
    "config, x_shape, t_shape, match",
    [
        ({}, (16, 16, 1), (2,), r"\[B, H, W, C\]"),
        ({}, (2, 15, 16, 1), (2,), r"multiples of 2 .* 15x16"),
        ({"channel_mult": (1, 2, 2)}, (2, 18, 18, 1), (2,), r"multiples of 4.*4, 8, 12"),
        ({}, (2, 16, 16, 1), (), r"t must have shape \[B\] = \(2,\)"),
        ({}, (2, 16, 16, 1), (2, 1), r"t must have shape"),
        ({"attention_resolutions": (8,)}, (2, 16, 16, 1), (2,), "not a downsample factor"),
        ({"num_groups": 6}, (2, 16, 16, 1), (2,), "not divisible by 6"),
        ({"num_head_channels": 12}, (2, 16, 16, 1), (2,), "num_head_channels=12"),
        ({"dropout": 1.0}, (2, 16, 16, 1), (2,), r"dropout must be in \[0, 1\)"),
        ({"num_res_blocks": 0}, (2, 16, 16, 1), (2,), "num_res_blocks must be >= 1"),
        ({"out_channels": 0}, (2, 16, 16, 1), (2,), "out_channels must be >= 1"),
    ],
)
def test_bad_input_raises(config, x_shape, t_shape, match):
    model = UNet(**{**TINY, **config})
    x, t = jnp.zeros(x_shape), jnp.zeros(t_shape)
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(model.init, jax.random.key(0), x, t)


def test_bad_cond_raises():
    with pytest.raises(ValueError, match=r"cond must have shape \[B, D\]"):
        jax.eval_shape(UNet(**TINY).init, jax.random.key(0), _x(), _t(), cond=jnp.zeros((2,)))


def _conv3(cin, cout):
    return 9 * cin * cout + cout


def _dense(cin, cout):
    return cin * cout + cout


def _res(cin, cout, emb=64, scale_shift=True):
    skip = _dense(cin, cout) if cin != cout else 0
    film = _dense(emb, (2 if scale_shift else 1) * cout)
    return 2 * cin + _conv3(cin, cout) + film + 2 * cout + _conv3(cout, cout) + skip


def _attn(c):
    return 2 * c + _dense(c, 3 * c) + _dense(c, c)


@pytest.mark.parametrize("scale_shift, expected", [(True, 18688), (False, 16608)])
def test_resblock_parameter_count(scale_shift, expected):
    block = ResBlock(32, num_groups=8, use_scale_shift_norm=scale_shift)
    variables = jax.eval_shape(block.init, jax.random.key(0), _x(channels=16), jnp.zeros((2, 64)))
    assert _num_params(variables) == expected == _res(16, 32, scale_shift=scale_shift)
    names = {"in_norm", "in_conv", "emb_dense", "out_norm", "out_conv", "skip"}
    assert set(variables["params"]) == names


def test_tiny_unet_parameter_count(tiny):
    """Whole-network count, block by block in guided-diffusion order (pins the structure)."""
    _, params, _, _ = tiny
    expected = (
        _dense(16, 64) + _dense(64, 64)  # time MLP
        + _conv3(1, 16) + _res(16, 16) + _conv3(16, 16) + _res(16, 32) + _attn(32)  # encoder
        + _res(32, 32) + _attn(32) + _res(32, 32)  # middle
        + _res(64, 32) + _attn(32) + _res(48, 32) + _attn(32) + _conv3(32, 32)  # level 1
        + _res(48, 16) + _res(32, 16)  # level 0
        + 2 * 16 + _conv3(16, 1)  # out
    )  # fmt: skip
    assert _num_params(params) == expected == 190369


def test_attention_matches_guided_diffusion_legacy_layout():
    """Per head the qkv channels are [q | k | v] and q, k are each scaled by d**-0.25."""
    block = AttentionBlock(num_heads=2, num_groups=1)
    x = jax.random.normal(jax.random.key(4), (1, 2, 3, 8))
    params = _perturb(block.init(jax.random.key(0), x)["params"], scale=0.5)
    got = block.apply({"params": params}, x)
    h = np.asarray(x, np.float64).reshape(6, 8)
    h = (h - h.mean()) / np.sqrt(h.var() + 1e-5) * params["norm"]["scale"] + params["norm"]["bias"]
    qkv = h @ params["qkv"]["kernel"] + params["qkv"]["bias"]  # [T, 3C]
    heads = []
    for head in qkv.reshape(6, 2, 12).transpose(1, 0, 2):  # [T, 3d] per head
        q, k, v = head[:, :4], head[:, 4:8], head[:, 8:]
        w = np.exp(q @ k.T / math.sqrt(4))
        heads.append((w / w.sum(-1, keepdims=True)) @ v)
    a = np.concatenate(heads, -1) @ params["proj_out"]["kernel"] + params["proj_out"]["bias"]
    np.testing.assert_allclose(got, x + a.reshape(1, 2, 3, 8), rtol=1e-4, atol=1e-5)


def test_timestep_embedding_formula():
    t = jnp.array([0.0, 3.0])
    emb = timestep_embedding(t, 5)
    freqs = np.exp(-np.log(10000.0) * np.arange(2) / 2)
    expected = np.stack([np.r_[np.cos(s * freqs), np.sin(s * freqs), 0.0] for s in (0.0, 3.0)])
    np.testing.assert_allclose(emb, expected, rtol=1e-6, atol=1e-6)
