"""A time-conditioned MLP for flat vector data (the EM toy manifold, Rozet et al. 2024, E.4).

`MLP(features=(256, 256, 256), emb_features=64)(x [B, ...], t [B]) -> (output [B, ...], {})`:
the input is flattened, concatenated with a sinusoidal embedding of the conditioning scalar
`t` passed through a small two-layer network, then goes through dense layers with SiLU and
(optionally) LayerNorm, and is reshaped back. The conditioning scalar is whatever the recipe
feeds (diffusion time in [0, 1], or log sigma); `t_scale` maps it to the embedding's units.
Returns `(output, features)` like every model of the library (features: the hidden layers).
"""

import math
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from diffssl_jax.models.layers import timestep_embedding


class MLP(nn.Module):
    """Time-conditioned MLP `(x, t) -> output` of `x`'s shape.

    Attributes:
      features: widths of the hidden layers (E.4: (256, 256, 256)).
      emb_features: width of the time embedding (E.4: 64).
      normalize: LayerNorm after each hidden layer (as the reference's `normalize=True`).
      t_scale: the embedding sees `t * t_scale` (1000 maps t in [0, 1] to step units).
    """

    features: Sequence[int] = (256, 256, 256)
    emb_features: int = 64
    normalize: bool = True
    t_scale: float = 1000.0

    @nn.compact
    def __call__(self, x: jnp.ndarray, t: jnp.ndarray, train: bool = False):
        """Args: x `[B, ...]`, t `[B]`. Returns `(output [B, ...], {"hidden_i": [B, w_i]})`."""
        del train
        batch_shape = x.shape
        h = x.reshape(x.shape[0], -1)
        emb = timestep_embedding(t * self.t_scale, self.emb_features)
        emb = nn.Dense(self.emb_features, name="emb_0")(emb)
        emb = nn.Dense(self.emb_features, name="emb_1")(nn.silu(emb))
        h = jnp.concatenate([h, emb.astype(h.dtype)], axis=-1)
        feats = {}
        for i, width in enumerate(self.features):
            h = nn.silu(nn.Dense(width, name=f"dense_{i}")(h))
            if self.normalize:
                h = nn.LayerNorm(name=f"norm_{i}")(h)
            feats[f"hidden_{i}"] = h
        out = nn.Dense(
            math.prod(batch_shape[1:]),
            kernel_init=nn.initializers.zeros,
            name="out",
        )(h)
        return out.reshape(batch_shape), feats
