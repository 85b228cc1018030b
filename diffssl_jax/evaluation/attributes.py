"""Attribute probes on frozen feature vectors, optionally restricted to chosen dims.

DiTi's protocols (docs/methods.md B.6), on any pooled features:
- multi-label classification (CelebA's 40 attributes): one L2-regularised logistic
  regression per label on standardised features (sklearn's objective, all labels solved in
  one L-BFGS run); test **mean average precision** over the labels (sklearn
  `average_precision_score`, as the reference);
- regression (LFW's 73 attributes): ridge regression on standardised features to the
  train-standardised targets; test **mean Pearson r** and **mean MSE** (in train-std units,
  so attributes of different scales weigh alike) over the attributes.
Restricting the probe to chosen feature dims (`Recipe.feature_groups`: DiTi's subsets of z)
is the "intervention" of the authors' few-shot table: which subsets carry which attribute.

Departures, stated: the reference trains Linear(512 -> K) with Adam for 15 epochs and keeps the
best epoch by test score; here the same linear models are fitted to their regularised optimum
(logistic: L-BFGS; ridge: closed form), regularised as chosen on a 20% split of the train set.

On the digits (docs/methods.md F): class through the multinomial linear probe of `linear_probe`
(accuracy, and mean AP of its log-probabilities, one class against the rest: one fit instead of
one logistic regression per class), and ink mass, slant, width and height (regression). On
CelebA (`configs/diti/celeba64.py`): the 40 attributes every example of the tfds source
carries (`attributes [40]`), probed multi-label, train -> test split.
"""

import functools

import jax
import numpy as np
import scipy.optimize
import scipy.special
from sklearn.metrics import average_precision_score

from diffssl_jax import data, recipe_inputs, storage
from diffssl_jax.data import DigitsSource
from diffssl_jax.evaluation import digit_tasks, linear_probe
from diffssl_jax.evaluation.features import load_features

L2_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # ridge strengths, x N (per-example scale)
C_GRID = (1e-3, 1e-2, 1e-1, 1.0)  # inverse logistic strengths (sklearn C)
REGRESSION_NAMES = ("ink_mass", "slant", "width", "height")


def _standardize(train, test):
    mean, std = train.mean(0), train.std(0) + 1e-6
    return (train - mean) / std, (test - mean) / std


