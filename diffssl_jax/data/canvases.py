"""Canvases of several digits: a segmentation task that needs spatial features
(docs/methods.md F).

Each canvas is `CANVAS_SIZE` x `CANVAS_SIZE` (32x32), grey, in [-1, 1] like `DigitsSource`,
and holds 2, 3 or 4 (uniformly) distinct digits of scikit-learn's bundled set, each the
8x8 scan bilinearly resized to `DIGIT_SIZE` x `DIGIT_SIZE` (12x12, `DigitsSource(...,
image_size=12)`) and pasted with its top-left corner uniform over the canvas.

Composite and overlap rule (max intensity): every placed digit is a layer that is -1 outside
its 12x12 box; the canvas is the pixelwise maximum of the layers (background -1), and a pixel
belongs to the digit whose layer is largest there, ties going to the digit drawn first. So
the canvas's intensity at a pixel is exactly its owner's.

Per-pixel labels (`segmentation`, the single-digit task's rule, docs/methods.md F): 0 where
the canvas's intensity `(x + 1) / 2` is below `INK_THRESHOLD` (0.5), else 1 + the owner's
class: 11 classes. (`evaluation.digit_tasks` holds the same threshold for single digits.)

Placement: a digit's position is redrawn (at most `PLACEMENT_TRIES` times) until at most
`MAX_SHARED_INK` (a quarter) of its ink pixels land on ink already drawn; if no draw passes,
the draw sharing the fewest ink pixels is kept. Digits therefore often touch and sometimes
overlap, but each keeps most of its strokes.

Splits never share a source digit: 'test' canvases draw from the digits' test split (450);
'validation' from the digits' own 'validation' split (270 train digits, stratified by
class, seed 0; `sources.DigitsSource`), 'train' from the remaining train digits. Sizes:
`SIZES` canvases; each split has its own fixed seed (`SPLIT_SEEDS`), so the canvases are a
pure function of the split and the canvas size. The digits come in as
`sources.DigitsSource` (the `digits` argument: `sources.make_source("canvases", split)`
passes it), since `sources` imports this module.
"""

import functools

import numpy as np

from diffssl_jax.data.arrays import ArraySource

CANVAS_SIZE = 32
DIGIT_SIZE = 12
MIN_DIGITS, MAX_DIGITS = 2, 4
SIZES = {"train": 2000, "validation": 500, "test": 500}
SPLIT_SEEDS = {"train": 0, "validation": 1, "test": 2}
INK_THRESHOLD = 0.5  # on (x + 1) / 2, as `evaluation.digit_tasks.INK_THRESHOLD`
MAX_SHARED_INK = 0.25
PLACEMENT_TRIES = 50
NUM_CLASSES = 11  # background, then 1 + digit class


def is_ink(images) -> np.ndarray:
    """Boolean mask of the pixels of `images` (in [-1, 1]) whose `(x + 1) / 2 >= 0.5`."""
    return (np.asarray(images, np.float64) + 1.0) / 2.0 >= INK_THRESHOLD


@functools.cache
def digit_pool(digits, split: str) -> np.ndarray:
    """Sorted indices in `sklearn.datasets.load_digits()` of the digits a split draws from.

    Args:
      digits: `sources.DigitsSource` (its train_minus_validation, validation and test splits).
      split: 'train', 'validation' or 'test'.

    Raises:
      ValueError: for another split.
    """
    if split not in SIZES:
        raise ValueError(f"unknown canvases split {split!r}; valid splits: {tuple(SIZES)}.")
    pools = {"train": "train_minus_validation", "validation": "validation", "test": "test"}
    return digits(pools[split]).indices


def place_digits(rng: np.random.Generator, ink: np.ndarray, num_canvases: int, canvas_size: int):
    """Random placements of the pool's digits on `num_canvases` canvases (module docstring).

    Args:
      rng: the split's generator.
      ink: `[P, s, s]` bool ink masks of the pool's digits.
      num_canvases: N.
      canvas_size: side S of a canvas, >= s.

    Returns:
      `(which, top, left)`, each `[N, MAX_DIGITS]` int32 in drawing order: positions in the
      pool (-1 for an empty slot, always after the used ones) and the top-left corners.
    """
    size = ink.shape[1]
    which = np.full((num_canvases, MAX_DIGITS), -1, np.int32)
    top, left = np.zeros_like(which), np.zeros_like(which)
    counts = ink.sum((1, 2))
    for n in range(num_canvases):
        k = int(rng.integers(MIN_DIGITS, MAX_DIGITS + 1))
        drawn = np.zeros((canvas_size, canvas_size), bool)
        for j, d in enumerate(rng.choice(len(ink), k, replace=False)):
            best = None
            for _ in range(PLACEMENT_TRIES):
                y, x = rng.integers(0, canvas_size - size + 1, size=2)
                shared = int((drawn[y : y + size, x : x + size] & ink[d]).sum())
                if best is None or shared < best[0]:
                    best = (shared, y, x)
                if shared <= MAX_SHARED_INK * counts[d]:
                    break
            _, y, x = best
            drawn[y : y + size, x : x + size] |= ink[d]
            which[n, j], top[n, j], left[n, j] = d, y, x
    return which, top, left


