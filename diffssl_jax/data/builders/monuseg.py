"""MoNuSeg 2018 (multi-organ nucleus segmentation) from its manual download, as a TFDS builder.

Kumar et al. 2017, "A dataset and a technique for generalized nuclear segmentation for
computational pathology", IEEE TMI 36(7); Kumar et al. 2020, "A multi-organ nucleus
segmentation challenge", IEEE TMI 39(5). 1000x1000 H&E tiles from TCGA; each nucleus is a
polygon (Aperio ImageScope XML: `Annotations/Annotation/Regions/Region/Vertices/Vertex X= Y=`,
X the column and Y the row in pixels).

Splits: `train` is the 30 images of the challenge's training set (`TRAIN_IDS`, the split
docs/methods.md A.6 uses), `test` the 14 test images (`TEST_IDS`). The current training archive
holds 7 more images that were not part of the challenge; when present they form
`train_extra`. Pre-training on train and test images is `split="train+test"`.

Each polygon is filled with `skimage.draw.polygon` (pixels whose centres lie inside or on the
boundary) into `instances` (nucleus k = k, in file order, a later nucleus overwriting an
earlier one where they overlap; regions with fewer than 3 vertices are skipped) and
`segmentation` = `instances > 0`.
"""

import logging
import pathlib
from xml.etree import ElementTree

import numpy as np
import skimage.draw
import tensorflow_datasets as tfds

from diffssl_jax.data.builders.glas import manual_dir, mask_features, read_rgb

TRAIN_FOLDER = "MoNuSeg 2018 Training Data"
TEST_FOLDER = "MoNuSegTestData"
IMAGES, ANNOTATIONS = "Tissue Images", "Annotations"
HOMEPAGE = "https://monuseg.grand-challenge.org/Data/"
# The challenge training set: 6 breast, 6 kidney, 6 liver, 6 prostate, 2 bladder, 2 colon,
# 2 stomach (Kumar et al. 2017).
TRAIN_IDS = tuple(
    sorted(
        """
    TCGA-A7-A13E-01Z-00-DX1 TCGA-A7-A13F-01Z-00-DX1 TCGA-AR-A1AK-01Z-00-DX1
    TCGA-AR-A1AS-01Z-00-DX1 TCGA-E2-A1B5-01Z-00-DX1 TCGA-E2-A14V-01Z-00-DX1
    TCGA-B0-5711-01Z-00-DX1 TCGA-HE-7128-01Z-00-DX1 TCGA-HE-7129-01Z-00-DX1
    TCGA-HE-7130-01Z-00-DX1 TCGA-B0-5710-01Z-00-DX1 TCGA-B0-5698-01Z-00-DX1
    TCGA-18-5592-01Z-00-DX1 TCGA-38-6178-01Z-00-DX1 TCGA-49-4488-01Z-00-DX1
    TCGA-50-5931-01Z-00-DX1 TCGA-21-5784-01Z-00-DX1 TCGA-21-5786-01Z-00-DX1
    TCGA-G9-6336-01Z-00-DX1 TCGA-G9-6348-01Z-00-DX1 TCGA-G9-6356-01Z-00-DX1
    TCGA-G9-6363-01Z-00-DX1 TCGA-CH-5767-01Z-00-DX1 TCGA-G9-6362-01Z-00-DX1
    TCGA-DK-A2I6-01A-01-TS1 TCGA-G2-A2EK-01A-02-TSB TCGA-AY-A8YK-01A-01-TS1
    TCGA-NH-A8F7-01A-01-TS1 TCGA-KB-A93J-01A-01-TS1 TCGA-RD-A8N9-01A-01-TS1
    """.split()
    )
)
# In the current "MoNuSeg 2018 Training Data.zip" but not in the challenge's training set.
EXTRA_TRAIN_IDS = tuple(
    sorted(
        """
    TCGA-BC-A217-01Z-00-DX1 TCGA-F9-A8NY-01Z-00-DX1 TCGA-FG-A87N-01Z-00-DX1
    TCGA-MH-A561-01Z-00-DX1 TCGA-UZ-A9PJ-01Z-00-DX1 TCGA-UZ-A9PN-01Z-00-DX1
    TCGA-XS-A8TJ-01Z-00-DX1
    """.split()
    )
)
TEST_IDS = tuple(
    sorted(
        """
    TCGA-2Z-A9J9-01A-01-TS1 TCGA-44-2665-01B-06-BS6 TCGA-69-7764-01A-01-TS1
    TCGA-A6-6782-01A-01-BS1 TCGA-AC-A2FO-01A-01-TS1 TCGA-AO-A0J2-01A-01-BSA
    TCGA-CU-A0YN-01A-02-BSB TCGA-EJ-A46H-01A-03-TSC TCGA-FG-A4MU-01B-01-TS1
    TCGA-GL-6846-01A-01-BS1 TCGA-HC-7209-01A-01-TS1 TCGA-HT-8564-01Z-00-DX1
    TCGA-IZ-8196-01A-01-BS1 TCGA-ZF-A9R5-01A-01-TS1
    """.split()
    )
)

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
From {HOMEPAGE} download the training data "{TRAIN_FOLDER}.zip" and the test data
"{TEST_FOLDER}.zip", and extract both into manual_dir, so that:

  <manual_dir>/{TRAIN_FOLDER}/{IMAGES}/TCGA-....tif   (30 challenge images; 37 in the current zip)
  <manual_dir>/{TRAIN_FOLDER}/{ANNOTATIONS}/TCGA-....xml  (one per image, same name)
  <manual_dir>/{TEST_FOLDER}/TCGA-....tif and TCGA-....xml   (14 pairs)

