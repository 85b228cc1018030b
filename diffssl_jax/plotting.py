"""Figures: labelled image grids, corner plots and curves, saved as PNGs through `etils.epath`.

Builders return a matplotlib `Figure` (`grid_figure`, `image_grid_figure`, `corner_figure`,
`curves_figure`); `save_*` functions build one and write it with `save_figure` (local or gs://).

Sizes, so that text reads at the 1,000-1,600 pixels a PNG is usually shown at:

- Grids: a zoom (an integer from 4 up: crisp pixels) makes the grid at most about
  `GRID_TARGET_PX` = 1,400 x 2,000 pixels, each tile 40 to 256 pixels; all text is
  `TEXT_FRACTION` of the grid's longer side (25 pixels on 1,400), at least `MIN_TEXT_PX`.
- Plots: 8 inches wide at 150 dpi (1,200 pixels), 10-point text (21 pixels, ~2.5% of height).

Figures are never registered with pyplot: they leave a notebook's backend alone and are freed
once dropped (no `plt.close` needed).
"""

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
from etils import epath
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

GRID_DPI = 100
GRID_TARGET_PX = (1400, 2000)  # at most, along the width and the height
TILE_PX = (40, 256)
TEXT_FRACTION = 0.018
MIN_TEXT_PX = 16
PLOT_DPI = 150


