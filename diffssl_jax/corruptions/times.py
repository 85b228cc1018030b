"""Sampling the diffusion time of a batch."""

import jax
import jax.numpy as jnp


def stratified_times(rng: jax.Array, batch_size: int, t_min: float = 1e-3) -> jax.Array:
    """Times `[B]` in `[t_min, 1)`, one per stratum of width (1 - t_min)/B, shuffled.

    Low-discrepancy sampling (Kingma et al. 2021, VDM, Sec. 3.3 / App. I): one uniform offset
    shared by the B strata lowers the variance of the batch's loss estimate, and the random
    permutation keeps each example's time uniform on [t_min, 1).
    """
    rng_offset, rng_perm = jax.random.split(rng)
    u = jax.random.uniform(rng_offset, ())
    t = (jnp.arange(batch_size) + u) / batch_size
    return t_min + (1.0 - t_min) * jax.random.permutation(rng_perm, t)
