"""Segmentation metrics as the reference code computes them (docs/methods.md A.6), on the host.

All functions take integer label maps as NumPy-convertible arrays. The quirks that matter
for parity with published numbers are stated where they apply:

* mIoU follows ddpm-segmentation `compute_iou`: a confusion matrix summed over the whole
  test set, IoU per class, mean over ALL classes (a class absent from both prediction and
  target counts as 0).
* GlaS "IoU" is derived from Dice as D / (2 - D), not measured.
* MoNuSeg "AJI" is computed on binary maps, where it reduces to foreground IoU.
"""

from collections.abc import Iterable

import numpy as np
from scipy import ndimage


def _as_int_maps(pred, target) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {pred.shape} vs {target.shape}")
    for name, a in (("pred", pred), ("target", target)):
        if not np.issubdtype(a.dtype, np.integer) and a.dtype != bool:
            raise ValueError(f"{name} must hold integer labels, got dtype {a.dtype}")
    return pred.astype(np.int64), target.astype(np.int64)


def confusion_matrix(pred, target, num_classes: int, ignore_label: int | None = 255) -> np.ndarray:
    """Pixel confusion matrix, rows = target class, columns = predicted class.

    Pixels whose target is `ignore_label` are left out entirely. (ddpm-segmentation's
    `compute_iou` instead still counts a prediction of class c on an ignored pixel in c's
    union; the two agree whenever the test labels have no ignored pixels.)

    Args:
        pred: [...] int predicted labels in [0, num_classes).
        target: [...] int labels in [0, num_classes) or `ignore_label`.
        num_classes: K.
        ignore_label: target value to skip, or None.

    Returns:
        [K, K] int64 counts; sum confusion matrices of several batches to accumulate.
    """
    pred, target = _as_int_maps(pred, target)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    keep = np.ones(target.shape, bool) if ignore_label is None else target != ignore_label
    pred, target = pred[keep], target[keep]
    for name, a in (("pred", pred), ("target", target)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{name} has labels outside [0, {num_classes}): {np.unique(a)}")
    flat = target * num_classes + pred
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_iou(conf: np.ndarray) -> np.ndarray:
    """IoU_c = TP_c / (TP_c + FP_c + FN_c) from a confusion matrix.

    Args:
        conf: [K, K] confusion matrix (rows target, columns prediction).

    Returns:
        [K] float64; NaN for a class absent from both target and prediction (union 0).
    """
    conf = np.asarray(conf, np.float64)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f"conf must be a square [K, K] matrix, got shape {conf.shape}")
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1.0), np.nan)


def miou(conf: np.ndarray, classes: str = "all") -> float:
    """Mean IoU over classes.

    Args:
        conf: [K, K] confusion matrix summed over the test set.
        classes: "all" (default) follows ddpm-segmentation `compute_iou`
            (`I / (1e-8 + U)` averaged over all K classes, so a class absent from both
            prediction and target contributes 0); "present" averages only over classes
            that occur in the target or the prediction.

    Returns:
        mIoU in [0, 1].
    """
    iou = per_class_iou(conf)
    if classes == "all":
        return float(np.nan_to_num(iou, nan=0.0).mean())
    if classes == "present":
        return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")
    raise ValueError(f"classes must be 'all' or 'present', got {classes!r}")


def dice_foreground(pred, target) -> float:
    """Binary foreground Dice, foreground = label > 0: 2|P ∩ T| / (|P| + |T|).

    On binary maps this equals both the nnU-Net `dice` MDM uses for MoNuSeg and the GlaS
    object-level Dice (one object per map), docs/methods.md A.6 (ii). Both maps empty gives 1.0
    (GlaS `ObjDiceLoss` convention; nnU-Net would return NaN).

    Args:
        pred, target: [...] int label maps of equal shape.

    Returns:
        Dice in [0, 1].
    """
    pred, target = _as_int_maps(pred, target)
    p, t = pred > 0, target > 0
    denom = p.sum() + t.sum()
    return 1.0 if denom == 0 else float(2.0 * np.logical_and(p, t).sum() / denom)


def derived_iou_from_dice(dice) -> np.ndarray | float:
    """IoU = D / (2 - D): how MDM reports GlaS "IoU" (derived, not measured; docs/methods.md A.6).

    Exact for a single pair of binary maps; applied to a Dice averaged over images it is
    not the mean per-image IoU, which is the reference's quirk this reproduces.

    Args:
        dice: scalar or array of Dice values in [0, 1].

    Returns:
        Same shape as `dice`.
    """
    d = np.asarray(dice, np.float64)
    if np.any((d < 0) | (d > 1)):
        raise ValueError(f"Dice must be in [0, 1], got {dice}")
    out = d / (2.0 - d)
    return float(out) if out.ndim == 0 else out


