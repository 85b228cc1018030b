"""`TfdsSource`: a prepared (array_record) tfds dataset as the library's example dicts.

Images are cropped (optional), converted from uint8 to float32 in [-1, 1] and resized
(bilinear, antialiased, in numpy: no accelerator in grain workers); per-pixel maps follow
the image by nearest neighbour; a dict of boolean features (CelebA's 40 attributes) becomes
one float vector. Errors say how to prepare a missing dataset.
"""

import difflib

import numpy as np

from diffssl_jax.data.resize import resize_bilinear


def _crop_box(crop) -> tuple[int, int, int, int] | None:
    """`crop` as `(top, left, height, width)` ints; None or () means no crop."""
    if crop is None or len(crop) == 0:
        return None
    box = tuple(int(v) for v in crop)
    if len(box) != 4 or min(box[:2]) < 0 or min(box[2:]) < 1:
        raise ValueError(
            f"crop must be (top, left, height, width) with top, left >= 0 and height, "
            f"width >= 1, or None; got {crop}."
        )
    return box


def _crop_and_resize(example: dict, crop, image_size: int | None) -> dict:
    """Crops the image and every per-pixel map (same `[H, W]`) to `crop`, then resizes them
    to `[S, S]`: the image bilinearly, the maps (segmentation, instances) by nearest neighbour.
    """
    h, w = example["image"].shape[:2]
    maps = [key for key, value in example.items() if value.shape[:2] == (h, w)]
    out = dict(example)
    if crop is not None:
        top, left, height, width = crop
        if top + height > h or left + width > w:
            raise ValueError(
                f"crop (top, left, height, width) = {crop} does not fit in the {h}x{w} image; "
                "pass a crop inside it, or crop=None."
            )
        for key in maps:
            out[key] = out[key][top : top + height, left : left + width]
        h, w = height, width
    if image_size is not None:
        rows = ((np.arange(image_size) + 0.5) * h / image_size).astype(int)
        cols = ((np.arange(image_size) + 0.5) * w / image_size).astype(int)
        for key in maps:
            value = out[key]
            if key == "image":
                out[key] = resize_bilinear(value, image_size, image_size).astype(np.float32)
            else:
                out[key] = value[rows][:, cols]
    return out


def _attribute_vector(raw: dict, key: str, names: tuple[str, ...]) -> np.ndarray:
    """`[K]` float32 (1.0 true, 0.0 false) of the boolean features `raw[key][name]`, in the
    order of `names` (tfds `celeb_a` stores its 40 attributes as such a dict)."""
    features = raw.get(key)
    if not isinstance(features, dict):
        raise ValueError(
            f"example has no attribute dict {key!r}; its keys are {sorted(raw)}; "
            "pass attribute_keys=None for a dataset without attributes."
        )
    unknown = [name for name in names if name not in features]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(features), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown attribute name(s) {unknown} in {key!r}.{hint} Valid names: "
            f"{sorted(features)}."
        )
    return np.array([features[name] for name in names], dtype=np.float32)


def _tfds_example(
    raw: dict,
    image_key: str,
    label_key: str | None,
    image_size: int | None,
    crop: tuple[int, int, int, int] | None = None,
    attribute_keys: tuple[str, ...] | None = None,
    attributes_key: str = "attributes",
):
    """One tfds example as the library's dict: uint8 image -> float32 [-1, 1] (cropped, then
    resized), int32 label, float32 `attributes [K]` when `attribute_keys` are given."""
    if image_key not in raw:
        raise ValueError(f"example has no image key {image_key!r}; its keys are {sorted(raw)}.")
    image = np.asarray(raw[image_key])
    if image.dtype != np.uint8:
        raise ValueError(f"expected uint8 images under {image_key!r}; got {image.dtype}.")
    if image.ndim == 2:
        image = image[..., None]
    # Numeric features pass through; strings and nested dicts cannot go to devices.
    example = {
        key: np.asarray(value)
        for key, value in raw.items()
        if key not in (image_key, label_key) and np.asarray(value).dtype.kind in "biuf"
    }
    example["image"] = image.astype(np.float32) / 127.5 - 1.0
    example = _crop_and_resize(example, crop, image_size)
    if label_key is not None:
        if label_key not in raw:
            raise ValueError(
                f"example has no label key {label_key!r}; its keys are {sorted(raw)}; "
                "pass label_key=None for unlabelled data."
            )
        example["label"] = np.asarray(raw[label_key], dtype=np.int32)
    if attribute_keys:
        example["attributes"] = _attribute_vector(raw, attributes_key, attribute_keys)
    return example


