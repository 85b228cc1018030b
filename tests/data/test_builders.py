"""GlaS and MoNuSeg builders: real-format fixtures -> array_record without TensorFlow -> sources."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import REPO_ROOT
from PIL import Image

from diffssl_jax.data.builders import fixtures, glas, monuseg
from diffssl_jax.data.sources import TfdsSource, make_source

GLAS_SIZES = {"train": 11, "test": 3, "test_a": 2, "test_b": 1}  # 11 > 9: natural order shows


def _build(builder_cls, manual_dir, data_dir):
    builder = builder_cls(data_dir=str(data_dir), file_format="array_record")
    config = tfds.download.DownloadConfig(manual_dir=str(manual_dir))
    builder.download_and_prepare(download_config=config)
    return builder


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("builders")
    fixtures.write_glas_fixture(root / "glas", num_train=11, num_test_a=2, num_test_b=1)
    fixtures.write_monuseg_fixture(root / "monuseg", num_extra_train=2)
    _build(glas.Glas, root / "glas", root / "tfds")
    _build(monuseg.Monuseg, root / "monuseg", root / "tfds")
    return root


def _read(root, name, split):
    source = tfds.data_source(name, split=split, data_dir=str(root / "tfds"))
    return [source[i] for i in range(len(source))]


def _names(examples):
    return [e["name"].decode() for e in examples]


def test_files_are_array_record(root):
    for name in ("glas", "monuseg"):
        files = sorted(p.name for p in (root / "tfds" / name / "1.0.0").glob("*.array_record*"))
        assert files and all(".array_record-" in f for f in files), files


def test_glas_split_sizes_and_natural_order(root):
    for split, size in GLAS_SIZES.items():
        assert len(_read(root, "glas", split)) == size
    assert _names(_read(root, "glas", "train")) == [f"train_{i}" for i in range(1, 12)]
    assert _names(_read(root, "glas", "test")) == ["testA_1", "testA_2", "testB_1"]


def test_glas_examples_equal_the_files(root):
    folder = root / "glas" / glas.FOLDER
    grades = {
        cells[0]: [c.strip() for c in cells[1:]]
        for cells in (line.split(",") for line in (folder / "Grade.csv").read_text().split("\n"))
    }
    shapes = set()
    for example in _read(root, "glas", "train") + _read(root, "glas", "test"):
        name = example["name"].decode()
        image = np.asarray(Image.open(folder / f"{name}.bmp"))
        annotation = np.asarray(Image.open(folder / f"{name}_anno.bmp"))
        np.testing.assert_array_equal(example["image"], image)
        np.testing.assert_array_equal(example["instances"], annotation)
        assert example["instances"].dtype == np.uint16
        assert example["segmentation"].dtype == np.int32
        np.testing.assert_array_equal(example["segmentation"], annotation > 0)
        for gland, (r0, c0, r1, c1) in enumerate(fixtures.GLAS_GLANDS, start=1):
            assert (example["instances"][r0:r1, c0:c1] == gland).all()
        patient, label, grade = grades[name]
        assert example["patient_id"] == int(patient)
        assert glas.GLAS_GRADES[example["label"]] == label
        assert glas.SIRINUKUNWATTANA_GRADES[example["grade"]] == grade.replace(
            "entated", "entiated"
        )
        shapes.add(example["image"].shape)
    assert shapes == {(40, 52, 3), (34, 42, 3)}  # variable sizes survive the round trip


def test_monuseg_splits_hold_the_official_ids(root):
    assert len(set(monuseg.TRAIN_IDS)) == 30 and len(set(monuseg.TEST_IDS)) == 14
    assert len(set(monuseg.EXTRA_TRAIN_IDS)) == 7
    all_ids = monuseg.TRAIN_IDS + monuseg.TEST_IDS + monuseg.EXTRA_TRAIN_IDS
    assert len(set(all_ids)) == 51
    assert _names(_read(root, "monuseg", "train")) == list(monuseg.TRAIN_IDS)
    assert _names(_read(root, "monuseg", "test")) == list(monuseg.TEST_IDS)
    assert _names(_read(root, "monuseg", "train_extra")) == list(monuseg.EXTRA_TRAIN_IDS[:2])


def test_monuseg_polygons_rasterise_to_the_expected_pixels(root):
    example = _read(root, "monuseg", "test")[3]
    tif = root / "monuseg" / monuseg.TEST_FOLDER / f"{example['name'].decode()}.tif"
    np.testing.assert_array_equal(example["image"], np.asarray(Image.open(tif)))
    instances = example["instances"]
    assert instances.shape == (24, 32) and instances.dtype == np.uint16
    # Nucleus 1: the rectangle x in [2.5, 8.5], y in [3.5, 6.5] covers 6 x 3 pixel centres.
    rectangle = np.zeros((24, 32), bool)
    rectangle[4:7, 3:9] = True
    np.testing.assert_array_equal(instances == 1, rectangle)
    xs, ys = np.array(fixtures.MONUSEG_NUCLEI[0]).T
    assert rectangle.sum() == (xs.max() - xs.min()) * (ys.max() - ys.min()) == 18
    # Nucleus 2: the diamond |x - 14| + |y - 14| <= 4, boundary pixels included.
    rows, cols = np.mgrid[:24, :32]
    np.testing.assert_array_equal(instances == 2, abs(cols - 14) + abs(rows - 14) <= 4)
    assert instances.max() == 2  # the 2-vertex region gets no id
    np.testing.assert_array_equal(example["segmentation"], (instances > 0).astype(np.int32))


def test_rasterise_overlap_and_clipping():
    square = lambda x0, y0, side: [
        (x0, y0),
        (x0 + side, y0),
        (x0 + side, y0 + side),
        (x0, y0 + side),
    ]
    polygons = [np.array(square(0.5, 0.5, 4)), np.array(square(2.5, 2.5, 4))]
    polygons.append(np.array(square(6.5, 6.5, 10)))  # mostly outside the 10 x 10 image
    instances = monuseg.rasterise(polygons, (10, 10))
    assert instances.dtype == np.uint16
    assert (instances[1:3, 1:5] == 1).all() and (instances[3:5, 1:3] == 1).all()
    assert (instances[3:7, 3:7] == 2).all()  # the later nucleus wins where they overlap
    assert (instances[7:, 7:] == 3).all() and (instances == 3).sum() == 9


def test_sources_pass_images_in_range_and_segmentation(root):
    data_dir = str(root / "tfds")
    raw = _read(root, "glas", "train")[1]
    example = make_source("glas", "train", data_dir=data_dir)[1]
    assert example["image"].dtype == np.float32 and example["image"].shape == (34, 42, 3)
    assert -1.0 <= example["image"].min() and example["image"].max() <= 1.0
    np.testing.assert_allclose(example["image"], raw["image"] / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(example["segmentation"], raw["segmentation"])
    assert example["segmentation"].dtype == np.int32
    assert example["label"].dtype == np.int32 and example["label"] == raw["label"]
    source = TfdsSource("monuseg", "train+test", data_dir=data_dir, label_key=None)
    assert len(source) == 44 and "label" not in source[0]
    assert source[0]["segmentation"].shape == source[0]["image"].shape[:2] == (24, 32)


@pytest.mark.parametrize("builder_cls", [glas.Glas, monuseg.Monuseg])
def test_missing_or_empty_manual_dir_says_what_to_download(tmp_path, builder_cls):
    for manual in (tmp_path / "absent", tmp_path / "unrelated"):
        if manual.name == "unrelated":
            manual.mkdir()
            (manual / "notes.txt").write_text("not the dataset")
        with pytest.raises(FileNotFoundError, match="download") as error:
            _build(builder_cls, manual, tmp_path / "tfds")
        assert str(manual) in str(error.value)
        folder = glas.FOLDER if builder_cls is glas.Glas else monuseg.TRAIN_FOLDER
        assert folder in str(error.value)


def test_glas_missing_annotation_is_named(tmp_path):
    fixtures.write_glas_fixture(tmp_path / "m")
    (tmp_path / "m" / glas.FOLDER / "train_2_anno.bmp").unlink()
    with pytest.raises(FileNotFoundError, match="train_2_anno.bmp"):
        _build(glas.Glas, tmp_path / "m", tmp_path / "tfds")


def test_monuseg_missing_files_are_named(tmp_path):
    manual = fixtures.write_monuseg_fixture(tmp_path / "m")
    test_dir = manual / monuseg.TEST_FOLDER
    (test_dir / f"{monuseg.TEST_IDS[0]}.xml").unlink()
    with pytest.raises(FileNotFoundError, match=f"{monuseg.TEST_IDS[0]}.xml"):
        _build(monuseg.Monuseg, manual, tmp_path / "tfds")
    (test_dir / f"{monuseg.TEST_IDS[0]}.tif").unlink()
    with pytest.raises(FileNotFoundError, match=f"missing .*{monuseg.TEST_IDS[0]}"):
        _build(monuseg.Monuseg, manual, tmp_path / "tfds")


def test_doubled_and_flat_folders_are_found(tmp_path):
    manual = fixtures.write_monuseg_fixture(tmp_path / "m")
    inner = manual / monuseg.TRAIN_FOLDER
    shutil.move(inner, tmp_path / "moved")
    shutil.move(tmp_path / "moved", inner / monuseg.TRAIN_FOLDER)
    splits = monuseg.split_pairs(manual)
    assert (len(splits["train"]), len(splits["test"])) == (30, 14)
    glas_manual = fixtures.write_glas_fixture(tmp_path / "g")
    assert glas.find_root(glas_manual / glas.FOLDER) == glas_manual / glas.FOLDER


def test_prepare_script_builds_glas(tmp_path):
    manual = fixtures.write_glas_fixture(tmp_path / "m", num_train=2, num_test_a=1, num_test_b=1)
    command = [sys.executable, "scripts/prepare_dataset.py", "glas", f"--manual_dir={manual}"]
    result = subprocess.run(
        [*command, f"--data_dir={tmp_path / 'tfds'}"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "train 2, test 2, test_a 1, test_b 1" in result.stdout
    assert len(tfds.data_source("glas", split="test", data_dir=str(tmp_path / "tfds"))) == 2


def test_resized_glas_masks_follow_the_image(tmp_path):
    """With data.image_size, segmentation maps are resized (nearest) so examples batch."""
    import numpy as np

    from diffssl_jax.data import make_dataset
    from diffssl_jax.data.builders import fixtures
    from diffssl_jax.data.sources import TfdsSource
    from scripts.prepare_dataset import prepare

    manual, data_dir = tmp_path / "manual", tmp_path / "tfds"
    fixtures.write_glas_fixture(str(manual))
    prepare("glas", manual_dir=str(manual), data_dir=str(data_dir))
    source = TfdsSource("glas", "train", data_dir=str(data_dir), image_size=16)
    example = source[0]
    assert example["image"].shape == (16, 16, 3)
    assert example["segmentation"].shape == (16, 16)
    assert set(np.unique(example["segmentation"])) <= {0, 1}
    batch = make_dataset(source, global_batch_size=2, seed=0)[0]
    assert batch["segmentation"].shape == (2, 16, 16)
