"""Figures of a trained representation: restorations, segmentation maps, DiTi's strips.

Builders return a labelled `Figure` (`segmentation_figure`, `restoration_figure`: one column
per test digit; `strips_figure`: DiTi's counterfactual strips); `save_segmentations` and
`save_restorations` write them as PNGs with `plotting.save_figure` (local or `gs://`) and
`launch/pipeline.py` draws them after the evaluation (`counterfactuals.save_strips` the strips).
"""

from collections.abc import Sequence

import jax
import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from diffssl_jax import data, load_params, plotting

NUM_FIGURE_DIGITS = 10


def class_palette(num_classes: int) -> np.ndarray:
    """`[K, 3]` RGB colours in [0, 1] of the label classes, shared by labels and predictions.

    Class 0 (background) is black; class k >= 1 takes colour k - 1 of matplotlib's
    qualitative `tab10` (`tab20` above 11 classes), so each digit class has its own colour.
    """
    if num_classes < 1:
        raise ValueError(f"need num_classes >= 1, got {num_classes}")
    cmap = colormaps["tab10" if num_classes <= 11 else "tab20"]
    palette = np.zeros((num_classes, 3), np.float32)
    palette[1:] = [cmap(k % cmap.N)[:3] for k in range(num_classes - 1)]
    return palette


def label_colors(labels, num_classes: int) -> np.ndarray:
    """Label maps `[N, H, W]` int -> colour images `[N, H, W, 3]` in [-1, 1] (`class_palette`)."""
    labels = np.asarray(labels)
    if labels.ndim != 3 or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"need int labels [N, H, W] in [0, {num_classes}), got {labels.shape}")
    return class_palette(num_classes)[labels] * 2.0 - 1.0


def digit_class_names(num_classes: int) -> list[str]:
    """Names of the digits' segmentation classes: "background", then "digit 0", "digit 1"..."""
    return ["background", *(f"digit {k}" for k in range(num_classes - 1))]


def _grey_to_rgb(images) -> np.ndarray:
    images = np.asarray(images, np.float32)
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def segmentation_figure(
    examples: dict, num_classes: int, class_names: Sequence[str] | None = None
) -> Figure:
    """Rows: test digits, their label maps, the predictions (same colours); a class legend.

    Args:
        examples: `{"images": [n, H, W, C], "target": [n, H, W], "prediction": [n, H, W]}`,
            as `evaluate_representation(..., num_seg_examples=n)` returns them.
        num_classes: K of the label maps (11 for the digits: background + 10 digits).
        class_names: K legend entries (default `digit_class_names`).
    """
    names = list(class_names or digit_class_names(num_classes))
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    rows = np.stack(
        [
            _grey_to_rgb(examples["images"]),
            label_colors(examples["target"], num_classes),
            label_colors(examples["prediction"], num_classes),
        ]
    )
    return plotting.grid_figure(
        rows,
        row_labels=["test digit", "label", "prediction"],
        col_labels=[f"#{k + 1}" for k in range(rows.shape[1])],
        title="Segmentation of test digits by the pixel ensemble",
        legend=dict(zip(names, class_palette(num_classes).tolist(), strict=True)),
    )


def save_segmentations(examples: dict, num_classes: int, path: str) -> str:
    """Writes `segmentation_figure(examples, num_classes)` to `path`; returns `path`."""
    return plotting.save_figure(segmentation_figure(examples, num_classes), path)


def strips_figure(groups: dict, x1, x2, alphas, dims: dict) -> Figure:
    """DiTi's counterfactual strips (`evaluation.counterfactuals`) as one labelled grid.

    Args:
        groups: `{group: [P, A, H, W, C]}` images 1 regenerated at each weight of `alphas`.
        x1, x2: `[P, H, W, C]` images 1 and 2 of the pairs.
        alphas: the A weights of the columns.
        dims: `{group: dims}` of the groups, listed in the title.

    Returns:
        A Figure with a row per group and pair ("group, pair p") and the columns image 1,
        alpha = ..., image 2.
    """
    x1, x2 = np.asarray(x1)[:, None], np.asarray(x2)[:, None]
    rows = np.concatenate([np.concatenate([x1, g, x2], 1) for g in groups.values()])
    labels = [f"{name}, pair {p + 1}" for name, g in groups.items() for p in range(len(g))]
    spans = ", ".join(f"{n} (dims {d[0]}-{d[-1]})" for n, d in dims.items() if n in groups)
    return plotting.grid_figure(
        rows,
        row_labels=labels,
        col_labels=["image 1", *(f"α = {a:g}" for a in alphas), "image 2"],
        title=f"Image 1 regenerated with a group's dims moved towards image 2's by α: {spans}",
    )


def reconstruction_figure(images, reconstructions: dict, psnrs: dict) -> Figure:
    """Rows: test digits, then one row per DDIM round trip (DiTi: "prior" alone, "guided").

    Args:
        images: `[n, H, W, C]` in [-1, 1].
        reconstructions: `{name: [n, H, W, C]}` round trips of `images`.
        psnrs: `{name: [n]}` their PSNRs (dB), written under each name with their mean.
    """
    rows, labels = [np.asarray(images)], ["test digit"]
    for name, recon in reconstructions.items():
        rows.append(np.clip(np.asarray(recon), -1, 1))
        labels.append(f"{name}\n{np.mean(psnrs[name]):.1f} dB")
    last = list(reconstructions)[-1]
    return plotting.grid_figure(
        np.stack(rows),
        row_labels=labels,
        col_labels=[f"{p:.1f}" for p in np.asarray(psnrs[last], float)],
        title=f"DDIM round trips of test digits (rows: mean PSNR; columns: {last}'s PSNR, dB)",
    )


def restoration_figure(images, restorations: Sequence[tuple]) -> Figure:
    """Rows: test digits, then a masked and a restored row per mask ratio t.

    Args:
        images: `[n, H, W, C]` test digits in [-1, 1].
        restorations: `(t, masked [n, H, W, C], restored [n, H, W, C])` per mask ratio.
    """
    rows, labels = [np.asarray(images)], ["test digit"]
    for t, masked, restored in restorations:
        rows += [np.asarray(masked), np.clip(np.asarray(restored), -1, 1)]
        labels += [f"masked\nt = {t:g}", f"restored\nt = {t:g}"]
    return plotting.grid_figure(
        np.stack(rows),
        row_labels=labels,
        col_labels=[f"#{k + 1}" for k in range(len(images))],
        title="Restorations of masked test digits (t: masked fraction of patches)",
    )


def save_restorations(recipe, config, workdir: str, ts, path: str) -> str | None:
    """Test digits, then masked / restored rows at each mask ratio t; None if no `restore`.

    Args:
        recipe: the method's `Recipe`; its `restore(params, images, rng, t=t)` gives the
            corrupted images and the network's reconstruction of x0 (MDM: the U-Net's x0).
        config: the run's config (its `data` group).
        workdir: the trained workdir (EMA parameters are used).
        ts: times in [0, 1] (MDM: the masked fraction of patches).
        path: the PNG to write (local or `gs://`).

    Returns:
        `path`, or None for recipes that restore nothing.
    """
    if recipe.restore is None:
        return None
    params = load_params(workdir, which="ema")
    test = data.source_for(config.data, "test")
    images = np.stack([test[i]["image"] for i in range(NUM_FIGURE_DIGITS)])
    restorations = []
    for i, t in enumerate(ts):
        masked, restored = recipe.restore(params, images, jax.random.key(i), t=t)
        restorations.append((t, masked, restored))
    return plotting.save_figure(restoration_figure(images, restorations), path)
