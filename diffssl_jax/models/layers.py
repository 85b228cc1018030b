"""Building blocks of the guided-diffusion U-Net (Dhariwal & Nichol 2021), in Flax Linen.

Images are NHWC. Every block computes in `dtype` (e.g. bfloat16 on accelerators) and keeps
its parameters in float32; GroupNorm and the attention softmax always run in float32, as in
guided-diffusion's `GroupNorm32` and `QKVAttentionLegacy`. The blocks are public so that
other networks (DiTi's shifted decoder) can reuse them.
"""

import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

zeros = nn.initializers.zeros


def timestep_embedding(t: jnp.ndarray, dim: int, max_period: float = 10000.0) -> jnp.ndarray:
    """Sinusoidal embedding of (scaled) times, cosines first (Vaswani et al. 2017, Sec. 3.5).

    emb[i] = cos(t * f_i) for i < dim // 2 and sin(t * f_{i - dim // 2}) after, with
    f_i = max_period ** (-i / (dim // 2)); an odd `dim` gets one zero column at the end.

    Args:
      t: times `[B]`, in guided-diffusion units (integer steps 0..999 as floats).
      dim: embedding width D.
      max_period: the slowest period.

    Returns:
      `[B, D]` float32 embedding.
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[:, None] * freqs[None]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


def group_norm(x: jnp.ndarray, num_groups: int, name: str) -> jnp.ndarray:
    """Float32 GroupNorm (eps 1e-5, as PyTorch) with min(num_groups, C) groups; call in compact.

    Args:
      x: `[..., C]` activations in any dtype.
      num_groups: requested number of groups; must divide C once capped at C.
      name: submodule name (the parameters are `name/scale`, `name/bias`).

    Returns:
      `[..., C]` normalised activations in the dtype of `x`.
    """
    channels = x.shape[-1]
    groups = min(num_groups, channels)
    if channels % groups:
        raise ValueError(
            f"GroupNorm over {channels} channels cannot use num_groups={num_groups}: "
            f"{channels} is not divisible by {groups}. Choose a num_groups that divides every "
            "block width (the widths are model_channels * mult and the decoder's "
            "skip-concatenated widths), e.g. a power of two dividing model_channels."
        )
    h = nn.GroupNorm(num_groups=groups, epsilon=1e-5, dtype=jnp.float32, name=name)(
        x.astype(jnp.float32)
    )
    return h.astype(x.dtype)


def upsample_nearest(x: jnp.ndarray) -> jnp.ndarray:
    """Nearest-neighbour 2x upsampling: `[B, H, W, C] -> [B, 2H, 2W, C]`."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def downsample_avg(x: jnp.ndarray) -> jnp.ndarray:
    """2x2 average pooling with stride 2: `[B, H, W, C] -> [B, H/2, W/2, C]`."""
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


def conv3x3(features: int, dtype: Any, name: str, stride: int = 1, zero: bool = False):
    """A 3x3 convolution with PyTorch's symmetric padding 1 (also for stride 2)."""
    kwargs = {"kernel_init": zeros, "bias_init": zeros} if zero else {}
    return nn.Conv(features, (3, 3), strides=stride, padding=1, dtype=dtype, name=name, **kwargs)


