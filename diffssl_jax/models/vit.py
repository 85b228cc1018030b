"""A plain ViT / DiT in Flax Linen, for l-DAE (adaLN time conditioning) and MAE (none).

With ``time_conditioning=True`` it is DiT without class conditioning (Peebles & Xie 2023,
Sec. 3.2, adaLN-Zero): a time embedding ``c`` (sinusoid of ``time_embed_scale * t`` -> Dense ->
SiLU -> Dense, as DiT's ``TimestepEmbedder``) modulates every block through shift, scale and
gate vectors. Following l-DAE (Chen et al. 2024, Sec. 3 / App. A, docs/methods.md C.2) the per-block
modulation is a 2-layer MLP ``SiLU -> Dense(hidden_size // 4) -> SiLU -> Dense(6 hidden_size)``
whose hidden width is a quarter of the model width; this is our reading of "a 2-layer MLP with
1/4 hidden size" (the paper gives no code). The last Dense of each modulation and the output
head are zero-initialised, so at initialisation every block is the identity and ``out == 0``.

With ``time_conditioning=False`` (MAE-style) the blocks are pre-LN Transformer blocks with
affine LayerNorms, ``t`` is ignored (it is still validated for shape so call sites stay
uniform), and the head is still zero-initialised, so ``out == 0`` at initialisation too.

Tokens are the ``P x P`` patches in row-major order plus fixed 2-D sin-cos position embeddings
(MAE's ``get_2d_sincos_pos_embed``: first half of the width encodes the column, second half the
row, each as ``[sin, cos]``). The head maps each token to ``P P C_out`` pixels in ``(p, q, c)``
order and un-patchifies (DiT's ``unpatchify``). Parameters, the residual stream, the
LayerNorms, the softmax and the head are float32; attention and MLP matmuls run in ``dtype``.
"""

import functools
from typing import Any

import einops
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from diffssl_jax.models.layers import timestep_embedding

zeros = nn.initializers.zeros
xavier = nn.initializers.xavier_uniform()


