"""Figures of the evaluation: segmentation (colours, legend), restorations, posterior, DiTi."""

import numpy as np
import pytest
from PIL import Image

from diffssl_jax.evaluation import figures, posterior


def _images(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def _labels(fig):
    return [t.get_text() for t in fig.axes[0].texts]


def test_label_colors_background_black_and_classes_distinct():
    labels = np.arange(11).reshape(1, 1, 11)
    colors = figures.label_colors(labels, 11)
    assert colors.shape == (1, 1, 11, 3) and colors.min() >= -1 and colors.max() <= 1
    np.testing.assert_array_equal(colors[0, 0, 0], [-1, -1, -1])
    assert len({tuple(c) for c in colors[0, 0]}) == 11
    with pytest.raises(ValueError, match="labels"):
        figures.label_colors(labels, 5)


def _segmentation_examples(n=3):
    rng = np.random.default_rng(0)
    return {
        "images": _images(n, 16, 16, 1),
        "target": rng.integers(0, 11, (n, 16, 16)),
        "prediction": rng.integers(0, 11, (n, 16, 16)),
    }


def test_segmentation_figure_rows_and_class_legend():
    fig = figures.segmentation_figure(_segmentation_examples(), 11)
    assert _labels(fig)[:3] == ["test digit", "label", "prediction"]
    assert _labels(fig)[3:] == ["#1", "#2", "#3"]
    legend = fig.axes[0].get_legend()
    names = [t.get_text() for t in legend.get_texts()]
    assert names == ["background", *(f"digit {k}" for k in range(10))]
    # The legend's colours are the label maps' colours (one palette for label and prediction).
    palette = figures.class_palette(11)
    for k, handle in enumerate(legend.legend_handles):
        np.testing.assert_allclose(handle.get_facecolor()[:3], palette[k], atol=1e-6)
    grid = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(
        grid[18:34, 1:17],
        (figures.label_colors(_segmentation_examples()["target"][:1], 11)[0] + 1) / 2,
        atol=1e-6,
    )  # row 2, column 1: the first label map in the palette colours
    box = legend.get_window_extent(fig.canvas.get_renderer())  # the legend fits the figure
    width, height = fig.get_size_inches() * fig.dpi
    assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height
    with pytest.raises(ValueError, match="class names"):
        figures.segmentation_figure(_segmentation_examples(), 11, class_names=["a", "b"])


def test_save_segmentations_writes_a_readable_png(tmp_path):
    path = figures.save_segmentations(_segmentation_examples(10), 11, str(tmp_path / "s.png"))
    width, height = Image.open(path).size
    assert 1200 <= width <= 2000 and 300 <= height <= 900


def test_restoration_figure_labels_each_mask_ratio():
    images = _images(4, 16, 16, 1)
    restorations = [(t, images * 0, images) for t in (0.25, 0.5)]
    fig = figures.restoration_figure(images, restorations)
    labels = _labels(fig)
    assert labels[:5] == [
        "test digit",
        "masked\nt = 0.25",
        "restored\nt = 0.25",
        "masked\nt = 0.5",
        "restored\nt = 0.5",
    ]
    assert labels[5:] == ["#1", "#2", "#3", "#4"]


def test_reconstruction_figure_labels_rows_with_mean_psnr_and_columns_with_the_last():
    images = _images(3, 16, 16, 1)
    recon = {"prior": images * 0, "guided": images}
    psnrs = {"prior": np.array([10.0, 12.0, 14.0]), "guided": np.array([30.0, 40.0, 41.0])}
    labels = _labels(figures.reconstruction_figure(images, recon, psnrs))
    assert labels == ["test digit", "prior\n12.0 dB", "guided\n37.0 dB", "30.0", "40.0", "41.0"]


def test_strips_figure_labels_groups_pairs_and_weights():
    x1, x2 = _images(2, 16, 16, 1), _images(2, 16, 16, 1, seed=1)
    alphas = [0.0, 0.5, 1.0]
    groups = {"early": _images(2, 3, 16, 16, 1), "all": _images(2, 3, 16, 16, 1, seed=2)}
    dims = {"early": np.arange(0, 7), "all": np.arange(64)}
    fig = figures.strips_figure(groups, x1, x2, alphas, dims)
    assert _labels(fig) == [
        "early, pair 1",
        "early, pair 2",
        "all, pair 1",
        "all, pair 2",
        "image 1",
        "α = 0",
        "α = 0.5",
        "α = 1",
        "image 2",
    ]
    assert "early (dims 0-6), all (dims 0-63)" in fig.texts[0].get_text().replace("\n", " ")
    grid = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(grid[1:17, 1:17], (x1[0, ..., 0] + 1) / 2, atol=1e-6)
    np.testing.assert_allclose(grid[1:17, 1 + 4 * 17 : 17 * 5], (x2[0, ..., 0] + 1) / 2)


def test_posterior_figure_rows_and_psnr_columns():
    images, observed = _images(3, 8, 8, 1), _images(3, 8, 8, 1, seed=1)
    samples = _images(3, 6, 8, 8, 1, seed=2)
    fig = posterior.posterior_figure(images, observed, samples, "deblur", psnr=[20.0, 21.5, 30])
    assert _labels(fig) == [
        "truth",
        "observation",
        "sample 1",
        "sample 2",
        "sample 3",
        "sample 4",
        "posterior\nmean",
        "#1\n20.0 dB",
        "#2\n21.5 dB",
        "#3\n30.0 dB",
    ]
    grid = fig.axes[0].images[0].get_array()
    mean = samples[0].mean(0)[..., 0]
    np.testing.assert_allclose(grid[1 + 6 * 9 : 6 * 9 + 9, 1:9], (mean + 1) / 2, atol=1e-6)
