"""How a frozen representation is read, chosen on validation data.

A readout is the feature block(s) read, the diffusion time `t` at which they are read, the
grid of the average pooling before a linear probe (1 = global average; 2 and 4 keep a coarse
layout, as flattened raw pixels keep all of it) and the probe's l2 strength. Every choice is
made on a validation split that holds no test image (docs/results.md, "Protocol"): probes are
fitted on labelled `train_minus_validation` digits and scored on `validation` digits
(`data.DigitsSource`); the segmentation ensembles likewise. The network itself is pretrained
on the whole train split without labels, so validation labels reach no choice but these.

Selection rule: the candidate with the highest validation score, the first in candidate order
on ties. Probe: accuracy with `per_class` labels per class, the label-efficient regime the
papers report (mean over labelled-subset seeds); segmentation: mIoU.
"""

from collections.abc import Sequence

import numpy as np

from diffssl_jax.evaluation import digit_tasks, linear_probe
from diffssl_jax.evaluation.features import FeatureExtractor, grid_pool
from diffssl_jax.models.unet import unet_decoder_channels

L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
POOL_GRIDS = (1, 2, 4)


def network_blocks(config) -> tuple[str, ...]:
    """Every feature block a recipe's network returns, coarse to fine (U-Net `dec_i`) or
    input to output (ViT `block_i`, then `encoder`, the normalised encoder output)."""
    m = config.model
    if "channel_mult" in m:
        decoder = unet_decoder_channels(m.model_channels, tuple(m.channel_mult), m.num_res_blocks)
        return tuple(f"dec_{i}" for i in range(len(decoder)))
    return (*(f"block_{i}" for i in range(m.depth)), "encoder")


def below_full_resolution(config) -> tuple[str, ...]:
    """The U-Net decoder blocks below the input resolution: docs/methods.md A.4's rule (MDM
    never reads the full-resolution decoder blocks, close to a copy of an x0 prediction)."""
    m = config.model
    decoder = unet_decoder_channels(m.model_channels, tuple(m.channel_mult), m.num_res_blocks)
    return tuple(f"dec_{i}" for i, (_, factor) in enumerate(decoder) if factor > 1)


def dense_maps(extractor: FeatureExtractor, images, t: float, blocks) -> dict:
    """`{block: [N, h, w, c]}` of `images` at time `t` (host arrays)."""
    return extractor.replace(
        t=float(t), blocks=tuple(blocks), pooled=False, concat=False, resize_to=None
    )(images)


def probe_scores(
    train_x, train_y, eval_x, eval_y, *, per_class: int, seeds, l2: float, with_all=True
) -> dict:
    """Accuracy on `eval_*` of probes fitted on `per_class` labels per class (one stratified
    subset per seed) and, `with_all`, on all of `train_*`:
    `{"per_class", "per_class_std", "per_class_values"[, "all"]}`."""
    out = linear_probe.evaluate_probe(
        train_x,
        train_y,
        eval_x,
        eval_y,
        num_classes=digit_tasks.NUM_DIGIT_CLASSES,
        budgets=(per_class, None) if with_all else (per_class,),
        seeds=tuple(seeds),
        l2=l2,
    )
    subset = out[f"{per_class}_per_class"]
    scores = {
        "per_class": subset["mean"],
        "per_class_std": subset["std"],
        "per_class_values": [float(a) for a in subset["accuracies"]],
    }
    return {**scores, "all": out["all"]["mean"]} if with_all else scores


def sweep_probe(
    extractor: FeatureExtractor,
    train,
    validation,
    *,
    blocks: Sequence[str],
    ts: Sequence[float],
    grids: Sequence[int] = POOL_GRIDS,
    per_class: int = 10,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    l2: float = 1e-4,
) -> list[dict]:
    """Validation probe accuracy with `per_class` labels per class of every (t, single
    block, pool grid) (the all-labels probe is fitted only at the chosen readout).

    Args:
        extractor: the representation (its own t and blocks are replaced).
        train, validation: sources with `images` and `labels` (train_minus_validation and
            validation digits).
        blocks, ts, grids: the candidates; a grid that does not divide a block's map is
            skipped for that block.
        per_class, seeds: the label-efficient budget and its labelled-subset seeds.
        l2: the probe's strength during the sweep (chosen afterwards: `choose_l2`).

    Returns:
        One dict per candidate: `{"block", "t", "grid", "dim", "per_class",
        "per_class_std"}`, in candidate order (t, then block, then grid).
    """
    rows = []
    for t in ts:
        train_maps = dense_maps(extractor, train.images, t, blocks)
        val_maps = dense_maps(extractor, validation.images, t, blocks)
        for block in blocks:
            for grid in grids:
                if train_maps[block].shape[1] % grid:
                    continue
                train_x = np.asarray(grid_pool(train_maps[block], grid))
                val_x = np.asarray(grid_pool(val_maps[block], grid))
                scores = probe_scores(
                    train_x,
                    train.labels,
                    val_x,
                    validation.labels,
                    per_class=per_class,
                    seeds=seeds,
                    l2=l2,
                    with_all=False,
                )
                rows.append(
                    {
                        "block": block,
                        "t": float(t),
                        "grid": int(grid),
                        "dim": int(train_x.shape[1]),
                        **scores,
                    }
                )
    return rows


def choose(rows: Sequence[dict], key: str) -> dict:
    """The row with the highest `row[key]`; the first on ties (candidate order)."""
    if not rows:
        raise ValueError("no candidates to choose from")
    return max(rows, key=lambda row: (row[key], -rows.index(row)))


def pooled_features(extractor: FeatureExtractor, images, *, t, blocks, grid) -> np.ndarray:
    """`[N, D]` grid-pooled features of `images` at one readout."""
    return extractor.replace(
        t=float(t),
        blocks=tuple(blocks),
        pooled=True,
        concat=False,
        resize_to=None,
        pooling="mean",
        pool_grid=int(grid),
    )(images)


def choose_l2(
    train_x, train_y, val_x, val_y, *, per_class=10, seeds=(0, 1, 2, 3, 4), l2s=L2_GRID
) -> dict:
    """The probe's l2 per budget, chosen on validation: `{"all": l2, "per_class": l2,
    "scores": [{"l2", "all", "per_class", "per_class_std"}, ...]}`."""
    scores = [
        {
            "l2": l2,
            **probe_scores(train_x, train_y, val_x, val_y, per_class=per_class, seeds=seeds, l2=l2),
        }
        for l2 in l2s
    ]
    return {
        "all": choose(scores, "all")["l2"],
        "per_class": choose(scores, "per_class")["l2"],
        "scores": scores,
    }