def render_canvases(digits, classes, which, top, left, canvas_size: int):
    """Canvases and per-pixel labels from placements, under the max-intensity rule.

    Args:
      digits: `[P, s, s]` digit images in [-1, 1].
      classes: `[P]` int their classes.
      which, top, left: `[N, K]` as returned by `place_digits`.
      canvas_size: side S.

    Returns:
      `(images [N, S, S, 1] float32 in [-1, 1], segmentation [N, S, S] int32 in [0, 11))`.
    """
    num, slots = which.shape
    size = digits.shape[1]
    layers = np.full((num, slots, canvas_size, canvas_size), -1.0, np.float32)
    for n, j in zip(*np.nonzero(which >= 0), strict=True):
        y, x = top[n, j], left[n, j]
        layers[n, j, y : y + size, x : x + size] = digits[which[n, j]]
    canvas = layers.max(1)
    owner = np.take_along_axis(which, layers.argmax(1).reshape(num, -1), axis=1)
    owner_class = np.asarray(classes)[owner].reshape(canvas.shape)
    segmentation = np.where(is_ink(canvas), 1 + owner_class, 0).astype(np.int32)
    return canvas[..., None], segmentation


@functools.cache
def _canvases(digits, split: str, canvas_size: int):
    """(images, segmentation, digit indices, top, left) of a split, computed once."""
    pool = digit_pool(digits, split)
    everything = digits("all", image_size=DIGIT_SIZE)
    digits, classes = everything.images[pool, ..., 0], everything.labels[pool]
    rng = np.random.default_rng(SPLIT_SEEDS[split])
    which, top, left = place_digits(rng, is_ink(digits), SIZES[split], canvas_size)
    images, segmentation = render_canvases(digits, classes, which, top, left, canvas_size)
    indices = np.where(which >= 0, pool[np.maximum(which, 0)], -1).astype(np.int32)
    return images, segmentation, indices, top, left


class CanvasSource(ArraySource):
    """Canvases of 2-4 bundled digits with per-pixel labels (module docstring).

    Examples are `{'image': [S, S, 1], 'segmentation': [S, S] int32}`; no class label.

    Args:
      split: 'train' (2000 canvases), 'validation' (500) or 'test' (500).
      digits: `sources.DigitsSource`, the source of the bundled digits.
      canvas_size: side S (32 in the protocol), at least `DIGIT_SIZE`.

    Attributes:
      images: `[N, S, S, 1]` float32 in [-1, 1].
      segmentation: `[N, S, S]` int32: 0 background, 1 + class on a digit's ink.
      digit_indices: `[N, 4]` int32 positions in `sklearn.datasets.load_digits()` of the
        placed digits in drawing order, -1 for empty slots.
      top, left: `[N, 4]` int32 top-left corners of the placed digits' boxes.
    """

    def __init__(self, split: str, digits, canvas_size: int = CANVAS_SIZE):
        if split not in SIZES:
            raise ValueError(f"unknown canvases split {split!r}; valid splits: {tuple(SIZES)}.")
        if int(canvas_size) < DIGIT_SIZE:
            raise ValueError(f"canvas_size must be >= {DIGIT_SIZE}; got {canvas_size}.")
        self.split, self.digits, self.canvas_size = split, digits, int(canvas_size)
        images, segmentation, self.digit_indices, self.top, self.left = _canvases(
            digits, split, self.canvas_size
        )
        super().__init__(images, segmentation=segmentation)

    @property
    def segmentation(self) -> np.ndarray:
        return self.extras["segmentation"]

    def __reduce__(self):
        # Grain worker processes rebuild the source from its arguments, not its arrays.
        return CanvasSource, (self.split, self.digits, self.canvas_size)
