"""CelebA through TFDS: release-format fixture -> tfds' own celeb_a builder (array_record, no
TensorFlow) -> the reference crop, the 40 attributes, the DiTi config and its attribute probe."""

import jax
import numpy as np
import pytest

from diffssl_jax import data
from diffssl_jax.configs.diti.celeba64 import get_config
from diffssl_jax.data import celeba
from diffssl_jax.data.builders import celeb_a, fixtures
from diffssl_jax.data.sources import TfdsSource, make_source
from diffssl_jax.evaluation import attributes
from diffssl_jax.evaluation.features import raw_pixel_features

SIZES = {"train": 24, "validation": 4, "test": 12}
BRIGHT, DARK = 150 / 127.5 - 1, 100 / 127.5 - 1  # JPEG-safe thresholds of the fixture's levels


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("celeb_a")
    table = fixtures.write_celeb_a_fixture(root / "files", sizes=tuple(SIZES.values()))
    celeb_a.prepare_from_files(root / "files", data_dir=str(root / "tfds"))
    return str(root / "tfds"), table


def _source(data_dir, split="train", **kwargs):
    return TfdsSource("celeb_a", split, data_dir=data_dir, label_key=None, **kwargs)


def test_the_files_are_tfds_celeb_a_in_array_record(prepared):
    data_dir, _ = prepared
    builder = celeb_a.prepare_from_files("/nonexistent", data_dir=data_dir)  # already prepared
    assert builder.info.full_name == "celeb_a/2.1.0"
    assert {s: info.num_examples for s, info in builder.info.splits.items()} == SIZES
    files = sorted(p.name for p in builder.data_path.iterdir() if ".array_record-" in p.name)
    assert len(files) == 3, files
    raw = _source(data_dir)._source[0]
    assert raw["image"].shape == celeba.IMAGE_SHAPE and raw["image"].dtype == np.uint8
    assert sorted(raw["attributes"]) == sorted(celeba.ATTRIBUTES)


def test_reference_crop_is_rows_57_to_184_and_columns_25_to_152(prepared):
    data_dir, _ = prepared
    source = _source(data_dir, crop=celeba.CROP)
    image, raw = source[3]["image"], source._source[3]["image"]
    assert image.shape == (128, 128, 3)
    np.testing.assert_array_equal(image, raw[57:185, 25:153] / np.float32(127.5) - 1)
    # The fixture is bright exactly inside the window: every kept pixel is bright, and the
    # row or column just outside each edge is dark.
    assert image.min() > BRIGHT
    intensity = raw.astype(np.float32) / 127.5 - 1
    for outside in (intensity[56, 25:153], intensity[185, 25:153], intensity[57:185, 24]):
        assert outside.max() < DARK
    assert intensity[57:185, 153].max() < DARK
    shifted = _source(data_dir, crop=(56, 25, 128, 128))[3]["image"]
    assert shifted[0].max() < DARK


def test_crop_then_resize_to_64_is_the_bilinear_resize_of_the_crop(prepared):
    data_dir, _ = prepared
    source = _source(data_dir, crop=celeba.CROP, image_size=64)
    crop = source._source[5]["image"][57:185, 25:153] / 127.5 - 1
    expected = jax.image.resize(crop, (64, 64, 3), "bilinear")
    np.testing.assert_allclose(source[5]["image"], expected, atol=1e-5)


def test_attributes_are_40_floats_in_the_release_order(prepared):
    data_dir, table = prepared
    source = _source(data_dir, "test", attribute_keys=celeba.ATTRIBUTES)
    pair = _source(data_dir, "test", attribute_keys=("Young", "Bald"))
    for i in range(len(source)):
        row = table[source._source[i]["identity"]["Identity_No"] - 1]  # image k has identity k
        vector = source[i]["attributes"]
        assert vector.shape == (40,) and vector.dtype == np.float32
        np.testing.assert_array_equal(vector, row.astype(np.float32))
        np.testing.assert_array_equal(pair[i]["attributes"], row[[39, 4]])
    assert celeba.ATTRIBUTES[4] == "Bald" and celeba.ATTRIBUTES[39] == "Young"


def test_unknown_attribute_names_the_valid_ones(prepared):
    data_dir, _ = prepared
    with pytest.raises(ValueError, match="Did you mean 'Smiling'") as info:
        _source(data_dir, attribute_keys=("Smiling", "Smilling"))
    assert "['Smilling']" in str(info.value) and "'Young'" in str(info.value)


def test_missing_dataset_or_release_files_say_how_to_prepare_them(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        make_source("celeb_a", "train", data_dir=str(tmp_path), crop=celeba.CROP)
    assert f"tfds build celeb_a --data_dir={tmp_path}" in str(info.value)
    assert "celeb_a.prepare_from_files" in str(info.value)
    with pytest.raises(FileNotFoundError, match="list_attr_celeba.txt"):
        celeb_a.prepare_from_files(tmp_path, data_dir=str(tmp_path / "tfds"))


def test_celeba64_config_trains_and_probes_on_the_prepared_data(prepared):
    data_dir, _ = prepared
    full = get_config()
    assert tuple(full.data.crop) == celeba.CROP and full.data.image_shape == (64, 64, 3)
    assert tuple(full.data.attribute_keys) == celeba.ATTRIBUTES
    config = get_config("tiny")
    config.data.data_dir = data_dir
    source = data.source_for(config.data)
    batch = data.make_dataset(source, global_batch_size=8, seed=0, random_flip=True)[0]
    data.validate_batch(batch, config.data.image_shape)
    assert batch["image"].shape == (8, 16, 16, 3) and batch["attributes"].shape == (8, 40)
    mean_colour = raw_pixel_features().replace(pooling="mean")  # 3 dims: 40 quick probes
    results = attributes.evaluate_attributes(mean_colour, config, groups={"red": [0]})
    assert set(results) == {"all", "red"} and results["red"]["num_dims"] == 1
    assert results["all"]["num_dims"] == 3 and list(results["all"]["ap"]) == list(celeba.ATTRIBUTES)
    assert 0.0 <= results["all"]["mean_ap"] <= 1.0
    assert "mean AP" in attributes.format_attribute_results(results)
