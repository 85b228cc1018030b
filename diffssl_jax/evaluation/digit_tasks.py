"""Labels measured on the digits: segmentation maps and fine attributes (docs/methods.md F).

Intensity is the image mapped from [-1, 1] to [0, 1]; "ink" is a pixel of intensity
>= `INK_THRESHOLD` (0.5). Pixel coordinates: `x` is the column (rightwards) and `y` the row
counted upwards, so a positive slant means the top of the digit leans right.
"""

import numpy as np

INK_THRESHOLD = 0.5
NUM_DIGIT_CLASSES = 10
NUM_SEGMENTATION_CLASSES = 1 + NUM_DIGIT_CLASSES  # background, then one class per digit
ATTRIBUTE_NAMES = ("class", "ink_mass", "slant", "width", "height")


def _check(images, labels) -> tuple[np.ndarray, np.ndarray]:
    """Intensities `[N, H, W]` in [0, 1] and labels `[N]` int, or a ValueError."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or images.shape[-1] != 1 or len(images) == 0:
        raise ValueError(f"images must be non-empty grey [N, H, W, 1], got shape {images.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"images must be float in [-1, 1], got dtype {images.dtype}")
    if np.nanmin(images) < -1 - 1e-6 or np.nanmax(images) > 1 + 1e-6 or np.isnan(images).any():
        raise ValueError("images must lie in [-1, 1] (the library's convention)")
    if labels.shape != images.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be int [{len(images)}], got {labels.dtype} {labels.shape}")
    if labels.min() < 0 or labels.max() >= NUM_DIGIT_CLASSES:
        raise ValueError(f"labels must lie in [0, {NUM_DIGIT_CLASSES}), got {np.unique(labels)}")
    return (images[..., 0].astype(np.float64) + 1.0) / 2.0, labels.astype(np.int32)


def digit_segmentation_labels(images, labels) -> np.ndarray:
    """Per-pixel labels: 0 where intensity < 0.5, else 1 + the digit's class (11 classes).

    Args:
        images: `[N, H, W, 1]` float in [-1, 1] (16x16 in the protocol).
        labels: `[N]` int digit classes in [0, 10).

    Returns:
        `[N, H, W]` int32 in [0, 11).
    """
    intensity, labels = _check(images, labels)
    ink = intensity >= INK_THRESHOLD
    return np.where(ink, 1 + labels[:, None, None], 0).astype(np.int32)


def _slant(intensity: np.ndarray) -> np.ndarray:
    """cov(x, y) / var(y) of the intensity-weighted pixel coordinates; 0 without ink."""
    height, width = intensity.shape[1:]
    y, x = np.meshgrid(height - 1 - np.arange(height), np.arange(width), indexing="ij")
    mass = intensity.sum((1, 2))
    safe = np.where(mass > 0, mass, 1.0)
    mean_x = (intensity * x).sum((1, 2)) / safe
    mean_y = (intensity * y).sum((1, 2)) / safe
    dx, dy = x - mean_x[:, None, None], y - mean_y[:, None, None]
    cov = (intensity * dx * dy).sum((1, 2)) / safe
    var = (intensity * dy * dy).sum((1, 2)) / safe
    return np.where(var > 0, cov / np.where(var > 0, var, 1.0), 0.0)


def _extent(ink: np.ndarray, axis: int) -> np.ndarray:
    """Length in pixels of the ink's bounding box along `axis` of `[N, H, W]` (0 if none)."""
    present = ink.any(axis=axis)  # [N, W] for axis=1 (columns), [N, H] for axis=2 (rows)
    size = present.shape[1]
    first = np.argmax(present, axis=1)
    last = size - 1 - np.argmax(present[:, ::-1], axis=1)
    return np.where(present.any(1), last - first + 1, 0)


def digit_attributes(images, labels) -> dict[str, np.ndarray]:
    """Coarse and fine attributes of each digit (docs/methods.md F; DiTi's probes).

    Args:
        images: `[N, H, W, 1]` float in [-1, 1].
        labels: `[N]` int digit classes.

    Returns:
        `{"class": [N] int32, "ink_mass": [N], "slant": [N], "width": [N], "height": [N]}`
        (floats are float32): ink mass = mean [0, 1] intensity; slant = cov(x, y) / var(y)
        of the intensity-weighted coordinates (the shear x = x0 + s y has slant s); width and
        height of the bounding box of the ink (intensity >= 0.5), in pixels. An image
        without ink has slant, width and height 0.
    """
    intensity, labels = _check(images, labels)
    ink = intensity >= INK_THRESHOLD
    return {
        "class": labels,
        "ink_mass": intensity.mean((1, 2)).astype(np.float32),
        "slant": _slant(intensity).astype(np.float32),
        "width": _extent(ink, axis=1).astype(np.float32),
        "height": _extent(ink, axis=2).astype(np.float32),
    }
