"""Networks: Flax Linen modules that return `(output, {feature_name: array})`."""

from diffssl_jax.models.unet import UNet, unet_decoder_channels, unet_encoder_channels

__all__ = ["UNet", "unet_decoder_channels", "unet_encoder_channels"]
