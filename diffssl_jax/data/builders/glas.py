"""GlaS (Warwick-QU gland segmentation, MICCAI 2015) from its manual download, as a TFDS builder.

Sirinukunwattana et al. 2017, "Gland segmentation in colon histology images: The GlaS
challenge contest", Medical Image Analysis 35. 165 H&E images of colorectal tissue: 85
`train_*`, 60 `testA_*` and 20 `testB_*`, each with an instance annotation `*_anno.bmp`
(0 = background, k = gland k) and a row in `Grade.csv`. docs/methods.md A.6 uses train 85 / test 80
with labels binarised; pre-training uses the images of both (`split="train+test"`).

Images keep their own size (most are 775x522, some smaller), so `image`, `instances` and
`segmentation` are variable-shape `tfds.features.Tensor`s with zlib encoding: the one kind of
variable-shape feature that encodes and decodes without TensorFlow. Examples are stored in
natural order (`train_1, train_2, ..., train_10, ...`), so `train[:8]` is the first 8 images.

The helpers `manual_dir` and `mask_features` are shared with `monuseg`.
"""

import csv
import logging
import pathlib
import re

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

FOLDER = "Warwick QU Dataset (Released 2016_07_08)"
GRADE_CSV = "Grade.csv"
HOMEPAGE = "https://warwick.ac.uk/fac/cross_fac/tia/data/glascontest/"
DOWNLOAD_PAGE = "https://warwick.ac.uk/fac/cross_fac/tia/data/glascontest/download/"
MIRROR = "https://www.kaggle.com/datasets/sani84/glasmiccai2015-gland-segmentation"
# Which file-name prefixes make up each split; `test` is the union of the two test parts.
SPLIT_PREFIXES = {
    "train": ("train_",),
    "test": ("testA_", "testB_"),
    "test_a": ("testA_",),
    "test_b": ("testB_",),
}
EXPECTED_SIZES = {"train": 85, "test": 80, "test_a": 60, "test_b": 20}
GLAS_GRADES = ("benign", "malignant")
SIRINUKUNWATTANA_GRADES = (
    "healthy",
    "adenomatous",
    "moderately differentiated",
    "moderately-to-poorly differentiated",
    "poorly differentiated",
)
_SPELLINGS = {"moderately-to-poorly differentated": "moderately-to-poorly differentiated"}
_COLUMNS = {
    "name": "name",
    "patient ID": "patient_id",
    "grade (GlaS)": "label",
    "grade (Sirinukunwattana et al. 2015)": "grade",
}

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
Download the GlaS challenge archive "{FOLDER}" (warwick_qu_dataset_released_2016_07_08.zip)
from {DOWNLOAD_PAGE}
(mirror with the same files: {MIRROR}) and extract it into manual_dir, so that:

  <manual_dir>/{FOLDER}/{GRADE_CSV}
  <manual_dir>/{FOLDER}/train_1.bmp, train_1_anno.bmp, ... train_85.bmp, train_85_anno.bmp
  <manual_dir>/{FOLDER}/testA_1.bmp, testA_1_anno.bmp, ... testA_60.bmp, testA_60_anno.bmp
  <manual_dir>/{FOLDER}/testB_1.bmp, testB_1_anno.bmp, ... testB_20.bmp, testB_20_anno.bmp

The same files directly in <manual_dir> (as some mirrors ship them) work too. Then run
  python scripts/prepare_dataset.py glas --manual_dir=<manual_dir> --data_dir=<data_dir>