def _split(num: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(fit, validation) indices: a seeded 80/20 split of `num` train examples."""
    order = np.random.default_rng(seed).permutation(num)
    cut = int(0.8 * num)
    return order[:cut], order[cut:]


def fit_ridge(x, y, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """argmin_W,b (1/N) ||x W + b - y||^2 + l2 ||W||^2 (closed form, float64): (W [D, K], b [K])."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc = x - x_mean
    gram = xc.T @ xc + l2 * len(x) * np.eye(x.shape[1])
    w = np.linalg.solve(gram, xc.T @ (y - y_mean))
    return w, y_mean - x_mean @ w


def pearson_r(pred, target) -> np.ndarray:
    """Per-column Pearson correlation of `[N, K]` arrays: `[K]` (0 for a constant column)."""
    p, t = pred - pred.mean(0), target - target.mean(0)
    denom = np.sqrt((p**2).sum(0) * (t**2).sum(0))
    return np.where(denom > 0, (p * t).sum(0) / np.where(denom > 0, denom, 1.0), 0.0)


def regression_scores(train_x, train_y, test_x, test_y) -> dict:
    """Ridge probe: per-attribute test Pearson r and MSE (train-standardised targets).

    Returns:
        `{"r": [K], "mse": [K], "l2": chosen strength}`.
    """
    train_x, test_x = _standardize(np.asarray(train_x), np.asarray(test_x))
    train_y, test_y = _standardize(np.asarray(train_y, np.float64), np.asarray(test_y))
    fit, val = _split(len(train_x))

    def val_mse(l2):
        w, b = fit_ridge(train_x[fit], train_y[fit], l2)
        return np.mean((train_x[val] @ w + b - train_y[val]) ** 2)

    l2 = min(L2_GRID, key=val_mse)
    w, b = fit_ridge(train_x, train_y, l2)
    pred = test_x @ w + b
    return {"r": pearson_r(pred, test_y), "mse": ((pred - test_y) ** 2).mean(0), "l2": l2}


def _logistic_objective(params, x, y, c: float):
    """`(f, grad)` of sum_k [c sum_n log(1 + exp(-s_nk z_nk)) + ||W_k||^2 / 2], z = x W + b,
    s = 2 y - 1: sklearn's L2 logistic regression (intercept not penalised), one independent
    problem per label k, stacked in `params = [W; b]` (`[(D + 1) K]`)."""
    d, k = x.shape[1], y.shape[1]
    w, b = params[: d * k].reshape(d, k), params[d * k :]
    z = x @ w + b
    sign = 2.0 * y - 1.0
    loss = c * np.logaddexp(0.0, -sign * z).sum() + 0.5 * np.sum(w**2)
    dz = c * (scipy.special.expit(z) - y)  # d loss / dz
    return loss, np.concatenate([(x.T @ dz + w).ravel(), dz.sum(0)])


def _logistic_scores(train_x, train_y, test_x, c: float) -> np.ndarray:
    """`[M, K]` decision scores of K logistic regressions with inverse strength c, solved as
    one L-BFGS problem (they are independent; sklearn's solver and tolerances); a label
    with one class in `train_y` scores 0 everywhere (there is nothing to rank by)."""
    x, y = np.asarray(train_x, np.float64), np.asarray(train_y, np.float64)
    d, k = x.shape[1], y.shape[1]
    options = {"maxiter": 2000, "maxls": 50, "gtol": 1e-4, "ftol": 64 * np.finfo(float).eps}
    solution = scipy.optimize.minimize(
        _logistic_objective, np.zeros((d + 1) * k), args=(x, y, c), jac=True,
        method="L-BFGS-B", options=options,
    )  # fmt: skip
    w, b = solution.x[: d * k].reshape(d, k), solution.x[d * k :]
    constant = y.min(0) == y.max(0)
    return np.where(constant, 0.0, np.asarray(test_x, np.float64) @ w + b)


def _label_aps(x_fit, y_fit, x_eval, y_eval, c: float) -> np.ndarray:
    """`[K]` APs of one logistic probe per label; NaN for a label without positives in
    `y_eval` (its AP is undefined)."""
    scores = _logistic_scores(x_fit, y_fit, x_eval, c)
    return np.array(
        [
            average_precision_score(y_eval[:, k], scores[:, k]) if y_eval[:, k].any() else np.nan
            for k in range(y_fit.shape[1])
        ]
    )


def multilabel_map(train_x, train_y, test_x, test_y) -> dict:
    """One logistic probe per label; test mean AP over the labels (`[N, K]` 0/1 targets).

    Labels without a positive test example are left out of the mean (AP NaN).

    Returns:
        `{"mean_ap": float, "ap": [K], "c": chosen inverse strength}`.
    """
    train_x, test_x = _standardize(np.asarray(train_x), np.asarray(test_x))
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    fit, val = _split(len(train_x))

    def val_map(c):
        return np.nanmean(_label_aps(train_x[fit], train_y[fit], train_x[val], train_y[val], c))

    c = max(C_GRID, key=val_map)
    ap = _label_aps(train_x, train_y, test_x, test_y, c)
    return {"mean_ap": float(np.nanmean(ap)), "ap": ap, "c": c}


def named_map_scores(train_x, train_y, test_x, test_y, names: tuple[str, ...]) -> dict:
    """`multilabel_map` with the APs named: `{"mean_ap", "ap": {name: ap}, "c"}` (floats)."""
    out = multilabel_map(train_x, train_y, test_x, test_y)
    ap = dict(zip(names, map(float, out["ap"]), strict=True))
    return {"mean_ap": out["mean_ap"], "ap": ap, "c": float(out["c"])}


def digit_attribute_scores(train_x, train_attrs, test_x, test_attrs) -> dict:
    """The digits' attribute probes (module docstring) on `[N, D]` feature vectors.

    Args:
        train_x, test_x: features; train_attrs, test_attrs: `digit_tasks.digit_attributes`.

    Returns:
        `{"class_accuracy", "class_map", "r": {name: r}, "mse": {name: mse}, "mean_r",
        "mean_mse"}` (floats).
    """
    classes = np.arange(digit_tasks.NUM_DIGIT_CLASSES)
    probe = linear_probe.fit_linear_probe(train_x, train_attrs["class"], num_classes=len(classes))
    logits = np.asarray(jax.nn.log_softmax(linear_probe.predict(probe, test_x)))
    onehot = test_attrs["class"][:, None] == classes
    class_ap = [average_precision_score(onehot[:, k], logits[:, k]) for k in classes]
    stack = lambda attrs: np.stack([attrs[n] for n in REGRESSION_NAMES], 1)  # noqa: E731
    reg = regression_scores(train_x, stack(train_attrs), test_x, stack(test_attrs))
    return {
        "class_accuracy": float(np.mean(logits.argmax(1) == test_attrs["class"])),
        "class_map": float(np.mean(class_ap)),
        "r": dict(zip(REGRESSION_NAMES, map(float, reg["r"]), strict=True)),
        "mse": dict(zip(REGRESSION_NAMES, map(float, reg["mse"]), strict=True)),
        "mean_r": float(np.mean(reg["r"])),
        "mean_mse": float(np.mean(reg["mse"])),
    }


def scores_by_dims(
    train_x, train_attrs, test_x, test_attrs, groups: dict, score_fn=digit_attribute_scores
) -> dict:
    """`score_fn(train_x, train_attrs, test_x, test_attrs)` on all dims ("all") and on the
    dims of each `{name: dims}` group; each result also gets its "num_dims"."""
    results = {"all": score_fn(train_x, train_attrs, test_x, test_attrs)}
    for name, dims in groups.items():
        dims = np.asarray(dims)
        results[name] = score_fn(train_x[:, dims], train_attrs, test_x[:, dims], test_attrs)
        results[name]["num_dims"] = int(dims.size)
    results["all"]["num_dims"] = int(np.asarray(train_x).shape[1])
    return results


def _features_and_attributes(pooled, source, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features `[N, D]` and `attributes [N, K]` of every example of `source`, read
    `chunk` examples at a time (a whole CelebA split does not fit in memory as images)."""
    features, targets = [], []
    for start in range(0, len(source), chunk):
        examples = [source[i] for i in range(start, min(start + chunk, len(source)))]
        features.append(np.asarray(pooled(np.stack([e["image"] for e in examples]))))
        targets.append(np.stack([e["attributes"] for e in examples]))
    return np.concatenate(features), np.concatenate(targets)


def evaluate_multilabel_attributes(extractor, config, *, groups: dict | None = None) -> dict:
    """CelebA's protocol (B.6): one logistic probe per attribute of `config.data.attribute_keys`
    on pooled features, fitted on `config.data.split`, test mean AP on `config.eval.split`.

    Returns:
        `{group: named_map_scores(...) + {"num_dims"}}` for "all" and each of `groups`.
    """
    if "attribute_keys" not in config.data or not config.data.attribute_keys:
        raise ValueError(
            f"dataset {config.data.name!r} has no attribute probes: they need the digits or "
            "config.data.attribute_keys (CelebA's 40: configs/diti/celeba64.py)."
        )
    names = tuple(config.data.attribute_keys)
    pooled = extractor.replace(pooled=True, resize_to=None, concat=False)
    train_x, train_y = _features_and_attributes(pooled, data.source_for(config.data))
    test_x, test_y = _features_and_attributes(
        pooled, data.source_for(config.data, config.eval.split)
    )
    score_fn = functools.partial(named_map_scores, names=names)
    return scores_by_dims(train_x, train_y, test_x, test_y, groups or {}, score_fn=score_fn)


def evaluate_attributes(extractor, config, *, groups: dict | None = None) -> dict:
    """Attribute probes of a `FeatureExtractor` (pooled): on the digits, the digit probes on
    the digits train/test split; on any other dataset, `evaluate_multilabel_attributes`.

    Args:
        extractor: e.g. `features.load_features(workdir)`; it is pooled here.
        config: supplies `data` (and `eval.split` off the digits).
        groups: `{name: dims}` restrictions besides "all" (e.g. `feature_group_dims`).

    Returns:
        `{group: scores}` (`digit_attribute_scores` or `named_map_scores`, with "num_dims").
    """
    if config.data.name != "digits":
        return evaluate_multilabel_attributes(extractor, config, groups=groups)
    size = config.data.image_size or 16
    train, test = DigitsSource("train", image_size=size), DigitsSource("test", image_size=size)
    pooled = extractor.replace(pooled=True, resize_to=None, concat=False)
    return scores_by_dims(
        pooled(train.images),
        digit_tasks.digit_attributes(train.images, train.labels),
        pooled(test.images),
        digit_tasks.digit_attributes(test.images, test.labels),
        groups or {},
    )


def feature_group_dims(recipe, config) -> dict:
    """`{name: dims}` of `config.eval.subset_groups` (`{name: (first, last)}`, earliest first)
    under `recipe.feature_groups` (DiTi's subsets); `{}` for features without groups."""
    groups = dict(config.eval.get("subset_groups") or {})
    spans = dict(sorted(groups.items(), key=lambda item: tuple(item[1])))
    return recipe.feature_groups(spans) if recipe.feature_groups and spans else {}


def format_attribute_results(results: dict) -> str:
    """A text table: one row per group (class acc, class mAP, r per attribute, mean MSE; or,
    for multi-label results, the test mean AP over the attributes)."""
    if "mean_ap" in next(iter(results.values())):
        lines = [f"{'group':>9}  {'dims':>9}  {'mean AP':>9}"]
        lines += [f"{n:>9}  {s['num_dims']:>9}  {s['mean_ap']:>9.3f}" for n, s in results.items()]
        return "\n".join(lines)
    head = ["group", "dims", "cls acc", "cls mAP", *REGRESSION_NAMES, "mean MSE"]
    lines = ["  ".join(f"{h:>9}" for h in head)]
    for name, s in results.items():
        row = [name, s["num_dims"], s["class_accuracy"], s["class_map"], *s["r"].values()]
        row.append(s["mean_mse"])
        lines.append("  ".join(f"{v:>9.3f}" if isinstance(v, float) else f"{v!s:>9}" for v in row))
    return "\n".join(lines)


def evaluate_workdir_attributes(workdir: str, config, out_path: str | None = None) -> dict:
    """`evaluate_attributes` of a workdir's EMA features, on all dims and on each feature group
    of `config.eval.subset_groups` the recipe defines (`feature_group_dims`); writes the JSON
    to `out_path` (default `workdir/eval/attributes.json`, by process 0)."""
    extractor = load_features(
        workdir,
        t=config.eval.feature_t,
        blocks=tuple(config.eval.feature_blocks),
        batch_size=config.eval.feature_batch_size,
    )
    groups = feature_group_dims(recipe_inputs.load_recipe(workdir, config), config)
    results = evaluate_attributes(extractor, config, groups=groups)
    out_path = str(out_path or storage.path(workdir) / "eval" / "attributes.json")
    record = {"scores": results, "features": extractor.settings()}
    if storage.is_primary():
        storage.write_json(out_path, record, indent=2)
    return {"scores": results, "path": out_path}
