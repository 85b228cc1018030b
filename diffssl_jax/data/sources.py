"""Random-access sources: `__len__` and `__getitem__(i) -> {'image': [H, W, C] float32 in
[-1, 1], 'label': [] int32, ...}` (no batch axis), read by `grain.MapDataset.source(source)`.
Sources do numpy work only, so grain threads and workers never touch an accelerator.
`ArraySource` lives in `arrays.py`, `CanvasSource` in `canvases.py`, `PhantomSource` in
`phantoms.py`, `PatchSource` in `patches.py`, `TfdsSource` in `tfds_source.py` and the
bilinear resize in `resize.py`; this module picks one by name.
"""

import functools

import numpy as np

from diffssl_jax.data.arrays import ArraySource
from diffssl_jax.data.canvases import CanvasSource
from diffssl_jax.data.patches import PatchSource
from diffssl_jax.data.phantoms import PhantomSource
from diffssl_jax.data.resize import resize_bilinear
from diffssl_jax.data.tfds_source import TfdsSource

DIGITS_SPLITS = ("train", "test", "all", "validation", "train_minus_validation")
DIGITS_TEST_SIZE = 450  # docs/methods.md F: stratified 1347 train / 450 test, seed 0
DIGITS_VALIDATION_SIZE = 270  # 20 % of the train digits, for choices made on validation


@functools.cache
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits: `images [1797, 8, 8]` in 0..16 and `labels [1797]`."""
    import sklearn.datasets  # Here, not at the top: importing sklearn takes seconds.

    bunch = sklearn.datasets.load_digits()
    return bunch.images, bunch.target.astype(np.int32)


@functools.cache
def _digits_images(image_size: int) -> np.ndarray:
    """`[1797, S, S, 1]` float32 in [-1, 1], computed once per size."""
    raw, _ = _load_digits()
    x = resize_bilinear(raw[..., None], image_size, image_size) / 16.0
    return np.clip(2.0 * x - 1.0, -1.0, 1.0).astype(np.float32)


@functools.cache
def _digits_indices(split: str) -> np.ndarray:
    """Sorted indices of a digits split.

    train / test: stratified by class, seed 0. validation: `DIGITS_VALIDATION_SIZE` of the
    train digits, stratified by class, seed 0; train_minus_validation: the other train digits.
    """
    import sklearn.model_selection

    _, labels = _load_digits()
    everything = np.arange(len(labels))
    if split == "all":
        return everything
    train, test = sklearn.model_selection.train_test_split(
        everything, test_size=DIGITS_TEST_SIZE, stratify=labels, random_state=0
    )
    if split in ("train", "test"):
        return np.sort(train if split == "train" else test)
    rest, validation = sklearn.model_selection.train_test_split(
        np.sort(train),
        test_size=DIGITS_VALIDATION_SIZE,
        stratify=labels[np.sort(train)],
        random_state=0,
    )
    return np.sort(validation if split == "validation" else rest)


class DigitsSource(ArraySource):
    """scikit-learn's bundled handwritten digits, bilinearly resized, in [-1, 1].

    The protocol of docs/methods.md part F: 1797 images 8x8 (0..16) resized to 16x16, scaled
    by /16 to [0, 1] then to [-1, 1]; stratified split of 1347 train / 450 test, seed 0.

    Args:
      split: 'train' (1347), 'test' (450), 'all' (1797), or 'validation' (270 of the train
        digits) and 'train_minus_validation' (the other 1077), for choices made on validation
        (a representation is pretrained on 'train'; its readout is chosen by probes fitted on
        'train_minus_validation' and scored on 'validation').
      image_size: output side length `S` (16 in the protocol).

    Attributes:
      images: `[N, S, S, 1]` float32 in [-1, 1].
      labels: `[N]` int32 classes 0..9.
      indices: `[N]` positions in `sklearn.datasets.load_digits()`, sorted.
    """

    def __init__(self, split: str, image_size: int = 16):
        if split not in DIGITS_SPLITS:
            raise ValueError(f"unknown digits split {split!r}; valid splits: {DIGITS_SPLITS}.")
        if int(image_size) < 1:
            raise ValueError(f"image_size must be a positive integer; got {image_size}.")
        self.split, self.image_size = split, int(image_size)
        self.indices = index = _digits_indices(split)
        super().__init__(_digits_images(self.image_size)[index], _load_digits()[1][index])

    def __reduce__(self):
        # Grain worker processes rebuild the source from its arguments, not its arrays.
        return DigitsSource, (self.split, self.image_size)


def source_for(data_config, split: str | None = None):
    """The source a config's `data` group names: `make_source` with its name, data_dir,
    image_size and label_key, at `split` (default the group's own training split).

    `data.crop` and `data.attribute_keys` exist only in the configs that use them
    (`configs/diti/celeba64.py`); where absent they mean no crop and no attributes, so the
    `config.json` of workdirs saved before these keys existed still loads.
    """
    optional = {
        key: tuple(data_config[key]) or None
        for key in ("crop", "attribute_keys")
        if key in data_config
    }
    return make_source(
        data_config.name,
        split or data_config.split,
        data_dir=data_config.data_dir or None,
        image_size=data_config.image_size or None,
        label_key=data_config.label_key,
        **optional,
    )


def make_source(
    name: str,
    split: str,
    data_dir: str | None = None,
    image_size: int | None = None,
    label_key: str | None = "label",
    crop: tuple[int, int, int, int] | None = None,
    attribute_keys: tuple[str, ...] | None = None,
):
    """The source for a config's `data` group: 'digits', 'canvases', 'phantoms' and 'patches'
    are bundled, any other name is tfds.

    Args:
      name: 'digits', 'canvases' (several digits per canvas, `canvases.CanvasSource`),
        'phantoms' (random ellipse phantoms), 'patches' (natural-image patches,
        `patches.PatchSource`) or a tfds dataset name.
      split: split name ('train', 'test', 'all' for digits; 'train', 'test' for phantoms;
        'train', 'validation', 'test' for canvases and patches; any tfds split otherwise).
      data_dir: tfds data_dir (ignored for the bundled sources); None means tfds' default.
      label_key: the tfds feature holding the class; "" or None for unlabelled data
        (MoNuSeg).
      image_size: square output size; None keeps the dataset's own (16 for digits, 32 for
        canvases and phantoms, 16 for patches: there the side of the cut patches).
      crop: tfds only: `(top, left, height, width)` window cut before resizing
        (`celeba.CROP` for CelebA).
      attribute_keys: tfds only: boolean features of `example['attributes']` to return as
        `attributes [K]` (`celeba.ATTRIBUTES`: CelebA's 40).

    Returns:
      A `DigitsSource`, `CanvasSource`, `PhantomSource`, `PatchSource` or `TfdsSource`.
    """
    if name in ("digits", "canvases", "phantoms", "patches") and (crop or attribute_keys):
        raise ValueError(f"crop and attribute_keys apply to tfds datasets, not to {name!r}.")
    if name == "digits":
        return DigitsSource(split, image_size=16 if image_size is None else image_size)
    if name == "canvases":
        return CanvasSource(split, DigitsSource, 32 if image_size is None else image_size)
    if name == "phantoms":
        return PhantomSource(split, size=32 if image_size is None else image_size)
    if name == "patches":
        return PatchSource(split, patch_size=16 if image_size is None else image_size)
    return TfdsSource(
        name,
        split,
        data_dir=data_dir,
        image_size=image_size,
        label_key=label_key or None,
        crop=crop,
        attribute_keys=attribute_keys,
    )
