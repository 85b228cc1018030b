"""Random-access sources: `__len__` and `__getitem__(i) -> {'image': [H, W, C] float32 in
[-1, 1], 'label': [] int32, ...}` (no batch axis), read by `grain.MapDataset.source(source)`.
Sources do numpy work only, so grain threads and workers never touch an accelerator.
"""

import difflib
import functools

import numpy as np

DIGITS_SPLITS = ("train", "test", "all")
DIGITS_TEST_SIZE = 450  # methods.md F: stratified 1347 train / 450 test, seed 0
_RANGE_TOLERANCE = 1e-6


def _bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
    """Interpolation matrix `[out_size, in_size]` of a 1-D bilinear resize.

    Half-pixel centres; when shrinking, the triangle kernel is widened by the scale
    (antialiasing), exactly as `jax.image.resize(..., 'bilinear')` does.
    """
    scale = out_size / in_size
    kernel_width = max(1.0 / scale, 1.0)
    centres = (np.arange(out_size) + 0.5) / scale - 0.5
    distance = np.abs(np.arange(in_size)[None, :] - centres[:, None]) / kernel_width
    weights = np.maximum(0.0, 1.0 - distance)
    return weights / weights.sum(axis=1, keepdims=True)


def resize_bilinear(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of the spatial axes in numpy, with the numbers of `jax.image.resize`.

    Args:
      images: `[..., H, W, C]` array.
      height: output height `H'`.
      width: output width `W'`.

    Returns:
      `[..., H', W', C]` float64 array; each output pixel is a convex combination of inputs.
    """
    if images.ndim < 3:
        raise ValueError(f"images must be [..., H, W, C]; got shape {images.shape}.")
    rows = _bilinear_weights(images.shape[-3], height)
    cols = _bilinear_weights(images.shape[-2], width)
    x = np.einsum("oh,...hwc->...owc", rows, images.astype(np.float64))
    return np.einsum("pw,...owc->...opc", cols, x)


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
    """Sorted indices of a digits split; train/test are stratified by class with seed 0."""
    import sklearn.model_selection

    _, labels = _load_digits()
    everything = np.arange(len(labels))
    if split == "all":
        return everything
    train, test = sklearn.model_selection.train_test_split(
        everything, test_size=DIGITS_TEST_SIZE, stratify=labels, random_state=0
    )
    return np.sort(train if split == "train" else test)


class DigitsSource(ArraySource):
    """scikit-learn's bundled handwritten digits, bilinearly resized, in [-1, 1].

    The protocol of methods.md part F: 1797 images 8x8 (0..16) resized to 16x16, scaled
    by /16 to [0, 1] then to [-1, 1]; stratified split of 1347 train / 450 test, seed 0.

    Args:
      split: 'train' (1347), 'test' (450) or 'all' (1797).
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


def _tfds_example(raw: dict, image_key: str, label_key: str | None, image_size: int | None):
    """One tfds example as the library's dict: uint8 image -> float32 [-1, 1], int32 label."""
    if image_key not in raw:
        raise ValueError(f"example has no image key {image_key!r}; its keys are {sorted(raw)}.")
    image = np.asarray(raw[image_key])
    if image.dtype != np.uint8:
        raise ValueError(f"expected uint8 images under {image_key!r}; got {image.dtype}.")
    if image.ndim == 2:
        image = image[..., None]
    image = image.astype(np.float32) / 127.5 - 1.0
    if image_size is not None:
        image = resize_bilinear(image, image_size, image_size).astype(np.float32)
    # Numeric features pass through; strings and nested dicts cannot go to devices.
    example = {
        key: np.asarray(value)
        for key, value in raw.items()
        if key not in (image_key, label_key) and np.asarray(value).dtype.kind in "biuf"
    }
    if image_size is not None:
        # Per-pixel maps (segmentation, instances) follow the image, by nearest neighbour.
        h, w = np.asarray(raw[image_key]).shape[:2]
        rows = ((np.arange(image_size) + 0.5) * h / image_size).astype(int)
        cols = ((np.arange(image_size) + 0.5) * w / image_size).astype(int)
        for key, value in example.items():
            if value.shape[:2] == (h, w):
                example[key] = value[rows][:, cols]
    example["image"] = image
    if label_key is not None:
        if label_key not in raw:
            raise ValueError(
                f"example has no label key {label_key!r}; its keys are {sorted(raw)}; "
                "pass label_key=None for unlabelled data."
            )
        example["label"] = np.asarray(raw[label_key], dtype=np.int32)
    return example


def _unknown_dataset_message(name: str, tfds) -> str:
    names = ["digits", "phantoms", *tfds.list_builders(with_community_datasets=False)]
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    return (
        f"unknown dataset {name!r}: it is neither 'digits' nor 'phantoms' (bundled) nor a "
        f"registered tfds dataset.{hint} Set --config.data.name to one of them."
    )


def _open_tfds(name: str, split: str, data_dir: str | None):
    """`tfds.data_source` without downloads, with errors that say how to fix them."""
    import tensorflow_datasets as tfds  # Here, not at the top: only tfds datasets need it.

    from diffssl_jax.data import builders  # registers glas and monuseg with tfds

    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except tfds.core.DatasetNotFoundError as e:
        raise ValueError(_unknown_dataset_message(name, tfds)) from e
    except (NotImplementedError, KeyError, FileNotFoundError) as e:
        # Unprepared data surfaces as any of these, depending on what the directory holds;
        # NotImplementedError means no array_record files (absent, or tfrecord only).
        builder = tfds.builder(name, data_dir=data_dir)
        if builder.is_prepared() and not isinstance(e, NotImplementedError):
            raise
        root = data_dir or str(tfds.core.constants.DATA_DIR)
        if name in builders.BUILDERS:
            raise FileNotFoundError(
                f"{name!r} (split {split!r}) is not prepared in data_dir {root!r}. It needs a "
                f"manual download: `python scripts/prepare_dataset.py {name} --manual_dir=DIR "
                f"--data_dir={root}` prints where to get it, then builds it without TensorFlow."
            ) from e
        raise FileNotFoundError(
            f"tfds dataset {name!r} (split {split!r}) is not prepared as array_record in "
            f"data_dir {root!r} (searched {builder.data_dir}). Prepare it once on a machine "
            f"with TensorFlow: `tfds build {name} --data_dir={root} --file_format=array_record`"
            f", then copy {root} here, or pass --config.data.data_dir=<the directory with it>."
        ) from e


class TfdsSource:
    """A prepared (array_record) tfds dataset, converted to the library's example dict.

    Args:
      name: tfds name, e.g. 'cifar10' or 'mnist'.
      split: tfds split, e.g. 'train' or 'test[:10%]'.
      data_dir: tfds data_dir; None means tfds' default (~/tensorflow_datasets).
      image_key: feature holding the uint8 image `[H, W, C]`.
      label_key: feature holding the class, or None for unlabelled data.
      image_size: resize images (bilinear, no crop) to `[S, S, C]`; None keeps the size.

    Raises:
      FileNotFoundError: the dataset is not prepared in array_record format under data_dir.
      ValueError: unknown name, or features that do not match the keys.
    """

    def __init__(
        self,
        name: str,
        split: str,
        data_dir: str | None = None,
        image_key: str = "image",
        label_key: str | None = "label",
        image_size: int | None = None,
    ):
        if image_size is not None and int(image_size) < 1:
            raise ValueError(f"image_size must be a positive integer or None; got {image_size}.")
        self.name, self.split = name, split
        self.image_key, self.label_key = image_key, label_key
        self.image_size = None if image_size is None else int(image_size)
        self._source = _open_tfds(name, split, data_dir)
        if len(self._source) == 0:
            raise ValueError(f"tfds dataset {name!r} split {split!r} has no examples.")
        self[0]  # Fails now, by name, if the feature keys or dtypes are wrong.

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        raw = self._source[index]
        return _tfds_example(raw, self.image_key, self.label_key, self.image_size)

    def __repr__(self) -> str:
        return f"TfdsSource(name={self.name!r}, split={self.split!r}, n={len(self)})"


def source_for(data_config, split: str | None = None):
    """The source a config's `data` group names: `make_source` with its name, data_dir,
    image_size and label_key, at `split` (default the group's own training split)."""
    return make_source(
        data_config.name,
        split or data_config.split,
        data_dir=data_config.data_dir or None,
        image_size=data_config.image_size or None,
        label_key=data_config.label_key,
    )


def make_source(
    name: str,
    split: str,
    data_dir: str | None = None,
    image_size: int | None = None,
    label_key: str | None = "label",
):
    """The source for a config's `data` group: 'digits' and 'phantoms' are bundled, any other
    name is tfds.

    Args:
      name: 'digits', 'phantoms' (random ellipse phantoms) or a tfds dataset name.
      split: split name ('train', 'test', 'all' for digits; 'train', 'test' for phantoms;
        any tfds split otherwise).
      data_dir: tfds data_dir (ignored for digits and phantoms); None means tfds' default.
      label_key: the tfds feature holding the class; "" or None for unlabelled data
        (MoNuSeg).
      image_size: square output size; None keeps the dataset's own (16 for digits, 32 for
        phantoms).

    Returns:
      A `DigitsSource`, `PhantomSource` or `TfdsSource`.
    """
    if name == "digits":
        return DigitsSource(split, image_size=16 if image_size is None else image_size)
    if name == "phantoms":
        from diffssl_jax.data.phantoms import PhantomSource  # Here: phantoms imports this module.

        return PhantomSource(split, size=32 if image_size is None else image_size)
    return TfdsSource(
        name, split, data_dir=data_dir, image_size=image_size, label_key=label_key or None
    )
