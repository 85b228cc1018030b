"""Figures of a representation: label colours and the segmentation grid."""

import numpy as np
import pytest

from diffssl_jax.evaluation import figures


def test_label_colors_background_black_and_classes_distinct():
    labels = np.arange(11).reshape(1, 1, 11)
    colors = figures.label_colors(labels, 11)
    assert colors.shape == (1, 1, 11, 3) and colors.min() >= -1 and colors.max() <= 1
    np.testing.assert_array_equal(colors[0, 0, 0], [-1, -1, -1])
    assert len({tuple(c) for c in colors[0, 0]}) == 11
    with pytest.raises(ValueError, match="labels"):
        figures.label_colors(labels, 5)


def test_save_segmentations_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    examples = {
        "images": rng.uniform(-1, 1, (3, 16, 16, 1)).astype(np.float32),
        "target": rng.integers(0, 11, (3, 16, 16)),
        "prediction": rng.integers(0, 11, (3, 16, 16)),
    }
    path = figures.save_segmentations(examples, 11, str(tmp_path / "seg.png"))
    assert (tmp_path / "seg.png").stat().st_size > 1000 and path.endswith("seg.png")
