"""PDAE's trainable "gradient estimator" G(x_t, z, t): a second U-Net decoder on frozen skips.

DiTi (Yue et al. 2024) reuses PDAE's `ShiftUNet` (Zhang et al. 2022, Sec. 3.2; docs/methods.md
B.2): the frozen U-Net's encoder half computes the skip activations `hs` and the time
embedding `emb` of (x_t, t); a second decoder half with the frozen decoder's layout reads
them and is modulated by the feature z. Its residual blocks (`ShiftResBlock`) apply, after
the time FiLM, a feature FiLM:

    h <- (1 + z_scale) * (GN(h) * (1 + scale) + shift) + z_shift,

with (scale, shift) = Dense(SiLU(emb)) and (z_scale, z_shift) = Dense(SiLU(z_emb)),
z_emb = Dense(z) of width 4 * model_channels (PDAE's `label_emb`). The output layer is
GroupNorm, SiLU and a zero-initialised 3x3 convolution, so G = 0 at initialisation and the
DiTi prediction starts as the prior's.

This module only holds the trainable parts; `UNet` (frozen) supplies `hs` and `emb` through
its returned features (`enc_i`, `emb`).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from diffssl_jax.models.layers import (
    AttentionBlock,
    conv3x3,
    group_norm,
    upsample_nearest,
)
from diffssl_jax.models.unet import UNet


class ShiftResBlock(nn.Module):
    """Residual block with time and feature FiLM (PDAE `ResBlockShift`, module docstring).

    Attributes:
      out_channels: output width C'.
      num_groups: GroupNorm groups (capped at the width).
      dropout: dropout rate before the last conv.
      up: nearest 2x upsampling inside the block.
      dtype: compute dtype.
    """

    out_channels: int
    num_groups: int = 32
    dropout: float = 0.0
    up: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, emb, z_emb, train: bool = False):
        """`x [B, H, W, C]`, `emb [B, E]`, `z_emb [B, E]` -> `[B, H', W', C']`."""
        h = nn.silu(group_norm(x, self.num_groups, "in_norm"))
        if self.up:
            h, x = upsample_nearest(h), upsample_nearest(x)
        h = conv3x3(self.out_channels, self.dtype, "in_conv")(h)
        film = nn.Dense(2 * self.out_channels, dtype=self.dtype, name="emb_dense")(nn.silu(emb))
        z_film = nn.Dense(2 * self.out_channels, dtype=self.dtype, name="z_dense")(nn.silu(z_emb))
        scale, shift = jnp.split(film.astype(h.dtype)[:, None, None, :], 2, axis=-1)
        z_scale, z_shift = jnp.split(z_film.astype(h.dtype)[:, None, None, :], 2, axis=-1)
        h = group_norm(h, self.num_groups, "out_norm") * (1 + scale) + shift
        h = (1 + z_scale) * h + z_shift
        h = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(h))
        h = conv3x3(self.out_channels, self.dtype, "out_conv", zero=True)(h)
        if x.shape[-1] != self.out_channels:
            x = nn.Conv(self.out_channels, (1, 1), dtype=self.dtype, name="skip")(x)
        return x.astype(h.dtype) + h


class ShiftDecoder(nn.Module):
    """`(hs, emb, z) -> G [B, H, W, out_channels]`: the trainable decoder half of PDAE/DiTi.

    The fields mirror the frozen `UNet`'s (`shift_decoder_for` copies them), so the blocks
    pop the skips `hs` exactly as its decoder does.

    Attributes:
      out_channels: channels of G (the image's).
      model_channels, channel_mult, num_res_blocks, attention_resolutions, num_heads,
        num_head_channels, dropout, resblock_updown, num_groups, dtype: as `UNet`.
    """

    out_channels: int
    model_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = ()
    num_heads: int = 4
    num_head_channels: int = -1
    dropout: float = 0.0
    resblock_updown: bool = False
    num_groups: int = 32
    dtype: Any = jnp.float32

    def _res(self, channels: int, name: str, up: bool = False) -> ShiftResBlock:
        dtype = jnp.dtype(self.dtype)
        return ShiftResBlock(channels, self.num_groups, self.dropout, up, dtype, name=name)

    def _attn(self, name: str) -> AttentionBlock:
        dtype = jnp.dtype(self.dtype)
        heads = (self.num_heads, self.num_head_channels, self.num_groups)
        return AttentionBlock(*heads, dtype=dtype, name=name)

    @nn.compact
    def __call__(self, hs, emb, z, train: bool = False):
        """Runs the shift branch.

        Args:
          hs: the frozen U-Net's skip activations `enc_0 ... enc_n` in push order.
          emb: `[B, 4 * model_channels]` its time embedding (feature `emb`).
          z: `[B, D]` the (masked) feature.
          train: enables dropout.

        Returns:
          `[B, H, W, out_channels]` float32, zero at initialisation.
        """
        width = 4 * self.model_channels
        z_emb = nn.Dense(width, name="z_embed")(z.astype(jnp.float32))
        hs = list(hs)
        h = self._res(hs[-1].shape[-1], "mid_res_0")(hs[-1], emb, z_emb, train)
        h = self._attn("mid_attn")(h)
        h = self._res(h.shape[-1], "mid_res_1")(h, emb, z_emb, train)
        k, ds = 0, 2 ** (len(self.channel_mult) - 1)
        for level in reversed(range(len(self.channel_mult))):
            channels = self.model_channels * self.channel_mult[level]
            for i in range(self.num_res_blocks + 1):
                h = jnp.concatenate([h, hs.pop()], axis=-1)
                h = self._res(channels, f"out_{k}_res")(h, emb, z_emb, train)
                if ds in self.attention_resolutions:
                    h = self._attn(f"out_{k}_attn")(h)
                if level and i == self.num_res_blocks:
                    if self.resblock_updown:
                        h = self._res(channels, f"out_{k}_up", up=True)(h, emb, z_emb, train)
                    else:
                        h = conv3x3(channels, h.dtype, f"out_{k}_up")(upsample_nearest(h))
                    ds //= 2
                k += 1
        h = nn.silu(group_norm(h.astype(jnp.float32), self.num_groups, "out_norm"))
        return conv3x3(self.out_channels, jnp.float32, "out_conv", zero=True)(h)


def shift_decoder_for(unet: UNet, out_channels: int) -> ShiftDecoder:
    """The shift branch matching a frozen `unet` (same layout, so the skips fit)."""
    return ShiftDecoder(
        out_channels=out_channels,
        model_channels=unet.model_channels,
        channel_mult=tuple(unet.channel_mult),
        num_res_blocks=unet.num_res_blocks,
        attention_resolutions=tuple(unet.attention_resolutions),
        num_heads=unet.num_heads,
        num_head_channels=unet.num_head_channels,
        dropout=unet.dropout,
        resblock_updown=unet.resblock_updown,
        num_groups=unet.num_groups,
        dtype=unet.dtype,
    )


__all__ = ["ShiftDecoder", "ShiftResBlock", "shift_decoder_for"]
