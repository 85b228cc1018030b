"""In-memory examples as a random-access source: `ArraySource` (images, labels, extras).

The base of the bundled sources (`sources.DigitsSource`, `phantoms.PhantomSource`) and the
source of any array a caller holds (EM's posterior samples).
"""

import numpy as np

_RANGE_TOLERANCE = 1e-6


def _check_images(images: np.ndarray) -> None:
    """Raises ValueError unless `images` is a non-empty float `[N, H, W, C]` in [-1, 1]."""
    if images.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C]; got shape {images.shape}.")
    if len(images) == 0:
        raise ValueError("images is empty: a source needs at least one example.")
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(
            f"images must be float in [-1, 1]; got dtype {images.dtype}; "
            "scale uint8 with x/127.5 - 1"
        )
    lo, hi = float(np.min(images)), float(np.max(images))
    if not (-1 - _RANGE_TOLERANCE <= lo and hi <= 1 + _RANGE_TOLERANCE):  # NaN fails too
        raise ValueError(
            f"images must be float in [-1, 1]; got range [{lo:.4g}, {hi:.4g}]; "
            "scale uint8 with x/127.5 - 1"
        )


class ArraySource:
    """In-memory examples: `images [N, H, W, C]` in [-1, 1], optional `labels [N]`, extras.

    Attributes:
      images: `[N, H, W, C]` float32.
      labels: `[N]` int32, or None.
      extras: `{key: [N, ...]}` arrays, each example's slice passed through under `key`.
    """

    def __init__(self, images, labels=None, **extras):
        images = np.asarray(images)
        _check_images(images)
        n = len(images)
        self.images = images.astype(np.float32, copy=False)
        self.labels = None
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(
                    f"labels must be integers of shape ({n},) to match images; "
                    f"got {labels.dtype} {labels.shape}."
                )
            self.labels = labels.astype(np.int32, copy=False)
        self.extras = {}
        for key, value in extras.items():
            value = np.asarray(value)
            if value.ndim == 0 or len(value) != n:
                raise ValueError(
                    f"extra array '{key}' must have {n} rows (one per image); "
                    f"got shape {value.shape}."
                )
            self.extras[key] = value

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        example = {"image": self.images[index]}
        if self.labels is not None:
            example["label"] = np.asarray(self.labels[index])
        for key, value in self.extras.items():
            example[key] = np.asarray(value[index])
        return example

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, image_shape={self.images.shape[1:]})"