class ResBlock(nn.Module):
    """Residual block with time-embedding conditioning (guided-diffusion `ResBlock`).

    h = conv(SiLU(GN(x))) (resampled between SiLU and conv when `up`/`down`); then with
    scale-shift norm h = GN(h) * (1 + scale) + shift with (scale, shift) = Dense(SiLU(emb))
    (FiLM; Dhariwal & Nichol 2021, Sec. 3), else h = GN(h + Dense(SiLU(emb))); then SiLU,
    dropout and a zero-initialised conv; out = skip(x) + h, the skip a 1x1 conv when the
    width changes.

    Attributes:
      out_channels: output width C'.
      num_groups: GroupNorm groups (capped at the width).
      dropout: dropout rate before the last conv.
      use_scale_shift_norm: FiLM conditioning instead of adding the embedding.
      up: nearest 2x upsampling inside the block.
      down: 2x average pooling inside the block.
      dtype: compute dtype.
    """

    out_channels: int
    num_groups: int = 32
    dropout: float = 0.0
    use_scale_shift_norm: bool = True
    up: bool = False
    down: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, emb: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        """Applies the block.

        Args:
          x: `[B, H, W, C]` activations.
          emb: `[B, E]` time embedding.
          train: enables dropout (needs the `dropout` rng when the rate is positive).

        Returns:
          `[B, H', W', C']`, with H' = 2H when `up`, H/2 when `down`, else H.
        """
        if self.up and self.down:
            raise ValueError("ResBlock: up and down cannot both be True.")
        resample = upsample_nearest if self.up else downsample_avg if self.down else None
        h = nn.silu(group_norm(x, self.num_groups, "in_norm"))
        if resample is not None:
            h, x = resample(h), resample(x)
        h = conv3x3(self.out_channels, self.dtype, "in_conv")(h)
        width = 2 * self.out_channels if self.use_scale_shift_norm else self.out_channels
        emb_out = nn.Dense(width, dtype=self.dtype, name="emb_dense")(nn.silu(emb))
        emb_out = emb_out.astype(h.dtype)[:, None, None, :]
        if self.use_scale_shift_norm:
            scale, shift = jnp.split(emb_out, 2, axis=-1)
            h = group_norm(h, self.num_groups, "out_norm") * (1 + scale) + shift
        else:
            h = group_norm(h + emb_out, self.num_groups, "out_norm")
        h = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(h))
        h = conv3x3(self.out_channels, self.dtype, "out_conv", zero=True)(h)
        if x.shape[-1] != self.out_channels:
            x = nn.Conv(self.out_channels, (1, 1), dtype=self.dtype, name="skip")(x)
        return x.astype(h.dtype) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all H*W positions, residual (guided-diffusion).

    out = x + proj(softmax(q k^T / sqrt(d)) v) with q, k, v = qkv(GN(x)) per head of width d
    and a zero-initialised projection. The qkv channels are laid out per head as [q | k | v]
    (guided-diffusion's `QKVAttentionLegacy`, its default), so its weights port directly.

    Attributes:
      num_heads: number of heads, used when `num_head_channels <= 0`.
      num_head_channels: width per head; when > 0 it sets the number of heads instead.
      num_groups: GroupNorm groups (capped at the width).
      dtype: compute dtype.
    """

    num_heads: int = 4
    num_head_channels: int = -1
    num_groups: int = 32
    dtype: Any = jnp.float32

    def _heads(self, channels: int) -> int:
        if self.num_head_channels > 0:
            if channels % self.num_head_channels:
                raise ValueError(
                    f"AttentionBlock over {channels} channels: num_head_channels="
                    f"{self.num_head_channels} does not divide it. Pick a head width that "
                    "divides every attention block's width, or set num_head_channels=-1."
                )
            return channels // self.num_head_channels
        if self.num_heads < 1 or channels % self.num_heads:
            raise ValueError(
                f"AttentionBlock over {channels} channels: num_heads={self.num_heads} must be "
                "a positive divisor of it (or set num_head_channels > 0 instead)."
            )
        return self.num_heads

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """Applies the block.

        Args:
          x: `[B, H, W, C]` activations.

        Returns:
          `[B, H, W, C]`.
        """
        b, height, width, c = x.shape
        heads = self._heads(c)
        d = c // heads
        h = group_norm(x, self.num_groups, "norm").reshape(b, height * width, c)
        qkv = nn.Dense(3 * c, dtype=self.dtype, name="qkv")(h).reshape(b, -1, heads, 3, d)
        scale = d**-0.25  # applied to q and k separately: more stable in low precision
        q, k, v = qkv[..., 0, :] * scale, qkv[..., 1, :] * scale, qkv[..., 2, :]
        logits = jnp.einsum("bthd,bshd->bhts", q, k).astype(jnp.float32)
        weights = nn.softmax(logits, axis=-1).astype(v.dtype)
        a = jnp.einsum("bhts,bshd->bthd", weights, v).reshape(b, height * width, c)
        a = nn.Dense(c, dtype=self.dtype, kernel_init=zeros, bias_init=zeros, name="proj_out")(a)
        return x.astype(a.dtype) + a.reshape(b, height, width, c)
