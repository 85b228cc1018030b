"""One evaluation of a representation: linear probe and label-efficient segmentation.

The digits protocols of docs/methods.md F, driven by `config.eval`:
(a) a linear probe (`linear_probe.evaluate_probe`) on features average-pooled on a
`probe_pool_grid` x `probe_pool_grid` grid (1 = global) of the digits train /
test split, for each budget of `probe_budgets` (0 = all labels, k = k per class over
`probe_seeds` seeds); (b) if `segmentation`, digit segmentation: the pixel-classifier
protocol (i) of docs/methods.md A.6 with `seg_num_labelled` labelled train images drawn with
each of `seg_seeds` seeds, `seg_num_models` MLPs and a majority vote, on per-pixel
features resized to the image size and concatenated; test mIoU over the 11 classes
(ddpm-segmentation convention, `seg_metrics.miou`) and foreground Dice (mean over images).
On the canvases of several digits (`data.canvases`, `config.data.name = "canvases"`) only
(b) runs, on the canvases' own per-pixel labels (the same 11 classes), with
`seg_num_labelled` labelled train canvases, scored on the `config.eval.split` canvases
('validation' or 'test').
"""

import ast
import json
import os

import ml_collections
import numpy as np

from diffssl_jax import storage
from diffssl_jax.data import DigitsSource, source_for
from diffssl_jax.evaluation import digit_tasks, linear_probe, seg_metrics, segmentation
from diffssl_jax.evaluation.features import FeatureExtractor, load_features
from diffssl_jax.training.checkpoint import load_config

# Which evaluations exist for which data; the error for other datasets lists them.
EVALUATIONS = {
    "digits": ("linear probe", "digit segmentation"),
    "canvases": ("digit-canvas segmentation",),
}
PLANNED = "GlaS and MoNuSeg segmentation and a CIFAR-10 linear probe come later"


def _mean_std(values) -> dict:
    values = [float(v) for v in values]
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}


def _mean_dice(pred, target) -> float:
    """Foreground Dice averaged over images (MDM `compute_dice`), `[N, H, W]` label maps."""
    return float(
        np.mean([seg_metrics.dice_foreground(p, t) for p, t in zip(pred, target, strict=True)])
    )


def _digits(config):
    if config.data.name not in EVALUATIONS:
        raise ValueError(
            f"no representation evaluation for dataset {config.data.name!r}: evaluations "
            f"exist for {EVALUATIONS} ({PLANNED})"
        )
    if config.data.name == "canvases":
        return source_for(config.data, "train"), source_for(config.data, config.eval.split)
    size = config.data.image_size or 16
    return DigitsSource("train", image_size=size), DigitsSource("test", image_size=size)


def segmentation_masks(source) -> np.ndarray:
    """`[N, H, W]` per-pixel labels in [0, 11): a source's own `segmentation` maps (the
    canvases), else the single-digit rule `digit_tasks.digit_segmentation_labels`."""
    if "segmentation" in source.extras:
        return source.extras["segmentation"]
    return digit_tasks.digit_segmentation_labels(source.images, source.labels)


def probe_digits(extractor: FeatureExtractor, config, train, test, **probe_kwargs) -> dict:
    """Linear-probe test accuracy per label budget (see the module docstring)."""
    pooled = extractor.replace(
        pooled=True, pool_grid=config.eval.probe_pool_grid, resize_to=None, concat=False
    )
    budgets = [None if b == 0 else int(b) for b in config.eval.probe_budgets]
    return linear_probe.evaluate_probe(
        pooled(train.images),
        train.labels,
        pooled(test.images),
        test.labels,
        num_classes=digit_tasks.NUM_DIGIT_CLASSES,
        budgets=budgets,
        seeds=tuple(range(config.eval.probe_seeds)),
        **probe_kwargs,
    )


def segment_digits(
    extractor: FeatureExtractor, config, train, test, *, max_epochs=100, num_examples=0
) -> dict:
    """Digit-segmentation test mIoU and foreground Dice, mean ± std over `seg_seeds`.

    With `num_examples` > 0 the result also holds `"examples"`: the first `num_examples`
    test images `[n, H, W, 1]`, their label maps and the first seed's predictions
    `[n, H, W]` (numpy, for figures; never written to JSON).
    """
    cfg = config.eval
    dense = extractor.replace(pooled=False, concat=True, resize_to=train.images.shape[1:3])
    feature_fn = lambda images: dense(images)["features"]  # noqa: E731
    train_masks, test_masks = segmentation_masks(train), segmentation_masks(test)
    num_classes = digit_tasks.NUM_SEGMENTATION_CLASSES
    if not 1 <= cfg.seg_num_labelled <= len(train):
        raise ValueError(f"seg_num_labelled must be in [1, {len(train)}]: {cfg.seg_num_labelled}")
    mious, dices, examples = [], [], None
    for seed in range(cfg.seg_seeds):
        chosen = np.sort(
            np.random.default_rng(seed).choice(len(train), cfg.seg_num_labelled, replace=False)
        )
        ensemble = segmentation.train_pixel_ensemble(
            feature_fn,
            train.images[chosen],
            train_masks[chosen],
            num_classes=num_classes,
            num_models=cfg.seg_num_models,
            max_epochs=max_epochs,
            min_pixels_per_class=1,  # 20 is for 256² images; a 16x16 digit has few pixels
            feature_batch_size=cfg.feature_batch_size,
            seed=seed,
        )
        pred = segmentation.predict_ensemble(
            ensemble, feature_fn, test.images, batch_size=cfg.feature_batch_size
        )
        mious.append(seg_metrics.miou(seg_metrics.confusion_matrix(pred, test_masks, num_classes)))
        dices.append(_mean_dice(pred, test_masks))
        if seed == 0 and num_examples > 0:
            examples = {
                "images": test.images[:num_examples],
                "target": test_masks[:num_examples],
                "prediction": pred[:num_examples],
            }
    results = {
        "miou": _mean_std(mious),
        "dice": _mean_std(dices),
        "num_labelled": int(cfg.seg_num_labelled),
        "num_models": int(cfg.seg_num_models),
        "max_epochs": int(max_epochs),
    }
    if examples is not None:
        results["examples"] = examples
    return results