A doubled folder left by unzipping ({TRAIN_FOLDER}/{TRAIN_FOLDER}/..., or
{TEST_FOLDER}/{TEST_FOLDER}/...) works too. Then run
  python scripts/prepare_dataset.py monuseg --manual_dir=<manual_dir> --data_dir=<data_dir>
"""


def read_polygons(path: pathlib.Path) -> list[np.ndarray]:
    """The nuclei of an ImageScope XML file, in file order.

    Returns:
      One `[K, 2]` float64 array of `(x, y)` vertices (x = column, y = row) per `Region`.
    """
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as e:
        raise ValueError(f"{path}: not a readable XML file ({e}).") from e
    if root.tag != "Annotations":
        raise ValueError(f"{path}: root element is <{root.tag}>, expected <Annotations>.")
    polygons = []
    for region in root.iter("Region"):
        try:
            xy = [(float(v.attrib["X"]), float(v.attrib["Y"])) for v in region.iter("Vertex")]
        except (KeyError, ValueError) as e:
            raise ValueError(f"{path}: Region {region.get('Id')} has a bad Vertex ({e}).") from e
        polygons.append(np.asarray(xy, dtype=np.float64).reshape(-1, 2))
    return polygons


def rasterise(polygons: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Instance map `[H, W]` uint16 of `polygons`: nucleus k (1-based, in order) = k.

    Regions with fewer than 3 vertices, or that cover no pixel centre, get no id; where
    nuclei overlap the later one wins.
    """
    instances = np.zeros(shape, dtype=np.uint16)
    next_id = 1
    for xy in polygons:
        if len(xy) < 3:
            continue
        rows, cols = skimage.draw.polygon(xy[:, 1], xy[:, 0], shape=shape)
        if rows.size == 0:
            continue
        if next_id > np.iinfo(np.uint16).max:
            raise ValueError(f"more than {np.iinfo(np.uint16).max} nuclei in one image.")
        instances[rows, cols] = next_id
        next_id += 1
    return instances


def _locate(manual: pathlib.Path, folder: str, inside: str) -> pathlib.Path:
    """`manual/folder` or the doubled `manual/folder/folder`, whichever holds `inside`."""
    for root in (manual / folder, manual / folder / folder):
        if any(root.glob(inside)):
            return root
    raise FileNotFoundError(
        f"MoNuSeg: found no {folder}/{inside} in {manual}.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}"
    )


def find_pairs(images: pathlib.Path, annotations: pathlib.Path) -> dict[str, tuple]:
    """`{id: (tif path, xml path)}` for every `.tif` in `images`; a missing XML is an error."""
    tifs = {p.stem: p for p in images.iterdir() if p.suffix.lower() in (".tif", ".tiff")}
    pairs = {key: (tif, annotations / f"{key}.xml") for key, tif in sorted(tifs.items())}
    if missing := [str(xml) for _, xml in pairs.values() if not xml.is_file()]:
        raise FileNotFoundError(
            f"MoNuSeg: {len(missing)} annotation(s) missing: {', '.join(missing[:5])}.\n"
            f"{MANUAL_DOWNLOAD_INSTRUCTIONS}"
        )
    return pairs


def _require(pairs: dict, ids: tuple[str, ...], where: pathlib.Path) -> None:
    if missing := [key for key in ids if key not in pairs]:
        raise FileNotFoundError(
            f"MoNuSeg: {len(missing)} of the {len(ids)} expected images are missing from "
            f"{where}: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}\n"
            f"{MANUAL_DOWNLOAD_INSTRUCTIONS}"
        )


def split_pairs(manual: pathlib.Path) -> dict[str, dict]:
    """`{split: {id: (tif, xml)}}` from the manual directory, checked against the id lists."""
    train_root = _locate(manual, TRAIN_FOLDER, f"{IMAGES}/*.tif")
    test_root = _locate(manual, TEST_FOLDER, "*.tif")
    train = find_pairs(train_root / IMAGES, train_root / ANNOTATIONS)
    test = find_pairs(test_root, test_root)
    _require(train, TRAIN_IDS, train_root / IMAGES)
    _require(test, TEST_IDS, test_root)
    if strays := sorted(set(test) - set(TEST_IDS)):
        logging.warning("MoNuSeg: ignoring %d unknown test images: %s", len(strays), strays)
    splits = {
        "train": {key: train[key] for key in TRAIN_IDS},
        "test": {key: test[key] for key in TEST_IDS},
    }
    if extra := {key: pair for key, pair in train.items() if key not in TRAIN_IDS}:
        splits["train_extra"] = extra
    return splits


class Monuseg(tfds.core.GeneratorBasedBuilder):
    """MoNuSeg 2018 nuclei: H&E tile, nucleus instances and binary mask (no class label)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "MoNuSeg 2018; splits train (30), test (14), train_extra."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        features = mask_features("nucleus ids: 0 = background, k = k-th Region of the XML")
        features["name"] = tfds.features.Text(doc="TCGA image id, e.g. TCGA-A7-A13E-01Z-00-DX1")
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(features),
            homepage=HOMEPAGE,
            citation="Kumar et al., IEEE TMI 36(7):1550-1560, 2017; IEEE TMI 39(5), 2020.",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        splits = split_pairs(manual_dir(dl_manager))
        return {split: self._generate_examples(pairs) for split, pairs in splits.items()}

    def _generate_examples(self, pairs: dict):
        for key, (tif, xml) in pairs.items():
            image = read_rgb(tif)
            instances = rasterise(read_polygons(xml), image.shape[:2])
            yield (
                key,
                {
                    "image": image,
                    "instances": instances,
                    "segmentation": (instances > 0).astype(np.int32),
                    "name": key,
                },
            )