def sincos_2d_position_embedding(grid_h, grid_w, dim):
    """Fixed 2-D sin-cos position embeddings.

    Maths: for position ``u`` along one axis, ``[sin(u w_k), cos(u w_k)]`` with
    ``w_k = 10000^(-k / (dim / 4))``, ``k < dim / 4``; column part then row part (Vaswani et al.
    2017, Sec. 3.5; He et al. 2022, MAE).

    Args:
      grid_h: number of patch rows ``h``.
      grid_w: number of patch columns ``w``.
      dim: embedding width, a multiple of 4.

    Returns:
      ``[h, w, dim]`` float32 numpy array.
    """
    if dim % 4:
        raise ValueError(f"The 2-D sin-cos embedding needs a width divisible by 4, got {dim}.")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim // 4))

    def embed_1d(positions):
        angles = positions[:, None] * omega[None]
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    cols = np.broadcast_to(embed_1d(np.arange(grid_w))[None], (grid_h, grid_w, dim // 2))
    rows = np.broadcast_to(embed_1d(np.arange(grid_h))[:, None], (grid_h, grid_w, dim // 2))
    return np.concatenate([cols, rows], axis=-1).astype(np.float32)


def _layer_norm(x, affine, name):
    norm = nn.LayerNorm(
        epsilon=1e-6, use_scale=affine, use_bias=affine, dtype=jnp.float32, name=name
    )
    return norm(x.astype(jnp.float32))


def _modulate(x, shift, scale):
    if shift is None:
        return x
    return x * (1.0 + scale[:, None, :]) + shift[:, None, :]


class AdaLNModulation(nn.Module):
    """``c [B, E] -> num_chunks`` vectors ``[B, hidden]``; zero at initialisation (adaLN-Zero).

    A block's six chunks are in DiT's order: shift, scale, gate of the attention branch, then
    shift, scale, gate of the MLP branch.
    """

    hidden_size: int
    num_chunks: int

    @nn.compact
    def __call__(self, c):
        h = nn.Dense(max(self.hidden_size // 4, 1), kernel_init=xavier, name="hidden")(nn.silu(c))
        h = nn.Dense(self.num_chunks * self.hidden_size, kernel_init=zeros, name="out")(nn.silu(h))
        return jnp.split(h, self.num_chunks, axis=-1)


class ViTBlock(nn.Module):
    """Pre-LN Transformer block, adaLN-Zero modulated when ``c`` is given (Peebles & Xie 2023)."""

    hidden_size: int
    num_heads: int
    mlp_ratio: float
    dropout: float
    dtype: Any

    @nn.compact
    def __call__(self, x, c, train):
        affine = c is None  # MAE-style block: affine LayerNorms, no modulation, unit gates
        shift1 = scale1 = shift2 = scale2 = None
        gate1 = gate2 = 1.0
        if not affine:
            mods = AdaLNModulation(self.hidden_size, 6, name="adaLN")(c)
            shift1, scale1, gate1, shift2, scale2, gate2 = mods
            gate1, gate2 = gate1[:, None, :], gate2[:, None, :]
        h = _modulate(_layer_norm(x, affine, "norm1"), shift1, scale1).astype(self.dtype)
        h = nn.MultiHeadDotProductAttention(
            self.num_heads,
            dtype=self.dtype,
            dropout_rate=self.dropout,
            deterministic=not train,
            kernel_init=xavier,
            force_fp32_for_softmax=True,
            name="attn",
        )(h)
        x = x + gate1 * h.astype(jnp.float32)
        h = _modulate(_layer_norm(x, affine, "norm2"), shift2, scale2).astype(self.dtype)
        dense = functools.partial(nn.Dense, dtype=self.dtype, kernel_init=xavier)
        h = nn.gelu(dense(int(self.hidden_size * self.mlp_ratio), name="mlp_in")(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = dense(self.hidden_size, name="mlp_out")(h)
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return x + gate2 * h.astype(jnp.float32)


class ViT(nn.Module):
    """ViT/DiT: ``(x [B, H, W, C], t [B]) -> (out [B, H, W, C_out], features)``.

    Attributes:
      hidden_size: token width (l-DAE DiT-L: 1024); a multiple of 4 and of ``num_heads``.
      depth: number of blocks (l-DAE: 24).
      num_heads: attention heads (l-DAE: 16).
      patch_size: patch side ``P`` (l-DAE: 16).
      mlp_ratio: MLP width over ``hidden_size``.
      encoder_depth: blocks counted as the encoder (l-DAE "ViT-1/2L": 12 of 24); None means
        ``depth // 2``.
      time_conditioning: adaLN-Zero time conditioning (DiT / l-DAE); False for MAE (t ignored).
      out_channels: output channels; None means the input's channel count.
      dropout: attention-weight, MLP-hidden and MLP-output dropout (only with ``train=True``).
      time_embed_scale: ``t`` in [0, 1] is multiplied by this before the sinusoid (DiT's
        integer steps; l-DAE's ``t = s / 999`` then maps to ``1000 s / 999``).
      frequency_dim: width of the sinusoidal time features (DiT: 256).
      dtype: compute dtype of the attention and MLP matmuls.
    """

    hidden_size: int
    depth: int
    num_heads: int
    patch_size: int = 16
    mlp_ratio: float = 4.0
    encoder_depth: int | None = None
    time_conditioning: bool = True
    out_channels: int | None = None
    dropout: float = 0.0
    time_embed_scale: float = 1000.0
    frequency_dim: int = 256
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, t, *, train=False):
        """Runs the network.

        Args:
          x: ``[B, H, W, C]`` float images, ``H`` and ``W`` multiples of ``patch_size``.
          t: ``[B]`` times in [0, 1] (validated but unused without time conditioning).
          train: enables dropout (pass ``rngs={"dropout": rng}`` when dropout > 0).

        Returns:
          ``out``: ``[B, H, W, C_out]`` float32, zero at initialisation.
          ``features``: ``tokens`` (patch embedding plus position embedding, the input of
          block 0), ``block_0 ... block_{depth-1}`` (each block's output), and ``encoder``
          (``block_{encoder_depth-1}`` through a parameter-free LayerNorm, for probes); all
          ``[B, H/P, W/P, hidden_size]`` float32.
        """
        encoder_depth = self._check_config()
        self._check_inputs(x, t)
        batch, height, width, channels = x.shape
        grid_h, grid_w, p = height // self.patch_size, width // self.patch_size, self.patch_size
        dtype = jnp.dtype(self.dtype)
        h = nn.Conv(
            self.hidden_size, (p, p), strides=p, padding="VALID", dtype=dtype, name="patch_embed"
        )(x.astype(dtype))
        h = h.astype(jnp.float32) + sincos_2d_position_embedding(grid_h, grid_w, self.hidden_size)
        grid = lambda tokens: tokens.reshape(batch, grid_h, grid_w, self.hidden_size)  # noqa: E731
        features = {"tokens": h}
        h = h.reshape(batch, grid_h * grid_w, self.hidden_size)
        c = self._embed(t) if self.time_conditioning else None
        for i in range(self.depth):
            h = ViTBlock(
                self.hidden_size,
                self.num_heads,
                self.mlp_ratio,
                self.dropout,
                dtype,
                name=f"block_{i}",
            )(h, c, train)
            features[f"block_{i}"] = grid(h)
            if i == encoder_depth - 1:
                features["encoder"] = grid(_layer_norm(h, False, "encoder_norm"))
        h = _layer_norm(h, not self.time_conditioning, "final_norm")
        if self.time_conditioning:
            shift, scale = AdaLNModulation(self.hidden_size, 2, name="final_adaLN")(c)
            h = _modulate(h, shift, scale)
        out_channels = self.out_channels or channels
        h = nn.Dense(p * p * out_channels, kernel_init=zeros, name="head")(h)
        out = einops.rearrange(
            h, "b (h w) (p q c) -> b (h p) (w q) c", h=grid_h, p=p, q=p, c=out_channels
        )
        return out, features

    def _embed(self, t):
        """``[B]`` times -> ``[B, hidden_size]`` float32 embedding (DiT's TimestepEmbedder)."""
        emb = timestep_embedding(t * self.time_embed_scale, self.frequency_dim)
        normal = nn.initializers.normal(0.02)
        emb = nn.Dense(self.hidden_size, kernel_init=normal, name="time_embed_0")(emb)
        return nn.Dense(self.hidden_size, kernel_init=normal, name="time_embed_1")(nn.silu(emb))

    def _check_config(self):
        """Raises ValueError on a configuration that cannot build; returns the encoder depth."""
        if self.depth < 1 or self.num_heads < 1 or self.patch_size < 1:
            raise ValueError(
                f"ViT: depth, num_heads and patch_size must be >= 1; got {self.depth}, "
                f"{self.num_heads} and {self.patch_size}."
            )
        if self.hidden_size % 4 or self.hidden_size % self.num_heads:
            raise ValueError(
                f"ViT: hidden_size={self.hidden_size} must be a multiple of 4 (2-D sin-cos "
                f"position embedding) and of num_heads={self.num_heads}."
            )
        encoder_depth = self.depth // 2 if self.encoder_depth is None else self.encoder_depth
        if not 1 <= encoder_depth <= self.depth:
            raise ValueError(
                f"ViT: encoder_depth must be in [1, depth={self.depth}]; got {encoder_depth} "
                "(None means depth // 2, which needs depth >= 2)."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ViT: dropout must be in [0, 1); got {self.dropout}.")
        return encoder_depth

    def _check_inputs(self, x, t):
        """Raises ValueError on input shapes the network cannot take (static under jit)."""
        if x.ndim != 4 or not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(
                f"ViT: x must be float images [B, H, W, C]; got shape {x.shape}, dtype "
                f"{x.dtype}. Add a batch axis (x[None]) or a channel axis (x[..., None])."
            )
        batch, height, width = x.shape[:3]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"ViT: image size {height}x{width} is not divisible by "
                f"patch_size={self.patch_size}; resize or crop the images, or change patch_size."
            )
        if jnp.shape(t) != (batch,):
            raise ValueError(
                f"ViT: t must have shape [B] = ({batch},), one time in [0, 1] per image; got "
                f"{jnp.shape(t)}. For one shared time use jnp.full(({batch},), t)."
            )
