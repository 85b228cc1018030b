"""Data: random-access sources and the one grain pipeline that batches them."""

from diffssl_jax.data.arrays import ArraySource
from diffssl_jax.data.canvases import CanvasSource
from diffssl_jax.data.patches import PatchSource
from diffssl_jax.data.pipeline import make_dataset, make_iterator, validate_batch
from diffssl_jax.data.resize import resize_bilinear
from diffssl_jax.data.sources import (
    DigitsSource,
    TfdsSource,
    make_source,
    source_for,
)

__all__ = [
    "ArraySource",
    "CanvasSource",
    "DigitsSource",
    "PatchSource",
    "TfdsSource",
    "make_dataset",
    "make_iterator",
    "make_source",
    "resize_bilinear",
    "source_for",
    "validate_batch",
]
