"""Digit segmentation labels and attributes, exact on hand-built images (docs/methods.md F)."""

import numpy as np
import pytest

from diffssl_jax.data import DigitsSource
from diffssl_jax.evaluation import digit_tasks


def _image(ink: dict, size: int = 16) -> np.ndarray:
    """[size, size, 1] image in [-1, 1]: background -1, `{(row, col): intensity in [0, 1]}`."""
    x = np.full((size, size, 1), -1.0, np.float32)
    for (row, col), value in ink.items():
        x[row, col, 0] = 2.0 * value - 1.0
    return x


def _shear_bar(shear: int, rows=range(3, 13), col0: int = 7, width: int = 2, weights=None):
    """A bar whose column moves `shear` pixels right per row up (x = x0 + shear * y)."""
    ink = {}
    for r in rows:
        for k in range(width):
            ink[(r, col0 + shear * (12 - r) + k)] = 1.0 if weights is None else weights[r]
    return _image(ink)


def test_segmentation_labels_threshold_and_classes():
    x = _image({(0, 0): 0.5, (0, 1): 0.49, (5, 5): 1.0})
    labels = digit_tasks.digit_segmentation_labels(np.stack([x, x]), np.array([7, 0]))
    assert labels.dtype == np.int32 and labels.shape == (2, 16, 16)
    expected = np.zeros((16, 16), np.int32)
    expected[0, 0] = expected[5, 5] = 1
    np.testing.assert_array_equal(labels[0], 8 * expected)
    np.testing.assert_array_equal(labels[1], expected)


def test_segmentation_labels_on_real_digits_use_all_eleven_classes():
    source = DigitsSource("test")
    labels = digit_tasks.digit_segmentation_labels(source.images, source.labels)
    assert set(np.unique(labels)) == set(range(digit_tasks.NUM_SEGMENTATION_CLASSES))
    for image, digit in zip(labels[:20], source.labels[:20], strict=True):
        assert set(np.unique(image)) == {0, 1 + digit}


def test_vertical_bar_rectangle_and_mass():
    bar = _shear_bar(0)  # rows 3..12, columns 7..8
    rectangle = _image({(r, c): 0.8 for r in range(3, 9) for c in range(5, 12)})
    attrs = digit_tasks.digit_attributes(np.stack([bar, rectangle]), np.array([1, 0]))
    assert set(attrs) == set(digit_tasks.ATTRIBUTE_NAMES)
    np.testing.assert_array_equal(attrs["class"], [1, 0])
    np.testing.assert_allclose(attrs["slant"], [0.0, 0.0], atol=1e-6)
    np.testing.assert_array_equal(attrs["width"], [2, 7])
    np.testing.assert_array_equal(attrs["height"], [10, 6])
    np.testing.assert_allclose(attrs["ink_mass"], [20 / 256, 42 * 0.8 / 256], rtol=1e-6)


@pytest.mark.parametrize(
    "shear, col0, rows", [(1, 4, range(3, 13)), (-1, 13, range(3, 13)), (2, 2, range(6, 13))]
)
def test_sheared_bar_has_its_shear_as_slant(shear, col0, rows):
    weights = {r: 0.5 + 0.04 * r for r in range(3, 13)}  # grey levels vary from row to row
    bars = np.stack([_shear_bar(shear, rows, col0), _shear_bar(1, col0=4, weights=weights)])
    attrs = digit_tasks.digit_attributes(bars, np.array([1, 1]))
    np.testing.assert_allclose(attrs["slant"], [shear, 1.0], rtol=1e-5)
    np.testing.assert_array_equal(attrs["height"], [len(rows), 10])
    np.testing.assert_array_equal(attrs["width"], [2 + (len(rows) - 1) * abs(shear), 11])


def test_empty_image_has_zero_attributes():
    attrs = digit_tasks.digit_attributes(_image({})[None], np.array([3]))
    for name in ("ink_mass", "slant", "width", "height"):
        assert attrs[name][0] == 0.0


def test_bad_input_raises():
    x = _image({})[None]
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        digit_tasks.digit_attributes(x + 3.0, np.array([1]))
    with pytest.raises(ValueError, match="labels"):
        digit_tasks.digit_segmentation_labels(x, np.array([10]))
    with pytest.raises(ValueError, match="labels"):
        digit_tasks.digit_segmentation_labels(x, np.array([1, 2]))
    with pytest.raises(ValueError, match="grey"):
        digit_tasks.digit_attributes(np.zeros((1, 16, 16, 3), np.float32), np.array([1]))