# Catalog datasets this library can also prepare without TensorFlow, from local files.
_NO_TENSORFLOW_HINTS = {
    "celeb_a": (
        " Without TensorFlow: put the five CelebA release files in DIR and run "
        '`python -c "from diffssl_jax.data.builders import celeb_a; '
        "celeb_a.prepare_from_files('DIR', data_dir='{root}')\"`."
    )
}


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
            + _NO_TENSORFLOW_HINTS.get(name, "").format(root=root)
        ) from e


class TfdsSource:
    """A prepared (array_record) tfds dataset, converted to the library's example dict.

    CelebA as DiTi uses it (`diffssl_jax.data.celeba`): `TfdsSource('celeb_a', 'train',
    image_size=64, crop=celeba.CROP, attribute_keys=celeba.ATTRIBUTES)` gives
    `{'image': [64, 64, 3], 'attributes': [40]}` from the 128x128 reference crop.

    Args:
      name: tfds name, e.g. 'cifar10' or 'mnist'.
      split: tfds split, e.g. 'train' or 'test[:10%]'.
      data_dir: tfds data_dir; None means tfds' default (~/tensorflow_datasets).
      image_key: feature holding the uint8 image `[H, W, C]`.
      label_key: feature holding the class, or None for unlabelled data.
      image_size: resize images (bilinear, antialiased) to `[S, S, C]`, after the crop; None
        keeps the size.
      crop: `(top, left, height, width)`: keep `image[top:top + height, left:left + width]`
        (and the same window of per-pixel maps) before resizing; None keeps the whole image.
      attribute_keys: names of boolean features inside the dict `raw[attributes_key]`; each
        example then has `attributes [K]` float32 (1.0 true, 0.0 false) in this order. None
        reads no attributes.
      attributes_key: the dict feature holding the attributes ('attributes' in `celeb_a`).

    Raises:
      FileNotFoundError: the dataset is not prepared in array_record format under data_dir.
      ValueError: unknown name, features that do not match the keys, an unknown attribute
        name (the message lists the valid ones), or a crop outside the image.
    """

    def __init__(
        self,
        name: str,
        split: str,
        data_dir: str | None = None,
        image_key: str = "image",
        label_key: str | None = "label",
        image_size: int | None = None,
        crop: tuple[int, int, int, int] | None = None,
        attribute_keys: tuple[str, ...] | None = None,
        attributes_key: str = "attributes",
    ):
        if image_size is not None and int(image_size) < 1:
            raise ValueError(f"image_size must be a positive integer or None; got {image_size}.")
        self.name, self.split = name, split
        self.image_key, self.label_key = image_key, label_key
        self.image_size = None if image_size is None else int(image_size)
        self.crop = _crop_box(crop)
        self.attribute_keys = tuple(attribute_keys) if attribute_keys else None
        self.attributes_key = attributes_key
        self._source = _open_tfds(name, split, data_dir)
        if len(self._source) == 0:
            raise ValueError(f"tfds dataset {name!r} split {split!r} has no examples.")
        self[0]  # Fails now, by name, if the feature keys, attributes or crop are wrong.

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        raw = self._source[index]
        return _tfds_example(
            raw,
            self.image_key,
            self.label_key,
            self.image_size,
            crop=self.crop,
            attribute_keys=self.attribute_keys,
            attributes_key=self.attributes_key,
        )

    def __repr__(self) -> str:
        return f"TfdsSource(name={self.name!r}, split={self.split!r}, n={len(self)})"
