"""Feature extraction from a tiny DDPM checkpoint: names, shapes, resize, concat, pooling."""

import functools
import json
import shutil

import jax
import numpy as np
import pytest

from diffssl_jax import methods, training
from diffssl_jax.configs.ddpm.digits import get_config
from diffssl_jax.data import DigitsSource
from diffssl_jax.evaluation import features
from diffssl_jax.evaluation.features import grid_pool
from diffssl_jax.training.state import create_train_state
from diffssl_jax.training.step import make_optimizer

BLOCKS = ("dec_0", "dec_1", "dec_2", "dec_3")


def _tiny_config():
    config = get_config("tiny")
    config.train.num_steps = 2
    config.train.sample_every_steps = 0
    return config


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ddpm_tiny"))
    config = _tiny_config()
    training.train(config, path, methods.make_recipe(config))
    return path


@pytest.fixture(scope="module")
def images():
    return DigitsSource("test").images[:7]


@pytest.fixture(scope="module")
def extractor(workdir):
    return features.load_features(workdir, blocks=BLOCKS)  # every decoder block of the tiny U-Net


@pytest.fixture(scope="module")
def dense(extractor, images):
    return extractor(images)


def test_dense_names_shapes_and_per_image_keys(workdir, extractor, images, dense):
    assert list(dense) == list(BLOCKS)
    assert extractor.block_shapes((16, 16, 1)) == {
        "dec_0": (8, 8, 16),
        "dec_1": (16, 16, 16),
        "dec_2": (16, 16, 8),
        "dec_3": (16, 16, 8),
    }
    for name, (h, w, c) in extractor.block_shapes((16, 16, 1)).items():
        assert dense[name].shape == (7, h, w, c) and dense[name].dtype == np.float32
    # Image i is noised with fold_in(key(seed), i) and goes through the network alone.
    config = _tiny_config()
    recipe = methods.make_recipe(config)
    params = training.load_params(workdir)
    for i in (0, 5):
        key = jax.random.fold_in(jax.random.key(0), i)
        direct = recipe.features(
            params, images[i : i + 1], key, t=config.eval.feature_t, blocks=BLOCKS
        )
        for name in BLOCKS:
            np.testing.assert_allclose(dense[name][i], direct[name][0], atol=1e-5)


def test_defaults_come_from_config_eval(workdir, tmp_path, images):
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    saved = json.loads((copy / "config.json").read_text())
    saved["eval"].update(feature_t=0.3, feature_blocks=["dec_2"], feature_batch_size=5)
    (copy / "config.json").write_text(json.dumps(saved))
    extractor = features.load_features(str(copy))
    assert (extractor.t, extractor.blocks, extractor.batch_size) == (0.3, ("dec_2",), 5)
    assert list(extractor(images[:2])) == ["dec_2"]
    explicit = features.load_features(str(copy), t=0.5, blocks=("dec_3", "dec_0"))
    assert (explicit.t, explicit.blocks) == (0.5, ("dec_3", "dec_0"))


def test_resize_concat_and_pooled_agree_with_dense(extractor, images, dense):
    resized = extractor.replace(resize_to=(16, 16))(images)
    expected = jax.image.resize(dense["dec_0"], (7, 16, 16, 16), "bilinear")
    np.testing.assert_allclose(resized["dec_0"], expected, atol=1e-6)
    np.testing.assert_allclose(resized["dec_3"], dense["dec_3"], atol=1e-6)  # already 16x16
    concat = extractor.replace(resize_to=(16, 16), concat=True)(images)
    assert list(concat) == ["features"] and concat["features"].shape == (7, 16, 16, 48)
    np.testing.assert_allclose(
        concat["features"], np.concatenate([resized[b] for b in BLOCKS], -1), atol=1e-6
    )
    pooled = extractor.replace(pooled=True)(images)
    assert pooled.shape == (7, 48)
    np.testing.assert_allclose(
        pooled, np.concatenate([dense[b].mean((1, 2)) for b in BLOCKS], -1), atol=1e-5
    )


def test_grid_pooling_averages_each_cell(extractor, images, dense):
    pooled = extractor.replace(pooled=True, pool_grid=2)(images)
    expected = []
    for block in BLOCKS:
        maps = np.asarray(dense[block], np.float64)
        h, w = maps.shape[1:3]
        cells = [
            maps[:, i * h // 2 : (i + 1) * h // 2, j * w // 2 : (j + 1) * w // 2].mean((1, 2))
            for i in range(2)
            for j in range(2)
        ]
        expected.append(np.concatenate(cells, -1))
    np.testing.assert_allclose(pooled, np.concatenate(expected, -1), atol=1e-5)
    with pytest.raises(ValueError, match="divide the map size"):
        grid_pool(np.zeros((1, 6, 6, 2)), 4)
    with pytest.raises(ValueError, match="pool_grid must be >= 1"):
        extractor.replace(pool_grid=0)


def test_block_order_follows_request(workdir, images):
    extractor = features.load_features(workdir, blocks=("dec_3", "dec_0"), resize_to=(16, 16))
    parts = extractor(images[:2])
    both = extractor.replace(concat=True)(images[:2])["features"]
    np.testing.assert_allclose(both, np.concatenate([parts["dec_3"], parts["dec_0"]], -1))


def test_chunked_extraction_equals_one_shot(extractor, images):
    one_shot = extractor.replace(pooled=True, batch_size=64)(images)
    chunked = extractor.replace(pooled=True, batch_size=3)(images)  # 3 + 3 + 1 (padded)
    np.testing.assert_allclose(chunked, one_shot, atol=1e-5)
    other_seed = extractor.replace(pooled=True, seed=1)(images)
    assert np.abs(other_seed - one_shot).max() > 1e-4  # the noise at t is really used


def test_random_init_is_the_training_initialisation(workdir):
    config = _tiny_config()
    recipe = methods.make_recipe(config)
    tx, _ = make_optimizer(**config.optim, num_steps=config.train.num_steps)
    expected = jax.jit(functools.partial(create_train_state, recipe.init, tx))(
        jax.random.key(config.seed)
    ).params
    got = features.load_features(workdir, which="random_init")
    assert got.info["which"] == "random_init"
    for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(a, b)
    trained = training.load_params(workdir, which="params")
    pairs = zip(jax.tree.leaves(trained), jax.tree.leaves(expected), strict=True)
    assert any(np.abs(a - b).max() > 0 for a, b in pairs)  # the comparison can tell them apart


def test_raw_pixels(images):
    dense = features.raw_pixel_features()(images)
    np.testing.assert_array_equal(dense["pixels"], images)
    flat = features.raw_pixel_features(pooled=True, batch_size=2)(images)
    np.testing.assert_array_equal(flat, images.reshape(7, -1))


def test_bad_input_raises(workdir, tmp_path, extractor, images):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        features.load_features(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="which"):
        features.load_features(workdir, which="last")
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        extractor.replace(t=50.0)
    with pytest.raises(ValueError, match="already one vector"):
        extractor.replace(pooled=True, concat=True)
    with pytest.raises(ValueError, match="equal sizes"):
        extractor.replace(concat=True)(images[:1])
    with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
        extractor(images[0])
