"""Tiny stand-ins for the GlaS, MoNuSeg and CelebA downloads, in their real formats and layout.

The tests build the datasets from these; users can smoke-test a set-up the same way before
the real download is in place (random pixels, so only shapes and plumbing mean anything):

    python -c "from diffssl_jax.data.builders import fixtures as f; f.write_glas_fixture('/tmp/m')"
    python scripts/prepare_dataset.py glas --manual_dir=/tmp/m --data_dir=/tmp/tfds

GlaS: `<dir>/Warwick QU Dataset (Released 2016_07_08)/` with 24-bit RGB `*.bmp` images,
8-bit `*_anno.bmp` instance maps holding the boxes `GLAS_GLANDS`, and a `Grade.csv` with
the real header and spelling. MoNuSeg: `<dir>/MoNuSeg 2018 Training Data/{Tissue Images,
Annotations}/` and `<dir>/MoNuSegTestData/` with the real image ids, RGB `.tif` tiles, and
Aperio ImageScope XML files holding the polygons `MONUSEG_NUCLEI`. CelebA: the five release
files of `celeb_a.FILES` (a zip of 218x178 JPEGs under `img_align_celeba/`, and the split,
attribute, landmark and identity lists with the real headers), for
`celeb_a.prepare_from_files`.
"""

import io
import pathlib
import zipfile
from xml.etree import ElementTree

import numpy as np
from PIL import Image

from diffssl_jax.data import celeba
from diffssl_jax.data.builders import celeb_a, glas, monuseg

# Gland k of every fixture annotation is the box rows [r0, r1) x cols [c0, c1) of entry k-1.
GLAS_GLANDS = ((2, 3, 9, 12), (15, 20, 25, 30))
_BENIGN = ("healthy", "adenomatous")
# Grade.csv spells this grade "differentated"; the fixture keeps the typo.
_MALIGNANT = (
    "moderately differentiated",
    "moderately-to-poorly differentated",
    "poorly differentiated",
)
# (x, y) vertices: an axis-aligned rectangle with half-pixel corners (6 wide, 3 high, so
# exactly rows 4..6 x cols 3..8), a diamond, and a 2-vertex region that gets no id.
MONUSEG_NUCLEI = (
    ((2.5, 3.5), (8.5, 3.5), (8.5, 6.5), (2.5, 6.5)),
    ((14.0, 10.0), (18.0, 14.0), (14.0, 18.0), (10.0, 14.0)),
    ((1.0, 1.0), (3.0, 1.0)),
)
# Every fixture face is bright (200..255) inside CelebA's reference crop and dark (0..50)
# outside it, so a crop off by one pixel shows.
CELEBA_BRIGHT, CELEBA_DARK = (200, 255), (0, 50)
_LANDMARKS = (
    "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y "
    "rightmouth_x rightmouth_y"
)


def _glas_names(num_train: int, num_test_a: int, num_test_b: int) -> list[str]:
    return (
        [f"train_{i}" for i in range(1, num_train + 1)]
        + [f"testA_{i}" for i in range(1, num_test_a + 1)]
        + [f"testB_{i}" for i in range(1, num_test_b + 1)]
    )


def write_glas_fixture(
    directory,
    num_train: int = 2,
    num_test_a: int = 2,
    num_test_b: int = 1,
    size: tuple[int, int] = (40, 52),
    seed: int = 0,
) -> pathlib.Path:
    """Writes a miniature GlaS download under `directory` (the builder's manual_dir).

    Images alternate between `size` and 6 rows / 10 columns less (GlaS sizes vary too).
    Patient ids count from 1; grades alternate benign / malignant, starting benign.

    Args:
      directory: the manual_dir to fill (created if needed).
      num_train: number of `train_k` images.
      num_test_a: number of `testA_k` images.
      num_test_b: number of `testB_k` images.
      size: `(H, W)` of the even-indexed images, at least (32, 42).
      seed: seed of the random pixels.

    Returns:
      `directory` as a Path.
    """
    if size[0] < 32 or size[1] < 42:
        raise ValueError(f"size must be at least (32, 42) to hold GLAS_GLANDS; got {size}.")
    directory = pathlib.Path(directory)
    root = directory / glas.FOLDER
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for k, name in enumerate(_glas_names(num_train, num_test_a, num_test_b)):
        h, w = size if k % 2 == 0 else (size[0] - 6, size[1] - 10)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"{name}.bmp")
        annotation = np.zeros((h, w), dtype=np.uint8)
        for gland, (r0, c0, r1, c1) in enumerate(GLAS_GLANDS, start=1):
            annotation[r0:r1, c0:c1] = gland
        Image.fromarray(annotation).save(root / f"{name}_anno.bmp")
        grades = _BENIGN if k % 2 == 0 else _MALIGNANT
        label = "benign" if k % 2 == 0 else "malignant"
        rows.append(f"{name},{k + 1}, {label}, {grades[k // 2 % len(grades)]}")
    header = "name, patient ID, grade (GlaS), grade (Sirinukunwattana et al. 2015)"
    (root / glas.GRADE_CSV).write_text("\n".join([header, *sorted(rows)]) + "\n")
    return directory