"""


def manual_dir(dl_manager) -> pathlib.Path:
    """`dl_manager.manual_dir` as a path, or FileNotFoundError (with the builder's instructions)."""
    try:
        return pathlib.Path(dl_manager.manual_dir)
    except AssertionError as e:  # tfds' way of saying the directory is absent or empty
        raise FileNotFoundError(str(e)) from e


def mask_features(instances_doc: str) -> dict:
    """The image and mask features both builders store, all variable-shape, zlib-encoded."""
    tensor = tfds.features.Tensor
    return {
        "image": tensor(shape=(None, None, 3), dtype=np.uint8, encoding="zlib"),
        "instances": tensor(
            shape=(None, None), dtype=np.uint16, encoding="zlib", doc=instances_doc
        ),
        "segmentation": tensor(
            shape=(None, None), dtype=np.int32, encoding="zlib", doc="1 = foreground, 0 = not"
        ),
    }


def read_rgb(path: pathlib.Path) -> np.ndarray:
    """An image file as uint8 `[H, W, 3]` (an alpha channel, if any, is dropped)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_instances(path: pathlib.Path) -> np.ndarray:
    """A GlaS `*_anno.bmp` as uint16 `[H, W]`: 0 = background, k = gland k.

    The annotation stores gland ids as 8-bit values (grey levels, or palette indices, which
    are read raw rather than through the palette).
    """
    with Image.open(path) as image:
        values = np.asarray(image)
    if values.ndim == 3:  # a copy re-saved as RGB: only valid if the channels agree
        if not (values == values[..., :1]).all():
            raise ValueError(f"{path}: expected a single-channel instance map, got colours.")
        values = values[..., 0]
    if values.ndim != 2 or not np.issubdtype(values.dtype, np.integer) or values.min() < 0:
        raise ValueError(f"{path}: expected non-negative integer ids [H, W], got {values.dtype}.")
    return values.astype(np.uint16)


def _natural_key(name: str) -> tuple[str, int]:
    match = re.fullmatch(r"(.*?)(\d+)", name)
    return (match.group(1), int(match.group(2))) if match else (name, -1)


def _grade(value: str, names: tuple[str, ...], path, name) -> int:
    value = _SPELLINGS.get(value.strip().lower(), value.strip().lower())
    if value not in names:
        raise ValueError(f"{path}: row {name!r} has unknown grade {value!r}; known: {names}.")
    return names.index(value)


def read_grades(path: pathlib.Path) -> list[dict]:
    """Rows of `Grade.csv` (header `name, patient ID, grade (GlaS), grade (Sirin...)`).

    Returns:
      `[{'name': str, 'patient_id': int, 'label': int, 'grade': int}]` in natural name order;
      `label` indexes `GLAS_GRADES`, `grade` indexes `SIRINUKUNWATTANA_GRADES`.
    """
    with open(path, newline="", encoding="utf-8-sig") as f:
        table = list(csv.reader(f))
    header = [column.strip() for column in table[0]] if table else []
    if missing := [c for c in _COLUMNS if c not in header]:
        raise ValueError(f"{path}: missing columns {missing}; its header is {header}.")
    rows = []
    for cells in table[1:]:
        if not any(cell.strip() for cell in cells):
            continue
        raw = {_COLUMNS[c]: cells[header.index(c)].strip() for c in _COLUMNS}
        name = raw["name"]
        rows.append(
            {
                "name": name,
                "patient_id": int(raw["patient_id"]),
                "label": _grade(raw["label"], GLAS_GRADES, path, name),
                "grade": _grade(raw["grade"], SIRINUKUNWATTANA_GRADES, path, name),
            }
        )
    return sorted(rows, key=lambda row: _natural_key(row["name"]))


def find_root(directory: pathlib.Path) -> pathlib.Path:
    """The folder holding `Grade.csv`: `directory/FOLDER` or `directory` itself."""
    for root in (directory / FOLDER, directory):
        if (root / GRADE_CSV).is_file():
            return root
    raise FileNotFoundError(
        f"GlaS: no {GRADE_CSV} in {directory / FOLDER} nor in {directory}.\n"
        f"{MANUAL_DOWNLOAD_INSTRUCTIONS}"
    )


def check_files(root: pathlib.Path, rows: list[dict]) -> None:
    """Raises FileNotFoundError naming every image or annotation of `rows` that is absent."""
    wanted = [f"{row['name']}{suffix}.bmp" for row in rows for suffix in ("", "_anno")]
    if missing := [name for name in wanted if not (root / name).is_file()]:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise FileNotFoundError(
            f"GlaS: {len(missing)} file(s) listed by {root / GRADE_CSV} are missing from "
            f"{root}: {shown}\n{MANUAL_DOWNLOAD_INSTRUCTIONS}"
        )


def split_rows(rows: list[dict]) -> dict[str, list[dict]]:
    """`{split: rows}` by name prefix; an empty split or an unknown prefix is an error."""
    known = tuple(p for prefixes in SPLIT_PREFIXES.values() for p in prefixes)
    if strays := [row["name"] for row in rows if not row["name"].startswith(known)]:
        raise ValueError(f"GlaS: {GRADE_CSV} names outside {known}: {strays[:10]}.")
    splits = {
        split: [row for row in rows if row["name"].startswith(prefixes)]
        for split, prefixes in SPLIT_PREFIXES.items()
    }
    if empty := [split for split, members in splits.items() if not members]:
        raise ValueError(f"GlaS: no images for split(s) {empty} in {GRADE_CSV}.")
    for split, members in splits.items():
        if len(members) != EXPECTED_SIZES[split]:
            logging.warning(
                "GlaS split %r has %d images; the official release has %d.",
                split,
                len(members),
                EXPECTED_SIZES[split],
            )
    return splits


class Glas(tfds.core.GeneratorBasedBuilder):
    """GlaS gland segmentation: H&E image, gland instances, binary mask and grades."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Warwick QU release 2016-07-08; splits train/test/test_a/test_b."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        features = mask_features("gland ids: 0 = background, k = gland k (from *_anno.bmp)")
        features.update(
            label=tfds.features.ClassLabel(names=GLAS_GRADES),
            grade=tfds.features.ClassLabel(names=SIRINUKUNWATTANA_GRADES),
            patient_id=tfds.features.Tensor(shape=(), dtype=np.int32),
            name=tfds.features.Text(),
        )
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(features),
            homepage=HOMEPAGE,
            citation="Sirinukunwattana et al., Medical Image Analysis 35:489-502, 2017.",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        root = find_root(manual_dir(dl_manager))
        rows = read_grades(root / GRADE_CSV)
        check_files(root, rows)
        return {
            split: self._generate_examples(root, members)
            for split, members in split_rows(rows).items()
        }

    def _generate_examples(self, root: pathlib.Path, rows: list[dict]):
        for row in rows:
            image = read_rgb(root / f"{row['name']}.bmp")
            instances = read_instances(root / f"{row['name']}_anno.bmp")
            if instances.shape != image.shape[:2]:
                raise ValueError(
                    f"GlaS {row['name']}: annotation is {instances.shape}, image is "
                    f"{image.shape[:2]}."
                )
            segmentation = (instances > 0).astype(np.int32)
            yield (
                row["name"],
                {
                    **row,
                    "image": image,
                    "instances": instances,
                    "segmentation": segmentation,
                },
            )
