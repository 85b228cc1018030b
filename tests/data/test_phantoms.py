"""Ellipse and Shepp-Logan phantoms (docs/methods.md F, MRI): range, background, seeds."""

import pickle

import numpy as np
import pytest
import skimage.data

from diffssl_jax import data
from diffssl_jax.data.phantoms import PhantomSource, random_ellipse_phantoms, shepp_logan


@pytest.fixture(scope="module")
def phantoms():
    return random_ellipse_phantoms(0, 16, 32)


def test_phantoms_shape_range_and_background(phantoms):
    assert phantoms.shape == (16, 32, 32, 1) and phantoms.dtype == np.float32
    assert phantoms.min() == -1.0 and phantoms.max() <= 1.0
    corners = phantoms[:, [0, 0, -1, -1], [0, -1, 0, -1], 0]
    np.testing.assert_array_equal(corners, -1.0)
    background = (phantoms == -1.0).mean(axis=(1, 2, 3))
    assert np.all((0.2 < background) & (background < 0.7))  # a head fills the middle
    assert np.all(phantoms.max(axis=(1, 2, 3)) > 0.5)  # the bright skull ring is there


def test_bare_head_has_the_shepp_logan_intensities():
    # No inner ellipse, point sampling: only background (0), brain (0.2) and skull (1).
    bare = random_ellipse_phantoms(3, 4, 64, num_ellipses=(0, 0), supersample=1)
    np.testing.assert_allclose(np.unique(bare), [-1.0, -0.6, 1.0], atol=1e-6)


def test_phantoms_are_deterministic_and_differ_across_seeds(phantoms):
    np.testing.assert_array_equal(random_ellipse_phantoms(0, 16, 32), phantoms)
    np.testing.assert_array_equal(random_ellipse_phantoms(0, 5, 32), phantoms[:5])
    other = random_ellipse_phantoms(1, 16, 32)
    assert np.abs(other - phantoms).mean(axis=(1, 2, 3)).min() > 0.01
    assert np.abs(phantoms[1:] - phantoms[:-1]).mean(axis=(1, 2, 3)).min() > 0.01


def test_supersampling_antialiases_edges(phantoms):
    point = random_ellipse_phantoms(0, 16, 32, supersample=1)
    levels = {-1.0, -0.6, 1.0}
    assert np.isin(point, list(levels)).mean() > np.isin(phantoms, list(levels)).mean()


def test_shepp_logan_resize():
    image = shepp_logan(32)
    assert image.shape == (32, 32, 1) and image.dtype == np.float32
    assert image.min() == -1.0 and 0.0 < image.max() <= 1.0 and image[0, 0, 0] == -1.0
    full = shepp_logan(400)  # same size: the resize is the identity
    expected = 2.0 * skimage.data.shepp_logan_phantom()[..., None] - 1.0
    np.testing.assert_allclose(full, expected, atol=1e-6)


def test_phantom_source_splits():
    train, test = PhantomSource("train", num=64), PhantomSource("test")
    assert (len(train), len(test)) == (64, 256)
    example = train[3]
    assert set(example) == {"image"} and example["image"].shape == (32, 32, 1)
    np.testing.assert_array_equal(train.images, random_ellipse_phantoms(0, 64, 32))
    np.testing.assert_array_equal(test.images[:8], random_ellipse_phantoms(1, 8, 32))
    assert not train.images.flags.writeable
    payload = pickle.dumps(test)
    assert len(payload) < 1000
    np.testing.assert_array_equal(pickle.loads(payload).images, test.images)


def test_make_source_phantoms_through_the_pipeline():
    source = data.make_source("phantoms", "train")
    assert isinstance(source, PhantomSource) and len(source) == 4096 and source.size == 32
    batch = data.make_dataset(source, global_batch_size=8, seed=0)[0]
    assert batch["image"].shape == (8, 32, 32, 1) and batch["image"].dtype == np.float32
    data.validate_batch(batch, (32, 32, 1))
    assert data.make_source("phantoms", "test", image_size=16).images.shape == (256, 16, 16, 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(seed=-1), "seed"),
        (dict(seed=1.5), "seed"),
        (dict(num=0), ">= 1"),
        (dict(size=0), ">= 1"),
        (dict(num_ellipses=(5, 3)), "num_ellipses"),
        (dict(intensity_range=(0.5, -0.5)), "intensity_range"),
    ],
)
def test_bad_phantom_arguments_raise(kwargs, match):
    args = dict(seed=0, num=2, size=8) | kwargs
    with pytest.raises(ValueError, match=match):
        random_ellipse_phantoms(**args)


def test_bad_source_arguments_raise():
    with pytest.raises(ValueError, match="valid splits"):
        PhantomSource("validation")
    with pytest.raises(ValueError, match="positive"):
        PhantomSource("test", size=0)
    with pytest.raises(ValueError, match="size"):
        shepp_logan(0)
