"""The toy manifold of Rozet et al. (2024, E.4): the randman construction (its projections:
tests/posterior/test_problems.py)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax.data import manifold


@pytest.fixture(scope="module")
def sample():
    x, z = manifold.randman_with_latents(0, 4096)
    return np.asarray(x), np.asarray(z)


def test_num_terms():
    assert manifold.num_terms(3.0, 1e-3) == 10  # E.4's K, though 1e-3**(-1/3) rounds below 10
    assert manifold.num_terms(2.0, 1e-2) == 10
    assert manifold.num_terms(3.0, 1e-2) == math.ceil(100 ** (1 / 3)) == 5
    x0 = manifold.randman_coefficients(0, dim=5, manifold_dim=1, num_terms=10)
    assert x0.shape == (3, 5, 1, 10) and float(x0.min()) >= 0 and float(x0.max()) < 1


def test_randman_shape_and_range(sample):
    x, z = sample
    assert x.shape == (4096, 5) and x.dtype == np.float32 and z.shape == (4096, 1)
    assert x.min() >= -2.0 and x.max() <= 2.0 and z.min() >= 0.0 and z.max() < 1.0
    # The reference grid covers the manifold: a large sample reaches both ends of [-2, 2].
    np.testing.assert_allclose(x.min(axis=0), -2.0, atol=0.05)
    np.testing.assert_allclose(x.max(axis=0), 2.0, atol=0.05)


def test_randman_matches_the_formula(sample):
    x, z = sample
    a, b, c = np.asarray(
        manifold.randman_coefficients(
            jax.random.split(jax.random.key(0))[0], dim=5, manifold_dim=1, num_terms=10
        ),
        np.float64,
    )

    def f(zs):  # Zenke & Vogels (2021): sum_k a_k / k^3 sin(2 pi (k b_k z + c_k)), m = 1
        out = np.zeros((len(zs), 5))
        for i in range(5):
            for k in range(1, 11):
                t = (
                    a[i, 0, k - 1]
                    / k**3
                    * np.sin(2 * np.pi * (k * b[i, 0, k - 1] * zs + c[i, 0, k - 1]))
                )
                out[:, i] += t
        return out

    grid = f(np.linspace(0.0, 1.0, 2**16))
    lo, hi = grid.min(axis=0), grid.max(axis=0)
    expected = 4.0 * (f(z[:16, 0]) - lo) / (hi - lo) - 2.0
    np.testing.assert_allclose(x[:16], expected, atol=1e-4)


def test_randman_lies_on_a_curve(sample):
    x, z = sample
    along = np.linalg.norm(np.diff(x[np.argsort(z[:, 0])], axis=0), axis=1)
    shuffled = np.linalg.norm(np.diff(x, axis=0), axis=1)  # the same points in random order
    spread = np.linalg.norm(x.std(axis=0))
    assert along.max() < 0.05 * spread < np.median(shuffled)


def test_randman_is_deterministic(sample):
    x, _ = sample
    np.testing.assert_array_equal(manifold.randman(0, 4096), x)
    np.testing.assert_array_equal(manifold.randman(jax.random.key(0), 4096), x)
    other = np.asarray(manifold.randman(1, 4096))
    assert np.abs(np.sort(other, axis=0) - np.sort(x, axis=0)).max() > 0.1  # another manifold


def test_randman_higher_manifold_dim():
    x = manifold.randman(2, 512, dim=3, manifold_dim=2)
    assert x.shape == (512, 3) and float(jnp.abs(x).max()) <= 2.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: manifold.randman(-1, 8), "seed"),
        (lambda: manifold.randman(1.0, 8), "seed"),
        (lambda: manifold.randman(True, 8), "seed"),
        (lambda: manifold.randman(0, 0), ">= 1"),
        (lambda: manifold.randman(0, 8, epsilon=0.0), "epsilon"),
        (lambda: manifold.randman(0, 8, alpha=-1.0), "alpha"),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
