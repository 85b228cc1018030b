"""Figures: grid layout and text size, labels, the training step, PNG size, saving via epath."""

import importlib.util

import numpy as np
import pytest
from etils.epath import backend
from fsspec.implementations.memory import MemoryFileSystem
from PIL import Image

from diffssl_jax import plotting


def _digits(n, size=16, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 1)).astype(np.float32)


def _texts(fig):
    return [t.get_text() for t in fig.texts] + [t.get_text() for ax in fig.axes for t in ax.texts]


def _text_px(fig):
    """Pixel heights (font size) of every text of a figure."""
    texts = list(fig.texts) + [t for ax in fig.axes for t in ax.texts]
    return np.array([t.get_fontsize() * fig.dpi / 72 for t in texts])


@pytest.mark.parametrize(
    ("rows", "cols", "size"),
    [(10, 10, 16), (4, 16, 16), (16, 7, 16), (7, 8, 32), (2, 3, 64)],
)
def test_grid_size_and_text_scale_with_the_grid(rows, cols, size, tmp_path):
    labels = [f"row {k}" for k in range(rows)]
    fig = plotting.grid_figure(
        _digits(rows * cols, size).reshape(rows, cols, size, size, 1),
        row_labels=labels,
        col_labels=[f"col {k}" for k in range(cols)],
        title="a long title that has to wrap in the narrower grids " * 3,
    )
    path = plotting.save_figure(fig, tmp_path / "grid.png")
    width, height = Image.open(path).size
    assert (width, height) == tuple(np.round(fig.get_size_inches() * fig.dpi).astype(int))
    assert 750 <= max(width, height) <= 2200 and min(width, height) >= 150
    # Row labels and the title: ~1.8% of the longer side (column labels may shrink to fit).
    px = _text_px(fig)
    assert 0.014 <= np.max(px) / max(width, height) <= 0.03
    assert np.min(px) >= 0.6 * plotting.MIN_TEXT_PX
    renderer = fig.canvas.get_renderer()  # every text lies inside the figure (none clipped)
    for text in [*fig.texts, *fig.axes[0].texts]:
        box = text.get_window_extent(renderer)
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height, text


def test_ten_by_ten_samples_are_readable_at_1400_pixels(tmp_path):
    path = plotting.save_image_grid(_digits(100), str(tmp_path / "s.png"), title="ddpm", step=1500)
    width, height = Image.open(path).size
    assert 1300 <= width <= 1500 and 1300 <= height <= 1500
    fig = plotting.image_grid_figure(_digits(100), title="ddpm", step=1500)
    px = _text_px(fig)
    assert np.all((px >= 0.015 * height) & (px <= 0.025 * height)), px / height


def test_labels_title_and_step_are_drawn():
    rows = _digits(6).reshape(2, 3, 16, 16, 1)
    fig = plotting.grid_figure(
        rows, row_labels=["masked\nt = 0.5", "restored"], col_labels=["a", "b", "c"], title="T"
    )
    assert {"masked\nt = 0.5", "restored", "a", "b", "c", "T"} <= set(_texts(fig))
    fig = plotting.image_grid_figure(_digits(10), 5, title="ddpm samples", step=12000)
    assert "ddpm samples, step 12,000" in _texts(fig)
    assert "step 7" in _texts(plotting.image_grid_figure(_digits(4), step=7))


def test_blocks_start_rows_and_label_them():
    fig = plotting.image_grid_figure({"posterior": _digits(20), "prior": _digits(8)}, num_cols=16)
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert labels == ["posterior", "posterior", "prior"]
    grid = fig.axes[0].images[0].get_array()
    assert grid.shape[:2] == (3 * 17 + 1, 16 * 17 + 1)  # 3 rows: blocks are padded to rows
    np.testing.assert_array_equal(grid[1 + 17 + 4 : 17 * 2, 1 + 17 * 4 :], 1.0)  # blank tiles


def test_legend_lists_the_classes():
    rows = np.zeros((1, 2, 8, 8, 3), np.float32)
    fig = plotting.grid_figure(rows, legend={"background": (0, 0, 0), "digit 0": (0, 0, 1)})
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["background", "digit 0"]
    np.testing.assert_allclose(legend.legend_handles[1].get_facecolor()[:3], (0, 0, 1))


def test_bad_input_raises():
    rows = _digits(6).reshape(2, 3, 16, 16, 1)
    with pytest.raises(ValueError, match="row_labels has 3 entries for 2 rows"):
        plotting.grid_figure(rows, row_labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="col_labels"):
        plotting.grid_figure(rows, col_labels=["a"])
    with pytest.raises(ValueError, match="expected rows"):
        plotting.grid_figure(_digits(6))
    with pytest.raises(ValueError, match="expected images"):
        plotting.save_image_grid(np.zeros((4, 8, 8)), "x.png")


def test_curves_and_corner_plot_sizes(tmp_path):
    x = np.arange(5)
    fig = plotting.curves_figure(x, {"EM": 1.0 / (1 + x)}, {"clean": 0.1}, ylabel="FD", log_y=True)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["EM", "clean"]
    path = plotting.save_curves(x, {"EM": x}, str(tmp_path / "c.png"), title="t")
    assert Image.open(path).size == (1200, 825)
    samples = np.random.default_rng(0).normal(size=(500, 3))
    path = plotting.save_corner_plot(samples, str(tmp_path / "k.png"), reference=samples)
    assert Image.open(path).size == (1200, 1200)


@pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is not None, reason="epath uses tf.io.gfile for gs://"
)
def test_save_figure_writes_through_epath_to_a_gs_uri(tmp_path, monkeypatch):
    fs = MemoryFileSystem()
    monkeypatch.setattr(backend.fsspec_backend, "_get_filesystem", lambda name: fs)
    monkeypatch.chdir(tmp_path)
    path = plotting.save_image_grid(_digits(4), "gs://bucket/run/figures/s.png", step=3)
    assert path == "gs://bucket/run/figures/s.png"
    assert fs.cat(path)[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(tmp_path.iterdir()) == []  # nothing on local disk
