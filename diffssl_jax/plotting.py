"""Figures: image grids (samples, posterior samples, counterfactual strips) and curves."""

import os

import numpy as np
from matplotlib.figure import Figure  # backend-free: saving never changes the notebook backend


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


def save_image_grid(
    images: np.ndarray,
    path: str,
    num_cols: int | None = None,
    title: str | None = None,
    scale: float = 0.25,
) -> str:
    """Saves an image grid (see `image_grid`) as a PNG; returns the path."""
    grid = image_grid(images, num_cols)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    height, width = grid.shape[:2]
    fig = Figure(figsize=(max(width * scale / 4, 2), max(height * scale / 4, 2)))
    ax = fig.add_axes((0, 0, 1, 0.92 if title else 1))
    ax.imshow(
        grid.squeeze(-1) if grid.shape[-1] == 1 else grid,
        cmap="gray",
        vmin=0,
        vmax=1,
        interpolation="nearest",
    )
    ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=8)
    fig.savefig(path, dpi=100)
    return path


def save_corner_plot(
    samples: np.ndarray,
    path: str,
    reference: np.ndarray | None = None,
    bins: int = 64,
    limits: tuple[float, float] = (-3.0, 3.0),
    title: str | None = None,
) -> str:
    """Corner plot of `samples [N, D]`: 2-D histograms below the diagonal, 1-D on it.

    `reference [M, D]` (e.g. the true latents) is drawn as a grey 1-D histogram on the
    diagonal. Returns the path of the saved PNG.
    """
    samples = np.asarray(samples, np.float64)
    if samples.ndim != 2:
        raise ValueError(f"expected samples [N, D], got shape {samples.shape}")
    d = samples.shape[1]
    fig = Figure(figsize=(1.6 * d, 1.6 * d))
    edges = np.linspace(*limits, bins + 1)
    for i in range(d):
        for j in range(i + 1):
            ax = fig.add_subplot(d, d, i * d + j + 1)
            if i == j:
                if reference is not None:
                    ax.hist(np.asarray(reference)[:, i], edges, color="0.7", histtype="stepfilled")
                ax.hist(samples[:, i], edges, color="C0", histtype="step")
                ax.set_yticks([])
            else:
                counts, _, _ = np.histogram2d(samples[:, j], samples[:, i], (edges, edges))
                ax.imshow(counts.T, origin="lower", extent=(*limits, *limits), cmap="Blues")
            ax.set_xticks([]) if i < d - 1 else ax.set_xlabel(f"$x_{j}$")
            if j > 0 or i == 0:
                ax.set_yticks([])
            else:
                ax.set_ylabel(f"$x_{i}$")
    if title:
        fig.suptitle(title)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=80)
    return path


def save_curves(
    x: np.ndarray,
    curves: dict,
    path: str,
    hlines: dict | None = None,
    xlabel: str = "lap",
    ylabel: str = "",
    log_y: bool = False,
    title: str | None = None,
) -> str:
    """Line plot of `{name: y [len(x)]}` against `x`, with named horizontal reference lines
    (`hlines`, e.g. a baseline); an EM curve. Returns the path of the saved PNG."""
    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot(1, 1, 1)
    for name, y in curves.items():
        ax.plot(x, y, marker="o", label=name)
    for k, (name, value) in enumerate((hlines or {}).items()):
        ax.axhline(value, color=f"C{k + len(curves)}", linestyle="--", label=name)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
