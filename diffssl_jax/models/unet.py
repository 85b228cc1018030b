"""The guided-diffusion U-Net (Dhariwal & Nichol 2021, `UNetModel`), in Flax Linen.

A port of the design (not the code) of openai/guided-diffusion `unet.py`, NHWC, with the
same block order, widths, parameter shapes up to layout, attention-head layout and zero
initialisations. Continuous times t in [0, 1] are scaled by `time_embed_scale` (1000) so
that the sinusoidal embedding sees guided-diffusion's integer-step range.

The network returns `(output, features)`. `features` holds the decoder-block outputs
`dec_0 ... dec_{n-1}` (guided-diffusion output-block order; Baranchuk et al. 2022 read their
features there), the skip activations `enc_*`, the middle-block output `mid` and the
embedding `emb`; unused entries cost nothing under jit.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from diffssl_jax.models.layers import (
    AttentionBlock,
    ResBlock,
    conv3x3,
    group_norm,
    timestep_embedding,
    upsample_nearest,
)


def unet_decoder_channels(
    model_channels: int, channel_mult: tuple[int, ...], num_res_blocks: int
) -> list[tuple[int, int]]:
    """`(channels, downsample_factor)` of each decoder block's output, `dec_0` first.

    A block at downsample factor ds has spatial size H/ds. The last block of every level but
    the finest upsamples, so its factor is half its level's.

    Args:
      model_channels: base width.
      channel_mult: width multiplier per level, finest first.
      num_res_blocks: residual blocks per encoder level (the decoder has one more).

    Returns:
      A list of length len(channel_mult) * (num_res_blocks + 1).
    """
    blocks = []
    for level in reversed(range(len(channel_mult))):
        for i in range(num_res_blocks + 1):
            upsamples = level > 0 and i == num_res_blocks
            blocks.append((model_channels * channel_mult[level], 2 ** (level - upsamples)))
    return blocks


def unet_encoder_channels(
    model_channels: int, channel_mult: tuple[int, ...], num_res_blocks: int
) -> list[tuple[int, int]]:
    """`(channels, downsample_factor)` of each skip activation `enc_i`, in push order.

    These are the tensors the decoder pops (last first) and concatenates: the input conv,
    each encoder residual block, and each downsample.

    Args:
      model_channels: base width.
      channel_mult: width multiplier per level, finest first.
      num_res_blocks: residual blocks per encoder level.

    Returns:
      A list of length 1 + len(channel_mult) * num_res_blocks + len(channel_mult) - 1.
    """
    blocks = [(model_channels, 1)]
    for level, mult in enumerate(channel_mult):
        blocks += [(model_channels * mult, 2**level)] * num_res_blocks
        if level < len(channel_mult) - 1:
            blocks.append((model_channels * mult, 2 ** (level + 1)))
    return blocks


class UNet(nn.Module):
    """guided-diffusion U-Net: `(x [B, H, W, C], t [B]) -> (out [B, H, W, C_out], features)`.

    Attributes:
      out_channels: output channels; None means the input's channel count.
      model_channels: base width; the time embedding has width 4 * model_channels.
      channel_mult: width multiplier per level, finest first; level l runs at H / 2**l.
      num_res_blocks: residual blocks per encoder level (num_res_blocks + 1 per decoder level).
      attention_resolutions: DOWNSAMPLE FACTORS ds = H / feature_size at which attention is
        used (guided-diffusion's internal `attention_ds`), not feature sizes. For a 256² image
        the flag "32,16,8" (feature sizes) is ds (8, 16, 32). Each must be 2**l for a level l.
      num_heads: attention heads, used when num_head_channels <= 0.
      num_head_channels: width per head; when > 0 it overrides num_heads.
      dropout: dropout rate in the residual blocks (active only with train=True).
      resblock_updown: resample with residual blocks instead of (strided / nearest+) convs.
      use_scale_shift_norm: FiLM conditioning on the time embedding.
      num_groups: GroupNorm groups, capped at each width; must divide every width.
      time_embed_scale: t in [0, 1] is multiplied by this before the sinusoidal embedding.
      dtype: compute dtype (a dtype or its name, e.g. "bfloat16"); parameters, the time
        embedding, GroupNorm, the softmax and the output layer stay float32.
    """

    out_channels: int | None = None
    model_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = ()
    num_heads: int = 4
    num_head_channels: int = -1
    dropout: float = 0.0
    resblock_updown: bool = False
    use_scale_shift_norm: bool = True
    num_groups: int = 32
    time_embed_scale: float = 1000.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self,
        x: jnp.ndarray,
        t: jnp.ndarray,
        *,
        train: bool = False,
        cond: jnp.ndarray | None = None,
    ) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
        """Runs the network.

        Args:
          x: `[B, H, W, C]` float images; H and W multiples of 2**(len(channel_mult) - 1).
          t: `[B]` times in [0, 1].
          train: enables dropout (pass `rngs={"dropout": rng}` when dropout > 0).
          cond: optional `[B, D]` conditioning (class or feature vector), mapped by a Dense
            to the embedding width and added to the time embedding. Initialise with a
            `cond` of the same width if `apply` will receive one.

        Returns:
          `out`: `[B, H, W, out_channels]` float32, zero at initialisation.
          `features`: `emb` `[B, 4 * model_channels]` (the embedding every block receives:
          time, plus `cond` if given); `enc_i` the skip activations in push order (shapes
          from `unet_encoder_channels`); `mid` the middle-block output; `dec_i` each decoder
          block's output after its upsample (shapes from `unet_decoder_channels`). `emb` is
          float32, the other features are in the compute dtype.
        """
        self._check_config()
        self._check_inputs(x, t, cond)
        emb = self._embed(t, cond)
        features = {"emb": emb}
        hs = self._encode(x, emb, train)
        features.update({f"enc_{i}": h for i, h in enumerate(hs)})
        h = self._res(hs[-1].shape[-1], "mid_res_0")(hs[-1], emb, train)
        h = self._attn("mid_attn")(h)
        h = self._res(h.shape[-1], "mid_res_1")(h, emb, train)
        features["mid"] = h
        h, decoded = self._decode(h, hs, emb, train)
        features.update({f"dec_{i}": d for i, d in enumerate(decoded)})
        h = nn.silu(group_norm(h.astype(jnp.float32), self.num_groups, "out_norm"))
        out_channels = x.shape[-1] if self.out_channels is None else self.out_channels
        out = conv3x3(out_channels, jnp.float32, "out_conv", zero=True)(h)
        return out, features

    def _res(self, out_channels: int, name: str, **kwargs) -> ResBlock:
        return ResBlock(
            out_channels,
            num_groups=self.num_groups,
            dropout=self.dropout,
            use_scale_shift_norm=self.use_scale_shift_norm,
            dtype=jnp.dtype(self.dtype),
            name=name,
            **kwargs,
        )

    def _attn(self, name: str) -> AttentionBlock:
        return AttentionBlock(
            self.num_heads,
            self.num_head_channels,
            self.num_groups,
            dtype=jnp.dtype(self.dtype),
            name=name,
        )

    def _embed(self, t: jnp.ndarray, cond: jnp.ndarray | None) -> jnp.ndarray:
        """`[B]` times (and `[B, D]` cond) -> `[B, 4 * model_channels]` float32 embedding."""
        width = 4 * self.model_channels
        emb = timestep_embedding(t * self.time_embed_scale, self.model_channels)
        emb = nn.Dense(width, name="time_embed_0")(emb)
        emb = nn.Dense(width, name="time_embed_1")(nn.silu(emb))
        if cond is not None:
            emb = emb + nn.Dense(width, name="cond_embed")(cond.astype(jnp.float32))
        return emb

    def _encode(self, x: jnp.ndarray, emb: jnp.ndarray, train: bool) -> list[jnp.ndarray]:
        """Input conv and encoder levels; returns the skip stack (input_blocks outputs)."""
        dtype = jnp.dtype(self.dtype)
        h = conv3x3(self.model_channels, dtype, "in_0_conv")(x.astype(dtype))
        hs, k, ds = [h], 1, 1
        for level, mult in enumerate(self.channel_mult):
            for _ in range(self.num_res_blocks):
                h = self._res(self.model_channels * mult, f"in_{k}_res")(h, emb, train)
                if ds in self.attention_resolutions:
                    h = self._attn(f"in_{k}_attn")(h)
                hs.append(h)
                k += 1
            if level < len(self.channel_mult) - 1:
                if self.resblock_updown:
                    h = self._res(h.shape[-1], f"in_{k}_down", down=True)(h, emb, train)
                else:
                    h = conv3x3(h.shape[-1], dtype, f"in_{k}_down", stride=2)(h)
                hs.append(h)
                k, ds = k + 1, ds * 2
        return hs

    def _decode(
        self, h: jnp.ndarray, hs: list[jnp.ndarray], emb: jnp.ndarray, train: bool
    ) -> tuple[jnp.ndarray, list[jnp.ndarray]]:
        """Decoder levels, coarsest first, popping one skip per block; returns (h, outputs)."""
        hs, decoded, ds = list(hs), [], 2 ** (len(self.channel_mult) - 1)
        for level in reversed(range(len(self.channel_mult))):
            channels = self.model_channels * self.channel_mult[level]
            for i in range(self.num_res_blocks + 1):
                k = len(decoded)
                h = jnp.concatenate([h, hs.pop()], axis=-1)
                h = self._res(channels, f"out_{k}_res")(h, emb, train)
                if ds in self.attention_resolutions:
                    h = self._attn(f"out_{k}_attn")(h)
                if level and i == self.num_res_blocks:
                    if self.resblock_updown:
                        h = self._res(channels, f"out_{k}_up", up=True)(h, emb, train)
                    else:
                        h = conv3x3(channels, h.dtype, f"out_{k}_up")(upsample_nearest(h))
                    ds //= 2
                decoded.append(h)
        return h, decoded

    def _check_config(self) -> None:
        """Raises ValueError on a configuration that cannot build (static, free under jit)."""
        mult = tuple(self.channel_mult)
        if not mult or any(int(m) != m or m < 1 for m in mult):
            raise ValueError(f"UNet: channel_mult must be positive integers; got {mult}.")
        if self.model_channels < 1 or self.num_res_blocks < 1:
            raise ValueError(
                "UNet: model_channels and num_res_blocks must be >= 1; got "
                f"{self.model_channels} and {self.num_res_blocks}."
            )
        valid_ds = [2**level for level in range(len(mult))]
        bad = [ds for ds in self.attention_resolutions if ds not in valid_ds]
        if bad:
            raise ValueError(
                f"UNet: attention_resolutions {tuple(self.attention_resolutions)} has {bad}, "
                f"not a downsample factor of this network (one of {valid_ds}). They are "
                "factors ds = H / feature_size, not feature sizes: for 256² images, "
                "feature sizes 32,16,8 are ds (8, 16, 32)."
            )
        if self.out_channels is not None and self.out_channels < 1:
            raise ValueError(
                f"UNet: out_channels must be >= 1, or None for the input's channel count; "
                f"got {self.out_channels}."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNet: dropout must be in [0, 1); got {self.dropout}.")

    def _check_inputs(self, x: jnp.ndarray, t: jnp.ndarray, cond: jnp.ndarray | None) -> None:
        """Raises ValueError on input shapes the network cannot take (static under jit)."""
        if x.ndim != 4 or not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(
                f"UNet: x must be float images [B, H, W, C]; got shape {x.shape}, dtype "
                f"{x.dtype}. Add a batch axis (x[None]) or a channel axis (x[..., None])."
            )
        batch, height, width = x.shape[:3]
        factor = 2 ** (len(self.channel_mult) - 1)
        if height % factor or width % factor:
            raise ValueError(
                f"UNet: H and W must be multiples of {factor} = 2**(len(channel_mult) - 1) "
                f"with channel_mult={tuple(self.channel_mult)}; got {height}x{width}. Sizes "
                f"that work: {factor}, {2 * factor}, {3 * factor}, ... Pad or resize images."
            )
        if jnp.shape(t) != (batch,):
            raise ValueError(
                f"UNet: t must have shape [B] = ({batch},), one time in [0, 1] per image; "
                f"got {jnp.shape(t)}. For one shared time use jnp.full(({batch},), t)."
            )
        if cond is not None and (cond.ndim != 2 or cond.shape[0] != batch):
            raise ValueError(
                f"UNet: cond must have shape [B, D] with B = {batch}; got {cond.shape}."
            )


__all__ = ["UNet", "unet_decoder_channels", "unet_encoder_channels"]
