"""Downstream heads on frozen features: the per-pixel MLP classifier and the linear probe head.

`PixelMLP` is the datasetGAN / ddpm-segmentation / MDM pixel classifier (docs/methods.md A.6)
and `PixelMLPEnsemble` M independent copies of it evaluated in one call;
`LinearHead` is the MAE / l-DAE linear-probe head (docs/methods.md C.2): parameter-free
BatchNorm followed by one linear layer, on features pooled beforehand.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# PyTorch BatchNorm1d defaults (momentum 0.1 on the new statistic, eps 1e-5), as in the
# reference code; Flax's `momentum` weighs the old running statistic, hence 0.9. (PyTorch
# tracks the unbiased batch variance, Flax the biased one: a factor B/(B-1), 1.016 at B=64.)
_TORCH_BN_MOMENTUM = 0.9
_TORCH_BN_EPS = 1e-5


def pixel_mlp_hidden(num_classes: int) -> tuple[int, int]:
    """Hidden widths of the pixel classifier (MDM `src/pixel_classifier.py`, docs/methods.md A.6).

    Args:
        num_classes: number of segmentation classes.

    Returns:
        (128, 32) below 30 classes, (256, 128) from 30 classes on (FFHQ-34).
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    return (256, 128) if num_classes >= 30 else (128, 32)


class PixelMLP(nn.Module):
    """Per-pixel classifier: (Dense -> ReLU -> BatchNorm) x 2 -> Dense.

    Weights N(0, 0.02), biases 0 (the `init_weights('normal', 0.02)` of the reference);
    BatchNorm with PyTorch's momentum and eps. Use `hidden=pixel_mlp_hidden(num_classes)`
    to follow the reference's width rule.

    Attributes:
        num_classes: output logits per pixel.
        hidden: widths of the two hidden layers.
    """

    num_classes: int
    hidden: Sequence[int] = (128, 32)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, mask: jax.Array | None = None) -> jax.Array:
        """Logits for a batch of pixel feature vectors.

        Args:
            x: [P, D] per-pixel features.
            train: BatchNorm uses (and updates) batch statistics when True, running ones
                otherwise; call `apply(..., mutable=["batch_stats"])` when True.
            mask: optional [P] bool; pixels where False are left out of the BatchNorm batch
                statistics (padding in a partial batch). Their logits are still returned.

        Returns:
            [P, num_classes] logits.
        """
        if x.ndim != 2:
            raise ValueError(f"PixelMLP expects [P, D] features, got shape {x.shape}")
        bn_mask = None if mask is None else mask[:, None]
        for width in self.hidden:
            x = nn.Dense(width, kernel_init=nn.initializers.normal(0.02))(x)
            x = nn.relu(x)
            x = nn.BatchNorm(
                use_running_average=not train,
                momentum=_TORCH_BN_MOMENTUM,
                epsilon=_TORCH_BN_EPS,
            )(x, mask=bn_mask)
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(0.02))(x)


class PixelMLPEnsemble(nn.Module):
    """M independent `PixelMLP`s (own initialisation, own BatchNorm statistics), run together.

    A lifted `nn.vmap` over `PixelMLP`: every parameter and batch statistic gains a leading
    model axis [M, ...] under the name "members". This is the ensemble of docs/methods.md A.6.

    Attributes:
        num_models: M.
        num_classes: output logits per pixel.
        hidden: widths of the two hidden layers (see `pixel_mlp_hidden`).
    """

    num_models: int
    num_classes: int
    hidden: Sequence[int] = (128, 32)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, mask: jax.Array | None = None) -> jax.Array:
        """Logits of every member.

        Args:
            x: [M, P, D], a batch of pixels per member, or [P, D] shared by all members.
            train: as in `PixelMLP`.
            mask: optional [M, P] bool, as in `PixelMLP`.

        Returns:
            [M, P, num_classes] logits.
        """
        if x.ndim == 2:
            x = jnp.broadcast_to(x, (self.num_models, *x.shape))
        if x.ndim != 3 or x.shape[0] != self.num_models:
            raise ValueError(f"expects [{self.num_models}, P, D] or [P, D], got {x.shape}")
        members = nn.vmap(
            PixelMLP,
            variable_axes={"params": 0, "batch_stats": 0},
            split_rngs={"params": True},
            in_axes=(0, None, 0),
            axis_size=self.num_models,
        )
        return members(self.num_classes, tuple(self.hidden), name="members")(x, train, mask)


class LinearHead(nn.Module):
    """Linear-probe head: parameter-free BatchNorm -> Dense (MAE protocol, docs/methods.md C.2).

    The BatchNorm has no scale or bias (`affine=False`, eps 1e-6, as MAE's
    `main_linprobe.py`); it only standardises the pooled features with batch statistics in
    training and running statistics at test time. The Dense kernel starts at
    truncated-normal(0.01) and the bias at 0, as MAE's head.

    Attributes:
        num_classes: number of logits.
    """

    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Logits for pooled features.

        Args:
            x: [B, D] pooled features (global average pooling happens before the head).
            train: batch statistics when True (needs `mutable=["batch_stats"]`).

        Returns:
            [B, num_classes] logits.
        """
        if x.ndim != 2:
            raise ValueError(f"LinearHead expects pooled [B, D] features, got shape {x.shape}")
        x = nn.BatchNorm(
            use_running_average=not train,
            use_scale=False,
            use_bias=False,
            momentum=_TORCH_BN_MOMENTUM,
            epsilon=1e-6,
        )(x)
        kernel_init = nn.initializers.truncated_normal(0.01)
        return nn.Dense(self.num_classes, kernel_init=kernel_init)(x)
