"""The `Recipe` interface every method implements."""

from typing import Callable, NamedTuple


class Recipe(NamedTuple):
    """What the shared training and evaluation stack needs from a method.

    Attributes:
        init: `(rng, batch) -> params`.
        loss: `(params, batch, rng) -> (scalar loss, {name: scalar})` on the global batch.
        features: `(params, images [B, H, W, C], rng, **at) -> {name: [B, h, w, c]}`.
        sample: `(params, rng, num) -> images [num, H, W, C]` in [-1, 1], or None for methods
            that are not generative.
        restore: `(params, images, rng, *, t) -> (corrupted, restored)` images in [-1, 1] for
            methods that restore a corruption (figures), or None.
    """

    init: Callable
    loss: Callable
    features: Callable
    sample: Callable | None
    restore: Callable | None = None
