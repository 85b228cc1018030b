"""Tests for MDM / MAE patch masking."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax.corruptions import masking


def _masked_counts(mask, patch_size):
    """Number of masked patches of each mask ``[N, H, W, 1]``, checking patch alignment."""
    n, h, w, _ = mask.shape
    grid = mask[..., 0].reshape(n, h // patch_size, patch_size, w // patch_size, patch_size)
    first = grid[:, :, :1, :, :1]
    np.testing.assert_array_equal(grid, np.broadcast_to(first, grid.shape))  # patch-aligned
    assert set(np.unique(mask)) <= {0.0, 1.0}
    return (first[:, :, 0, :, 0] == 0).reshape(n, -1).sum(axis=1)


def test_discrete_step_recovers_integer_steps_in_float32():
    steps = np.arange(1000)
    t = jnp.asarray(steps, jnp.float32) / 1000
    np.testing.assert_array_equal(masking.discrete_step(t, num_steps=1000), steps)
    paper = masking.discrete_step(t, num_steps=1000, convention="paper")
    np.testing.assert_array_equal(paper, steps + 1)
    assert int(masking.discrete_step(jnp.float32(1.0), num_steps=1000)) == 999


@pytest.mark.parametrize("num_patches,num_steps", [(16, 16), (1024, 1000), (10, 7)])
def test_num_kept_matches_reference_formula(num_patches, num_steps):
    steps = np.arange(num_steps)
    t = jnp.asarray(steps, jnp.float32) / num_steps
    keep = masking.num_kept_patches(t, num_patches, num_steps=num_steps)
    # The official code's int(L * (1 - t / T)), evaluated exactly with integers.
    np.testing.assert_array_equal(keep, (num_patches * (num_steps - steps)) // num_steps)
    reference = [int(num_patches * (1 - s / num_steps)) for s in steps]  # Python float64
    np.testing.assert_array_equal(keep, reference)
    paper = masking.num_kept_patches(t, num_patches, num_steps=num_steps, convention="paper")
    np.testing.assert_array_equal(
        paper, num_patches - (num_patches * (steps + 1)) // (num_steps + 1)
    )


def test_masked_fraction_is_exact_for_every_step_and_key():
    num_steps, patch_size = 16, 2
    x0 = jnp.ones((8, 8, 3))  # L = 16 patches
    steps = np.repeat(np.arange(num_steps), 4)
    t = jnp.asarray(steps, jnp.float32) / num_steps
    rngs = jax.random.split(jax.random.key(0), len(steps))
    corrupt = jax.jit(
        jax.vmap(lambda r, s: masking.mask_corrupt(r, x0, s, patch_size=2, num_steps=num_steps))
    )
    xt, mask = corrupt(rngs, t)
    counts = _masked_counts(np.asarray(mask), patch_size)
    ratio = steps / num_steps
    expected = 16 - np.floor(16 * (1 - ratio)).astype(int)
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_array_equal(xt, np.broadcast_to(mask, xt.shape))  # fill 0 where masked


def test_t_zero_masks_nothing_and_fill_value():
    x0 = jax.random.uniform(jax.random.key(1), (16, 16, 3), minval=-1, maxval=1)
    xt, mask = masking.mask_corrupt(jax.random.key(2), x0, jnp.float32(0.0), patch_size=4)
    np.testing.assert_array_equal(mask, 1.0)
    np.testing.assert_array_equal(xt, x0)
    t = jnp.float32(500 / 1000)
    xt, mask = masking.mask_corrupt(jax.random.key(2), x0, t, patch_size=4, fill=-0.5)
    assert float(mask.mean()) == 0.5
    np.testing.assert_array_equal(np.where(mask == 0, xt, -0.5), -0.5)
    np.testing.assert_array_equal(np.where(mask == 1, xt, x0), x0)


def test_different_keys_give_different_masks():
    x0 = jnp.zeros((32, 32, 1))
    t = jnp.float32(0.5)
    masks = [masking.mask_corrupt(jax.random.key(k), x0, t, patch_size=8)[1] for k in range(4)]
    for a in range(4):
        for b in range(a + 1, 4):
            assert not np.array_equal(masks[a], masks[b])
    again = masking.mask_corrupt(jax.random.key(0), x0, t, patch_size=8)[1]
    np.testing.assert_array_equal(masks[0], again)


def test_paper_convention_masks_at_t_zero():
    x0 = jnp.zeros((4, 4, 1))  # L = 16 with P = 1
    _, mask = masking.mask_corrupt(
        jax.random.key(0), x0, jnp.float32(0.0), patch_size=1, num_steps=3, convention="paper"
    )
    assert int((mask == 0).sum()) == 16 // 4  # floor(16 * 1 / (3 + 1))
    ratio = masking.mask_ratio(jnp.float32(0.0), num_steps=3, convention="paper")
    chex.assert_trees_all_close(ratio, 0.25)


def test_fixed_ratio_corrupt():
    x0 = jnp.ones((32, 32, 3))
    xt, mask = masking.fixed_ratio_corrupt(jax.random.key(3), x0, ratio=0.75, patch_size=8)
    counts = _masked_counts(np.asarray(mask)[None], 8)
    assert counts[0] == 16 - int(16 * 0.25)
    chex.assert_shape(xt, (32, 32, 3))


def test_bad_inputs_raise():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        masking.mask_corrupt(key, jnp.zeros((10, 12, 3)), jnp.float32(0.1), patch_size=4)
    with pytest.raises(ValueError, match="scalar t"):
        masking.mask_corrupt(key, jnp.zeros((8, 8, 3)), jnp.zeros((2,)), patch_size=4)
    with pytest.raises(ValueError, match="one image"):
        masking.mask_corrupt(key, jnp.zeros((2, 8, 8, 3)), jnp.float32(0.1), patch_size=4)
    with pytest.raises(ValueError, match="Unknown masking convention"):
        masking.mask_ratio(jnp.float32(0.1), convention="t_over_T")
    with pytest.raises(ValueError, match="num_steps"):
        masking.mask_ratio(jnp.float32(0.1), num_steps=0)
    with pytest.raises(ValueError, match="ratio must be in"):
        masking.fixed_ratio_corrupt(key, jnp.zeros((8, 8, 3)), ratio=1.0, patch_size=4)
