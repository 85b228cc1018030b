"""Attribute probes: ridge closed form, Pearson r, mean AP, restriction to dims."""

import numpy as np
import pytest

from diffssl_jax.evaluation import attributes


def test_ridge_recovers_a_linear_map_and_pearson_is_one_on_exact_predictions():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    w = rng.normal(size=(5, 2))
    y = x @ w + 3.0
    w_hat, b_hat = attributes.fit_ridge(x, y, l2=0.0)
    np.testing.assert_allclose(w_hat, w, atol=1e-8)
    np.testing.assert_allclose(b_hat, [3.0, 3.0], atol=1e-8)
    np.testing.assert_allclose(attributes.pearson_r(y, y), [1.0, 1.0])
    np.testing.assert_allclose(attributes.pearson_r(-y, y), [-1.0, -1.0])
    assert attributes.pearson_r(np.ones((4, 1)), rng.normal(size=(4, 1)))[0] == 0.0


def test_regression_and_multilabel_scores_separate_informative_from_noise_dims():
    rng = np.random.default_rng(1)
    n = 300
    signal = rng.normal(size=(n, 2))
    x = np.concatenate([signal, rng.normal(size=(n, 6))], 1)
    y = signal + 0.1 * rng.normal(size=(n, 2))
    labels = (signal > 0).astype(int)
    good = attributes.regression_scores(x[:200], y[:200], x[200:], y[200:])
    bad = attributes.regression_scores(x[:200, 2:], y[:200], x[200:, 2:], y[200:])
    assert good["r"].min() > 0.95 and bad["r"].max() < 0.5
    assert good["mse"].max() < 0.1 < bad["mse"].min()
    ap = attributes.multilabel_map(x[:200], labels[:200], x[200:], labels[200:])
    chance = attributes.multilabel_map(x[:200, 2:], labels[:200], x[200:, 2:], labels[200:])
    assert ap["mean_ap"] > 0.95 and chance["mean_ap"] < 0.75


def test_digit_scores_by_dims_name_every_group():
    rng = np.random.default_rng(2)
    n = 120
    labels = np.arange(n) % 10
    attrs = {
        "class": labels,
        **{name: rng.normal(size=n) for name in attributes.REGRESSION_NAMES},
    }
    x = np.concatenate([np.eye(10)[labels], rng.normal(size=(n, 4))], 1)
    split = lambda a: (a[:80], a[80:])  # noqa: E731
    tr = {k: v[:80] for k, v in attrs.items()}
    te = {k: v[80:] for k, v in attrs.items()}
    out = attributes.scores_by_dims(*split(x)[:1], tr, split(x)[1], te, {"cls": np.arange(10)})
    assert set(out) == {"all", "cls"} and out["cls"]["num_dims"] == 10
    assert out["cls"]["class_accuracy"] == pytest.approx(1.0)
    assert out["cls"]["class_map"] == pytest.approx(1.0)
    assert "rows" not in attributes.format_attribute_results(out)


def test_joint_logistic_probes_equal_sklearn_per_label_and_skip_undefined_aps():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 6))
    y = x @ rng.normal(size=(6, 3)) + rng.normal(size=(300, 3)) > 0
    scores = attributes._logistic_scores(x, y, x[:20], c=0.1)
    for k in range(3):
        ref = LogisticRegression(C=0.1, max_iter=2000).fit(x, y[:, k]).decision_function(x[:20])
        np.testing.assert_allclose(scores[:, k], ref, atol=1e-2 * np.abs(ref).max())
    test_y = y[200:].copy()
    test_y[:, 2] = False  # no positive: AP undefined, left out of the mean
    out = attributes.multilabel_map(x[:200], y[:200], x[200:], test_y)
    assert np.isnan(out["ap"][2]) and out["mean_ap"] == pytest.approx(np.mean(out["ap"][:2]))
