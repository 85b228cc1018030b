"""DiTi's image encoder z = E(x0): strided convolutions, then one linear map to the feature.

The architecture of the reference CelebA-64 encoder (docs/methods.md B.2; Yue et al. 2024, Sec. 4),
made configurable: level l is a 3x3 stride-2 convolution to `channels[l]` channels, then
(at the levels in `attention_levels`) a self-attention block, then GroupNorm and SiLU. The
final map is flattened and a Dense layer gives the `latent_dim`-d feature, with no output
normalisation. The CelebA-64 encoder is `channels=(64, 128, 128, 128)`,
`attention_levels=(1,)`, 4 heads, `latent_dim=512`: 1,487,104 parameters (the number the
reference file states; tested).
"""

import flax.linen as nn
import jax.numpy as jnp

from diffssl_jax.models.layers import AttentionBlock, conv3x3, group_norm


class Encoder(nn.Module):
    """`x0 [B, H, W, C] -> z [B, latent_dim]` (docs/methods.md B.2).

    Attributes:
      latent_dim: width D of the feature z (DiTi: 512).
      channels: output channels of each stride-2 level, finest first; the map entering
        the Dense layer is H / 2**len(channels) on a side.
      attention_levels: indices of the levels followed by a self-attention block.
      num_heads: attention heads.
      num_groups: GroupNorm groups (capped at each width).
    """

    latent_dim: int = 512
    channels: tuple[int, ...] = (64, 128, 128, 128)
    attention_levels: tuple[int, ...] = (1,)
    num_heads: int = 4
    num_groups: int = 32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """Encodes images.

        Args:
          x: `[B, H, W, C]` float images in [-1, 1]; H and W multiples of 2**len(channels).

        Returns:
          `[B, latent_dim]` float32 features.
        """
        factor = 2 ** len(self.channels)
        if x.ndim != 4 or x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(
                f"Encoder: x must be [B, H, W, C] with H and W multiples of {factor} "
                f"(2**len(channels), channels={tuple(self.channels)}); got shape {x.shape}."
            )
        h = x.astype(jnp.float32)
        for level, width in enumerate(self.channels):
            h = conv3x3(width, jnp.float32, f"conv_{level}", stride=2)(h)
            if level in self.attention_levels:
                h = AttentionBlock(self.num_heads, -1, self.num_groups, name=f"attn_{level}")(h)
            h = nn.silu(group_norm(h, self.num_groups, f"norm_{level}"))
        return nn.Dense(self.latent_dim, name="out")(h.reshape(h.shape[0], -1))


__all__ = ["Encoder"]