_ANNOTATION_ATTRIBUTES = {
    "Id": "1",
    "Name": "",
    "ReadOnly": "0",
    "NameReadOnly": "0",
    "LineColorReadOnly": "0",
    "Incremental": "0",
    "Type": "4",
    "LineColor": "65280",
    "Visible": "1",
    "Selected": "1",
    "MarkupImagePath": "",
    "MacroName": "",
}
_REGION_ATTRIBUTES = {
    "Type": "0",
    "Zoom": "1",
    "Selected": "0",
    "ImageLocation": "",
    "ImageFocus": "-1",
    "Length": "0",
    "Text": "",
    "NegativeROA": "0",
    "InputRegionId": "0",
    "Analyze": "1",
}


def _aperio_xml(polygons) -> ElementTree.ElementTree:
    """An ImageScope annotation file with one Region per polygon, as MoNuSeg ships them."""
    root = ElementTree.Element("Annotations", MicronsPerPixel="0.252100")
    annotation = ElementTree.SubElement(root, "Annotation", _ANNOTATION_ATTRIBUTES)
    attributes = ElementTree.SubElement(annotation, "Attributes")
    ElementTree.SubElement(attributes, "Attribute", Name="Description", Id="0", Value="")
    regions = ElementTree.SubElement(annotation, "Regions")
    headers = ElementTree.SubElement(regions, "RegionAttributeHeaders")
    for key, name in (("9999", "Region"), ("9997", "Length"), ("9996", "Area"), ("9998", "Text")):
        ElementTree.SubElement(headers, "AttributeHeader", Id=key, Name=name, ColumnWidth="-1")
    for index, polygon in enumerate(polygons, start=1):
        xy = np.asarray(polygon, dtype=np.float64)
        x, y = xy[:, 0], xy[:, 1]
        area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))  # shoelace
        region = ElementTree.SubElement(
            regions, "Region", _REGION_ATTRIBUTES, Id=str(index), DisplayId=str(index)
        )
        region.set("Area", f"{area:.1f}")
        ElementTree.SubElement(region, "Attributes")
        vertices = ElementTree.SubElement(region, "Vertices")
        for vx, vy in xy:
            ElementTree.SubElement(vertices, "Vertex", X=f"{vx:g}", Y=f"{vy:g}", Z="0")
    ElementTree.SubElement(annotation, "Plots")
    ElementTree.indent(root)
    return ElementTree.ElementTree(root)


def _write_pair(image_dir: pathlib.Path, xml_dir: pathlib.Path, key: str, pixels) -> None:
    Image.fromarray(pixels).save(image_dir / f"{key}.tif")  # uncompressed RGB TIFF
    _aperio_xml(MONUSEG_NUCLEI).write(
        xml_dir / f"{key}.xml", encoding="UTF-8", xml_declaration=True
    )