def image_grid(images: np.ndarray, num_cols: int | None = None, pad: int = 1) -> np.ndarray:
    """Tiles images `[N, H, W, C]` in [-1, 1] into one `[rows*(H+pad), cols*(W+pad), C]` array
    in [0, 1]; padding is white."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ValueError(f"expected images [N, H, W, C], got shape {images.shape}")
    n, h, w, c = images.shape
    cols = num_cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.float32)
    for i, image in enumerate(np.clip((images + 1) / 2, 0, 1)):
        r, k = divmod(i, cols)
        grid[
            pad + r * (h + pad) : pad + r * (h + pad) + h,
            pad + k * (w + pad) : pad + k * (w + pad) + w,
        ] = image
    return grid


def save_figure(fig: Figure, path: str | epath.PathLike) -> str:
    """Writes `fig` as a PNG at its own dpi to `path` (local or `gs://`); returns `str(path)`.

    Parent directories are created. The PNG is `fig.get_size_inches() * fig.dpi` pixels.
    """
    target = epath.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as f:
        fig.savefig(f, format="png", dpi=fig.dpi)
    return str(path)


def _zoom(tile_px: int, rows: int, cols: int) -> float:
    """Display pixels per image pixel; an integer (crisp pixels) when it is 4 or more."""
    target = float(np.clip(min(GRID_TARGET_PX[0] / cols, GRID_TARGET_PX[1] / rows), *TILE_PX))
    return target // tile_px if target >= 4 * tile_px else target / tile_px


def _check_labels(labels, count: int, name: str) -> list[str] | None:
    if labels is None:
        return None
    labels = [str(label) for label in labels]
    if len(labels) != count:
        raise ValueError(f"{name} has {len(labels)} entries for {count} {name[:3]}s of the grid")
    return labels


def _extent(artists, renderer, attr: str) -> float:
    return max((getattr(a.get_window_extent(renderer), attr) for a in artists), default=0.0)


def _fit_legend(ax, legend: Mapping, fontsize: float, max_width: float, renderer):
    """Colour patches centred below the axes, in as many columns as fit `max_width` pixels."""
    handles = [Patch(facecolor=c, edgecolor="0.4", label=n) for n, c in legend.items()]
    for ncol in range(len(handles), 0, -1):
        box = ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=ncol,
            fontsize=fontsize,
            frameon=False,
            borderaxespad=0.3,
        )
        if box.get_window_extent(renderer).width <= max_width:
            break
    return box


def grid_figure(
    rows: np.ndarray,
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    legend: Mapping[str, Sequence[float]] | None = None,
) -> Figure:
    """A grid of images with its row labels (left), column labels (top), title and legend.

    Args:
        rows: `[R, C, H, W, ch]` images in [-1, 1] (ch 1: grey, 3: RGB).
        row_labels: R labels ("\\n" breaks a line), or None.
        col_labels: C labels (their text shrinks, down to 60%, to fit a tile), or None.
        title: text above the grid, wrapped to the figure's width.
        legend: `{name: RGB in [0, 1]}` drawn as colour patches below the grid (classes).

    Returns:
        The Figure; `save_figure` writes it at `GRID_DPI`.
    """
    tiles = np.asarray(rows, np.float32)
    if tiles.ndim != 5 or tiles.shape[-1] not in (1, 3):
        raise ValueError(f"expected rows [R, C, H, W, 1 or 3], got shape {tiles.shape}")
    r, c, h, w, ch = tiles.shape
    row_labels = _check_labels(row_labels, r, "row_labels")
    col_labels = _check_labels(col_labels, c, "col_labels")
    grid = image_grid(tiles.reshape(r * c, h, w, ch), num_cols=c)
    zoom = _zoom(max(h, w) + 1, r, c)
    grid_w, grid_h = grid.shape[1] * zoom, grid.shape[0] * zoom
    font_px = max(MIN_TEXT_PX, TEXT_FRACTION * max(grid_w, grid_h))
    fontsize, gap = font_px * 72 / GRID_DPI, 0.5 * font_px
    fig = Figure(dpi=GRID_DPI)
    renderer = FigureCanvasAgg(fig).get_renderer()
    ax = fig.add_axes((0, 0, 1, 1))
    image = grid[..., 0] if ch == 1 else grid
    interpolation = "nearest" if zoom == int(zoom) else "antialiased"
    ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation=interpolation)
    ax.set_axis_off()
    centre = lambda k, size: 1 + k * (size + 1) + (size - 1) / 2  # noqa: E731
    edge = -0.5 - gap / zoom  # data coordinates, gap pixels outside the grid
    row_texts = [
        ax.text(edge, centre(k, h), s, ha="right", va="center", fontsize=fontsize)
        for k, s in enumerate(row_labels or [])
    ]
    col_texts = [
        ax.text(centre(k, w), edge, s, ha="center", va="bottom", fontsize=fontsize)
        for k, s in enumerate(col_labels or [])
    ]
    widest = _extent(col_texts, renderer, "width")
    if widest > 0.95 * w * zoom:
        for t in col_texts:
            t.set_fontsize(fontsize * max(0.6, 0.95 * w * zoom / widest))
    left = _extent(row_texts, renderer, "width") + 2 * gap
    width = left + grid_w + gap
    top = gap + (_extent(col_texts, renderer, "height") + gap if col_texts else 0)
    if title:
        text = fig.text(0.5, 1.0, title, ha="center", va="top", fontsize=fontsize * 1.1)
        chars = int(0.9 * len(title) * (width - 2 * gap) / text.get_window_extent(renderer).width)
        text.set_text(textwrap.fill(title, max(chars, 20)))
        top += text.get_window_extent(renderer).height + gap
    bottom = gap
    if legend:
        box = _fit_legend(ax, legend, fontsize, grid_w, renderer)
        bottom += box.get_window_extent(renderer).height + gap
    width, height = np.ceil(width), np.ceil(top + grid_h + bottom)
    fig.set_size_inches(width / GRID_DPI, height / GRID_DPI)
    ax.set_position((left / width, bottom / height, grid_w / width, grid_h / height))
    if title:
        text.set_y(1 - gap / height)
    return fig


def image_grid_figure(
    images: np.ndarray | Mapping[str, np.ndarray],
    num_cols: int | None = None,
    *,
    title: str | None = None,
    step: int | None = None,
    col_labels: Sequence[str] | None = None,
) -> Figure:
    """`grid_figure` of images `[N, H, W, C]` laid out `num_cols` per row (default about
    sqrt(N)); blank tiles fill a last row.

    `images` may be `{label: [N_i, H, W, C]}`: each block then starts a new row and labels
    its rows (e.g. posterior samples above prior samples). `step` (a training step) is
    appended to the title as "step N".
    """
    blocks = images if isinstance(images, Mapping) else {None: images}
    tiles, labels = [], []
    for label, block in blocks.items():
        block = np.asarray(block, np.float32)
        if block.ndim != 4:
            raise ValueError(f"expected images [N, H, W, C], got shape {block.shape}")
        cols = num_cols or int(np.ceil(np.sqrt(len(block))))
        rows = int(np.ceil(len(block) / cols))
        blank = np.ones((rows * cols - len(block), *block.shape[1:]), np.float32)
        tiles.append(np.concatenate([block, blank]).reshape(rows, cols, *block.shape[1:]))
        labels += [label] * rows
    if step is not None:
        title = f"{title}, step {step:,}" if title else f"step {step:,}"
    row_labels = None if None in blocks else labels
    return grid_figure(
        np.concatenate(tiles), row_labels=row_labels, col_labels=col_labels, title=title
    )


def save_image_grid(
    images: np.ndarray | Mapping[str, np.ndarray],
    path: str | epath.PathLike,
    num_cols: int | None = None,
    title: str | None = None,
    *,
    step: int | None = None,
    col_labels: Sequence[str] | None = None,
) -> str:
    """Saves `image_grid_figure(...)` as a PNG at `path` (local or `gs://`); returns the path."""
    fig = image_grid_figure(images, num_cols, title=title, step=step, col_labels=col_labels)
    return save_figure(fig, path)


def corner_figure(
    samples: np.ndarray,
    reference: np.ndarray | None = None,
    bins: int = 64,
    limits: tuple[float, float] = (-3.0, 3.0),
    title: str | None = None,
) -> Figure:
    """Corner plot of `samples [N, D]`: 2-D histograms below the diagonal, 1-D on it.

    `reference [M, D]` (e.g. the true latents) is drawn as a grey 1-D histogram on the
    diagonal, with a legend. 8 x 8 inches at `PLOT_DPI` (1,200 pixels).
    """
    samples = np.asarray(samples, np.float64)
    if samples.ndim != 2:
        raise ValueError(f"expected samples [N, D], got shape {samples.shape}")
    d = samples.shape[1]
    fig = Figure(figsize=(8, 8), dpi=PLOT_DPI)
    edges = np.linspace(*limits, bins + 1)
    for i in range(d):
        for j in range(i + 1):
            ax = fig.add_subplot(d, d, i * d + j + 1)
            if i == j:
                if reference is not None:
                    ref = np.asarray(reference)[:, i]
                    ax.hist(ref, edges, color="0.7", histtype="stepfilled", label="truth")
                ax.hist(samples[:, i], edges, color="C0", histtype="step", label="samples")
                ax.set_yticks([])
            else:
                counts, _, _ = np.histogram2d(samples[:, j], samples[:, i], (edges, edges))
                ax.imshow(counts.T, origin="lower", extent=(*limits, *limits), cmap="Blues")
            ax.set_xticks([]) if i < d - 1 else ax.set_xlabel(f"$x_{j}$", fontsize=11)
            if j > 0 or i == 0:
                ax.set_yticks([])
            else:
                ax.set_ylabel(f"$x_{i}$", fontsize=11)
    if reference is not None:
        fig.legend(*fig.axes[0].get_legend_handles_labels(), loc="upper right", fontsize=11)
    fig.suptitle(title or "", fontsize=12)
    return fig


def save_corner_plot(samples, path: str, reference=None, bins=64, limits=(-3.0, 3.0), title=None):
    """Saves `corner_figure(...)` as a PNG at `path` (local or `gs://`); returns the path."""
    return save_figure(corner_figure(samples, reference, bins, limits, title), path)


def curves_figure(
    x: np.ndarray,
    curves: dict,
    hlines: dict | None = None,
    xlabel: str = "lap",
    ylabel: str = "",
    log_y: bool = False,
    title: str | None = None,
) -> Figure:
    """Line plot of `{name: y [len(x)]}` against `x`, with named horizontal reference lines
    (`hlines`, e.g. a baseline), the legend below; an EM curve. 8 x 5.5 inches at `PLOT_DPI`."""
    fig = Figure(figsize=(8, 5.5), dpi=PLOT_DPI, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    for name, y in curves.items():
        ax.plot(x, y, marker="o", label=name)
    for k, (name, value) in enumerate((hlines or {}).items()):
        ax.axhline(value, color=f"C{k + len(curves)}", linestyle="--", label=name)
    ax.set_yscale("log" if log_y else "linear")
    if np.issubdtype(np.asarray(x).dtype, np.integer):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel, fontsize=11)
    ax.set_ylabel(ylabel, fontsize=11)
    fig.legend(loc="outside lower center", ncols=2, fontsize=10, frameon=False)
    ax.set_title(title or "", fontsize=12)
    return fig


def save_curves(x, curves: dict, path: str, hlines=None, xlabel="lap", ylabel="", **kwargs) -> str:
    """Saves `curves_figure(...)` (`log_y`, `title` as keywords) as a PNG at `path`."""
    return save_figure(curves_figure(x, curves, hlines, xlabel, ylabel, **kwargs), path)
