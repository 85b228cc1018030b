"""The toy manifold of Rozet et al. (2024, E.4): randman latents.

A smooth random manifold (Zenke & Vogels 2021, "randman"): each of the `dim` coordinates is
a product over the `manifold_dim` latent coordinates `z_j ~ U(0, 1)` of a random Fourier
series with power-law decay,

    f_i(z) = prod_j sum_{k=1..K} a_ijk / k^alpha * sin(2 pi (k b_ijk z_j + c_ijk)),

with `a, b, c ~ U(0, 1)` and `K = ceil(epsilon^(-1/alpha))` (the terms beyond K weigh less
than `epsilon`). The toy's observations, one random projection `A_i` `[obs_dim, dim]` per
point, are `posterior.observations.random_projections`. Every function takes an integer seed or a
`jax.random.key`.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

REFERENCE_POINTS = 2**16  # latent grid points of the min/max reference (about, per manifold)


def to_key(rng_or_seed) -> jax.Array:
    """A typed `jax.random.key` from a non-negative integer seed, or the key itself.

    Raises:
      ValueError: for anything else (negative or non-integer seeds, raw uint32 keys).
    """
    if isinstance(rng_or_seed, jax.Array) and jnp.issubdtype(
        rng_or_seed.dtype, jax.dtypes.prng_key
    ):
        return rng_or_seed
    integer = isinstance(rng_or_seed, int | np.integer) and not isinstance(rng_or_seed, bool)
    if not integer or rng_or_seed < 0:
        raise ValueError(
            f"expected a non-negative integer seed or a jax.random.key; got {rng_or_seed!r}."
        )
    return jax.random.key(int(rng_or_seed))


def num_terms(alpha: float, epsilon: float) -> int:
    """`K = ceil(epsilon^(-1/alpha))` Fourier terms (Zenke & Vogels 2021; 10 for 1e-3 and 3).

    Computed as `ceil(epsilon^(-1/alpha) - 1e-9)`, so that a power that is an integer up to
    rounding (`1e-3^(-1/3) = 10`) does not gain a term from floating-point error.
    """
    if not (alpha > 0 and 0 < epsilon < 1):
        raise ValueError(f"randman needs alpha > 0 and 0 < epsilon < 1; got {alpha}, {epsilon}.")
    return math.ceil(epsilon ** (-1.0 / alpha) - 1e-9)


def randman_coefficients(rng, *, dim: int, manifold_dim: int, num_terms: int) -> jax.Array:
    """The manifold's random coefficients `(a, b, c) ~ U(0, 1)`.

    Args:
      rng: key (or integer seed).
      dim: ambient dimension `n`.
      manifold_dim: latent dimension `m`.
      num_terms: Fourier terms `K`.

    Returns:
      `[3, n, m, K]` float32: `a`, `b`, `c`, one set per (coordinate, latent dimension).
    """
    return jax.random.uniform(to_key(rng), (3, dim, manifold_dim, num_terms))


def randman_embed(coefficients: jax.Array, z: jax.Array, alpha: float) -> jax.Array:
    """Maps latents to the manifold (unscaled): `f_i(z)` of the module docstring.

    Args:
      coefficients: `[3, n, m, K]` from `randman_coefficients`.
      z: `[N, m]` latents in [0, 1].
      alpha: smoothness exponent.

    Returns:
      `[N, n]` points.
    """
    a, b, c = coefficients
    k = jnp.arange(1, a.shape[-1] + 1, dtype=a.dtype)
    phase = 2 * jnp.pi * (k * b * z[:, None, :, None] + c)  # [N, n, m, K]
    return jnp.prod(jnp.sum(a / k**alpha * jnp.sin(phase), axis=-1), axis=-1)


def randman_bounds(coefficients: jax.Array, alpha: float) -> tuple[jax.Array, jax.Array]:
    """Per-coordinate min and max of the manifold over a regular latent grid.

    The grid has `G = max(2, round(REFERENCE_POINTS^(1/m)))` points per latent axis,
    `linspace(0, 1, G)` (both ends included), i.e. about 65,536 points in all: a reference
    sample of the manifold that does not depend on the number of samples drawn.

    Returns:
      `(lo [n], hi [n])`.
    """
    manifold_dim = coefficients.shape[2]
    side = max(2, round(REFERENCE_POINTS ** (1.0 / manifold_dim)))
    axes = jnp.meshgrid(*[jnp.linspace(0.0, 1.0, side)] * manifold_dim, indexing="ij")
    grid = jnp.stack([axis.reshape(-1) for axis in axes], axis=-1)
    x = randman_embed(coefficients, grid, alpha)
    return x.min(axis=0), x.max(axis=0)


def randman_with_latents(
    rng_or_seed,
    num_samples: int,
    *,
    dim: int = 5,
    manifold_dim: int = 1,
    alpha: float = 3.0,
    epsilon: float = 1e-3,
) -> tuple[jax.Array, jax.Array]:
    """`randman` that also returns the latents `z` of its points.

    The key splits into `(rng_coefficients, rng_z)`; the coefficients (hence the manifold)
    depend on the seed only, not on `num_samples`.

    Returns:
      `(x [N, n] in [-2, 2], z [N, m] in [0, 1))`, float32.
    """
    if int(num_samples) < 1 or int(dim) < 1 or int(manifold_dim) < 1:
        raise ValueError(
            f"num_samples, dim and manifold_dim must be >= 1; got {num_samples}, {dim}, "
            f"{manifold_dim}."
        )
    rng_coefficients, rng_z = jax.random.split(to_key(rng_or_seed))
    coefficients = randman_coefficients(
        rng_coefficients, dim=dim, manifold_dim=manifold_dim, num_terms=num_terms(alpha, epsilon)
    )
    z = jax.random.uniform(rng_z, (int(num_samples), manifold_dim))
    lo, hi = randman_bounds(coefficients, alpha)
    x = 4.0 * (randman_embed(coefficients, z, alpha) - lo) / (hi - lo) - 2.0
    # The grid misses each extremum by O(spacing^2) (< 1e-8 for m = 1): clip that away.
    return jnp.clip(x, -2.0, 2.0), z


def randman(
    rng_or_seed,
    num_samples: int,
    *,
    dim: int = 5,
    manifold_dim: int = 1,
    alpha: float = 3.0,
    epsilon: float = 1e-3,
) -> jax.Array:
    """Points on a smooth random manifold, each coordinate rescaled to [-2, 2] (E.4).

    Rozet et al. (2024, E.4) with the randman construction of Zenke & Vogels (2021); see the
    module docstring for `f`. Coordinate `i` is rescaled as `4 (f_i - lo_i) / (hi_i - lo_i) - 2`
    with `lo, hi` the min/max of `f_i` over a regular grid of about 65,536 latents
    (`randman_bounds`), not over the sample itself as in the reference code, so that the
    scaling does not depend on `num_samples`; values are then clipped to [-2, 2].

    Args:
      rng_or_seed: non-negative integer seed or `jax.random.key`.
      num_samples: `N`.
      dim: ambient dimension `n` (5 in E.4).
      manifold_dim: latent dimension `m` (1 in E.4).
      alpha: power-law exponent of the Fourier coefficients (3 in E.4).
      epsilon: precision that sets the number of terms `K` (1e-3, so K = 10).

    Returns:
      `[N, n]` float32 in [-2, 2].
    """
    return randman_with_latents(
        rng_or_seed, num_samples, dim=dim, manifold_dim=manifold_dim, alpha=alpha, epsilon=epsilon
    )[0]
