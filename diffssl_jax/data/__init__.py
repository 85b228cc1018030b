"""Data: random-access sources and the one grain pipeline that batches them."""

from diffssl_jax.data.pipeline import make_dataset, make_iterator, validate_batch
from diffssl_jax.data.sources import (
    ArraySource,
    DigitsSource,
    TfdsSource,
    make_source,
    resize_bilinear,
    source_for,
)

__all__ = [
    "ArraySource",
    "DigitsSource",
    "TfdsSource",
    "make_dataset",
    "make_iterator",
    "make_source",
    "resize_bilinear",
    "source_for",
    "validate_batch",
]