def aji(pred_instances, target_instances) -> float:
    """Aggregated Jaccard Index on instance maps (Kumar et al. 2017, TMI, Alg. 1).

    0 is background, every other integer one instance (ids need not be contiguous). For each
    target instance G_i the predicted instance S_j of highest IoU is paired:
    C += |G_i ∩ S_j|, U += |G_i ∪ S_j|; a predicted instance may be paired several times.
    A target instance overlapping no prediction adds |G_i| to U; every predicted instance
    never paired adds |S_j| to U. AJI = C / U. This is MoNuSeg's `get_fast_aji` as MDM
    calls it. Both maps empty gives 1.0.

    Args:
        pred_instances, target_instances: [H, W] int instance maps.

    Returns:
        AJI in [0, 1].
    """
    pred, target = _as_int_maps(pred_instances, target_instances)
    t_ids, t_inv = np.unique(target, return_inverse=True)
    p_ids, p_inv = np.unique(pred, return_inverse=True)
    joint = np.zeros((t_ids.size, p_ids.size), np.int64)
    np.add.at(joint, (t_inv.ravel(), p_inv.ravel()), 1)
    t_fg, p_fg = t_ids != 0, p_ids != 0
    t_area, p_area = joint.sum(1)[t_fg], joint.sum(0)[p_fg]
    inter = joint[np.ix_(t_fg, p_fg)]
    if t_area.size == 0 and p_area.size == 0:
        return 1.0
    union = t_area[:, None] + p_area[None, :] - inter
    overlap = inter.max(1, initial=0) > 0
    best = (inter / np.maximum(union, 1)).argmax(1) if p_area.size else np.zeros(0, int)
    rows = np.nonzero(overlap)[0]
    c = inter[rows, best[rows]].sum()
    u = union[rows, best[rows]].sum() + t_area[~overlap].sum()
    u += p_area[np.setdiff1d(np.arange(p_area.size), best[rows])].sum()
    return float(c / u)


def aji_binary(pred, target) -> float:
    """AJI with each binary foreground (label > 0) taken as ONE instance, as MDM reports it.

    With a single instance per map, AJI reduces to foreground IoU (docs/methods.md A.6 (ii)).
    For the proper instance-level AJI of a binary prediction use
    `aji(label_instances(pred), target_instances)`.

    Args:
        pred, target: [H, W] int label maps.

    Returns:
        AJI in [0, 1].
    """
    pred, target = _as_int_maps(pred, target)
    return aji((pred > 0).astype(np.int64), (target > 0).astype(np.int64))


def label_instances(binary, connectivity: int = 1) -> np.ndarray:
    """Instance map from a binary foreground map by connected components.

    Args:
        binary: [H, W] map; foreground = value > 0.
        connectivity: 1 for 4-connectivity, 2 for 8-connectivity.

    Returns:
        [H, W] int64 map, 0 background and 1..n the components.
    """
    binary = np.asarray(binary)
    if binary.ndim != 2:
        raise ValueError(f"label_instances expects an [H, W] map, got shape {binary.shape}")
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 or 2, got {connectivity}")
    structure = ndimage.generate_binary_structure(2, connectivity)
    labels, _ = ndimage.label(binary > 0, structure=structure)
    return labels.astype(np.int64)


def independent_model_scores(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]], num_classes: int, ignore_label: int = 255
) -> dict:
    """Scores M models separately and reports mean ± std over them (docs/methods.md A.6 (ii)).

    Per model: mIoU (classes="all") of the confusion matrix summed over all images;
    foreground Dice and binary AJI averaged over images (MDM `compute_dice`,
    `compute_aji`); "derived_iou" = D / (2 - D) of that mean Dice (the GlaS quirk).

    Args:
        chunks: pairs (predictions [M, b, H, W], targets [b, H, W]) covering the test set.
        num_classes: K.
        ignore_label: target value left out of the confusion matrix.

    Returns:
        {"miou" | "dice" | "derived_iou" | "aji": {"mean", "std", "per_model"}}.
    """
    conf, dice, aji = 0, [], []
    for preds, target in chunks:
        if preds.shape[1:] != target.shape:
            raise ValueError(f"predictions {preds.shape} do not match targets {target.shape}")
        conf = conf + np.stack(
            [confusion_matrix(p, target, num_classes, ignore_label) for p in preds]
        )
        pairs = [[(p, t) for p, t in zip(m, target, strict=True)] for m in preds]
        dice.append([[dice_foreground(p, t) for p, t in m] for m in pairs])
        aji.append([[aji_binary(p, t) for p, t in m] for m in pairs])
    if not dice:
        raise ValueError("no test images")
    per_model = {
        "miou": np.array([miou(c) for c in conf]),
        "dice": np.concatenate(dice, axis=1).mean(1),
        "aji": np.concatenate(aji, axis=1).mean(1),
    }
    per_model["derived_iou"] = np.asarray(derived_iou_from_dice(per_model["dice"]))
    return {
        name: {"mean": float(v.mean()), "std": float(v.std()), "per_model": v.tolist()}
        for name, v in per_model.items()
    }