def _extractor_and_config(workdir_or_extractor, config):
    """(extractor, config, default out_path) from a workdir or a `FeatureExtractor`."""
    if isinstance(workdir_or_extractor, FeatureExtractor):
        if config is None:
            raise ValueError("pass the config (its eval and data groups) with a FeatureExtractor")
        return workdir_or_extractor, config, None
    if not isinstance(workdir_or_extractor, str | os.PathLike):
        raise TypeError(f"expected a workdir or a FeatureExtractor, got {workdir_or_extractor!r}")
    workdir = os.fspath(workdir_or_extractor)
    if not storage.path(workdir).is_dir():
        raise FileNotFoundError(f"workdir {workdir!r} does not exist: train it first")
    config = load_config(workdir) if config is None else config
    extractor = load_features(
        workdir,
        t=config.eval.feature_t,
        blocks=tuple(config.eval.feature_blocks),
        batch_size=config.eval.feature_batch_size,
    )
    return extractor, config, str(storage.path(workdir) / "eval" / "results.json")


def evaluate_representation(
    workdir_or_extractor,
    config=None,
    *,
    out_path=None,
    seg_max_epochs=100,
    probe_steps=1000,
    num_seg_examples=0,
) -> dict:
    """Linear probe and (if `config.eval.segmentation`) digit segmentation of a representation.

    Args:
        workdir_or_extractor: a trained workdir (its EMA parameters, at `config.eval`'s
            `feature_t` and `feature_blocks`) or a `FeatureExtractor` (for example
            `random_init_features(config)` or `raw_pixel_features()`).
        config: supplies the `eval` and `data` groups; None for the workdir's own config.
        out_path: where to write the results JSON; None for `workdir/eval/results.json`
            (nothing is written for an extractor without `out_path`).
        seg_max_epochs: epoch cap of the pixel classifiers (protocol (i): 100, early stop).
        probe_steps: L-BFGS iteration cap of the linear probe.
        num_seg_examples: if > 0 (and segmentation runs), `results["segmentation_examples"]`
            holds the first test images, label maps and first-seed predictions (numpy arrays
            for figures; not written to the JSON).

    Returns:
        `{"linear_probe": {budget: {"mean", "std", ...}}, "segmentation": {"miou", "dice",
        ...} or None, "features": settings, "config": config dict, "feature_dims": ...}`
        (canvases: `"linear_probe"` is `{}`).

    Raises:
        ValueError: for data other than the digits and the canvases (it says which
            evaluations exist).
    """
    extractor, config, default_path = _extractor_and_config(workdir_or_extractor, config)
    train, test = _digits(config)
    shapes = extractor.block_shapes(train.images.shape[1:])
    results = {
        "features": extractor.settings(),
        "feature_dims": {name: list(shape) for name, shape in shapes.items()},
        "linear_probe": {},
        "segmentation": None,
    }
    if "linear probe" in EVALUATIONS[config.data.name]:
        results["linear_probe"] = probe_digits(
            extractor, config, train, test, num_steps=probe_steps
        )
    if config.eval.segmentation:
        results["segmentation"] = segment_digits(
            extractor,
            config,
            train,
            test,
            max_epochs=seg_max_epochs,
            num_examples=num_seg_examples,
        )
    examples = results["segmentation"] and results["segmentation"].pop("examples", None)
    results["config"] = json.loads(config.to_json())
    out_path = out_path or default_path
    if out_path:
        if storage.is_primary():
            storage.write_json(out_path, results, indent=2)
        results["path"] = str(out_path)
    if examples:
        results["segmentation_examples"] = examples
    return results


def apply_eval_overrides(config, overrides) -> ml_collections.ConfigDict:
    """A copy of `config` with `["key=value", ...]` set in its `eval` group.

    Values are Python literals (`probe_budgets=(0, 10)`, `segmentation=False`) or, failing
    that, strings. An unknown key raises (the group is locked), naming the nearest one.
    """
    config = ml_collections.ConfigDict(config.to_dict())
    config.lock()
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"eval override {item!r} is not key=value")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            value = text.strip()
        setattr(config.eval, key.strip(), value)
    return config


def format_results(results: dict) -> str:
    """A compact text table of the mean ± std numbers of `evaluate_representation`."""
    rows = [
        (f"linear probe, {budget.replace('_', ' ')}", r)
        for budget, r in results["linear_probe"].items()
    ]
    if results["segmentation"]:
        seg = results["segmentation"]
        rows += [
            (f"segmentation {k}, {seg['num_labelled']} labelled", seg[k]) for k in ("miou", "dice")
        ]
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"{name:<{width}}  {r['mean']:.4f} ± {r['std']:.4f}" for name, r in rows)
