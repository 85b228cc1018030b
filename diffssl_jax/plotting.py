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
