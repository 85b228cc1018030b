"""Figures of a trained representation: restorations of masked digits, segmentation maps.

Both write a PNG grid with `plotting.save_image_grid` (one column per test digit) and return
its path; `launch/pipeline.py` draws them after the evaluation.
"""

import os

import jax
import numpy as np
from matplotlib import colormaps

from diffssl_jax import data, load_params, plotting

NUM_FIGURE_DIGITS = 10


def label_colors(labels, num_classes: int) -> np.ndarray:
    """Label maps `[N, H, W]` int -> colour images `[N, H, W, 3]` in [-1, 1].

    Class 0 (background) is black; class k >= 1 takes colour k - 1 of matplotlib's
    qualitative `tab10` (`tab20` above 11 classes), so each digit class has its own colour.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3 or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"need int labels [N, H, W] in [0, {num_classes}), got {labels.shape}")
    cmap = colormaps["tab10" if num_classes <= 11 else "tab20"]
    palette = np.zeros((num_classes, 3), np.float32)
    palette[1:] = [cmap(k % cmap.N)[:3] for k in range(num_classes - 1)]
    return palette[labels] * 2.0 - 1.0


def _grey_to_rgb(images) -> np.ndarray:
    images = np.asarray(images, np.float32)
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def save_segmentations(examples: dict, num_classes: int, path: str) -> str:
    """Rows: test digits, their label maps, the ensemble's predictions (same colours).

    Args:
        examples: `{"images": [n, H, W, C], "target": [n, H, W], "prediction": [n, H, W]}`,
            as `evaluate_representation(..., num_seg_examples=n)` returns them.
        num_classes: K of the label maps (11 for the digits: background + 10 digits).
        path: the PNG to write.

    Returns:
        `path`.
    """
    rows = [
        _grey_to_rgb(examples["images"]),
        label_colors(examples["target"], num_classes),
        label_colors(examples["prediction"], num_classes),
    ]
    title = "rows: test digits; labels (background black, a colour per digit); predictions"
    num_cols = len(examples["images"])
    return plotting.save_image_grid(
        np.concatenate(rows), path, num_cols=num_cols, title=title, scale=0.6
    )


def save_restorations(recipe, config, workdir: str, ts, path: str) -> str | None:
    """Test digits, then masked / restored rows at each mask ratio t; None if no `restore`.

    Args:
        recipe: the method's `Recipe`; its `restore(params, images, rng, t=t)` gives the
            corrupted images and the network's reconstruction of x0 (MDM: the U-Net's x0).
        config: the run's config (its `data` group).
        workdir: the trained workdir (EMA parameters are used).
        ts: times in [0, 1] (MDM: the masked fraction of patches).
        path: the PNG to write.

    Returns:
        `path`, or None for recipes that restore nothing.
    """
    if recipe.restore is None:
        return None
    params = load_params(workdir, which="ema")
    test = data.source_for(config.data, "test")
    images = np.stack([test[i]["image"] for i in range(NUM_FIGURE_DIGITS)])
    rows = [images]
    for i, t in enumerate(ts):
        masked, restored = recipe.restore(params, images, jax.random.key(i), t=t)
        rows += [np.asarray(masked), np.clip(np.asarray(restored), -1, 1)]
    title = "rows: test digits; then masked / restored at t = " + ", ".join(f"{t:g}" for t in ts)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return plotting.save_image_grid(
        np.concatenate(rows), path, num_cols=NUM_FIGURE_DIGITS, title=title, scale=0.6
    )