def write_monuseg_fixture(
    directory, size: tuple[int, int] = (24, 32), num_extra_train: int = 0, seed: int = 0
) -> pathlib.Path:
    """Writes a miniature MoNuSeg 2018 download (training and test archives) under `directory`.

    Every image id of the real release is present (`monuseg.TRAIN_IDS`, `monuseg.TEST_IDS`),
    each as a random `size` tile whose XML holds `MONUSEG_NUCLEI`.

    Args:
      directory: the manual_dir to fill (created if needed).
      size: `(H, W)` of every tile, at least (20, 20) to hold `MONUSEG_NUCLEI`.
      num_extra_train: how many of the 7 ids outside the challenge set to add (0..7).
      seed: seed of the random pixels.

    Returns:
      `directory` as a Path.
    """
    if size[0] < 20 or size[1] < 20:
        raise ValueError(f"size must be at least (20, 20) to hold MONUSEG_NUCLEI; got {size}.")
    if not 0 <= num_extra_train <= len(monuseg.EXTRA_TRAIN_IDS):
        raise ValueError(f"num_extra_train must be in 0..7; got {num_extra_train}.")
    directory = pathlib.Path(directory)
    train = directory / monuseg.TRAIN_FOLDER
    test = directory / monuseg.TEST_FOLDER
    for folder in (train / monuseg.IMAGES, train / monuseg.ANNOTATIONS, test):
        folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = lambda: rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    for key in monuseg.TRAIN_IDS + monuseg.EXTRA_TRAIN_IDS[:num_extra_train]:
        _write_pair(train / monuseg.IMAGES, train / monuseg.ANNOTATIONS, key, pixels())
    for key in monuseg.TEST_IDS:
        _write_pair(test, test, key, pixels())
    return directory


def _celeba_face(rng) -> bytes:
    """A 218x178 JPEG (quality 100, no chroma subsampling): `CELEBA_BRIGHT` noise inside
    `celeba.CROP`, `CELEBA_DARK` noise outside."""
    pixels = rng.integers(*CELEBA_DARK, celeba.IMAGE_SHAPE, endpoint=True, dtype=np.uint8)
    top, left, height, width = celeba.CROP
    inside = (height, width, 3)
    pixels[top : top + height, left : left + width] = rng.integers(
        *CELEBA_BRIGHT, inside, endpoint=True, dtype=np.uint8
    )
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=100, subsampling=0)
    return buffer.getvalue()


def _table(header: list[str], names: list[str], rows, width: int) -> str:
    """A CelebA annotation list: optional count and header lines, then `name v1 v2 ...`."""
    lines = [
        f"{name} " + " ".join(f"{v:{width}d}" for v in row)
        for name, row in zip(names, rows, strict=True)
    ]
    return "\n".join([*header, *lines]) + "\n"


def write_celeb_a_fixture(
    directory, sizes: tuple[int, int, int] = (24, 4, 12), seed: int = 0
) -> np.ndarray:
    """Writes a miniature CelebA release (the five files of `celeb_a.FILES`) into `directory`.

    Images are numbered from `000001.jpg` and split in order, as in the release: the first
    `sizes[0]` are train (partition 0), then validation (1), then test (2). Image k has
    identity k (so a prepared example names its file) and random attributes, written as
    -1 / 1 under the real header.

    Args:
      directory: the directory to fill (created if needed).
      sizes: (train, validation, test) image counts.
      seed: seed of the pixels, attributes and landmarks.

    Returns:
      `[N, 40]` bool attributes of images 1..N, columns in `celeba.ATTRIBUTES` order.
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    names = [f"{k:06d}.jpg" for k in range(1, n + 1)]
    with zipfile.ZipFile(directory / celeb_a.FILES["img_align_celeba"], "w") as archive:
        for name in names:
            archive.writestr(f"img_align_celeba/{name}", _celeba_face(rng))
    attributes = rng.random((n, len(celeba.ATTRIBUTES))) < 0.5
    landmarks = rng.integers(60, 160, (n, 10))
    tables = {
        "list_eval_partition": _table([], names, np.repeat([0, 1, 2], sizes)[:, None], 1),
        "identity_celeba": _table([], names, np.arange(1, n + 1)[:, None], 1),
        "list_attr_celeba": _table(
            [str(n), " ".join(celeba.ATTRIBUTES) + " "], names, 2 * attributes.astype(int) - 1, 2
        ),
        "landmarks_celeba": _table([str(n), _LANDMARKS], names, landmarks, 4),
    }
    for key, text in tables.items():
        (directory / celeb_a.FILES[key]).write_text(text)
    return attributes
