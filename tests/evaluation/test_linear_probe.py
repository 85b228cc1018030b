"""Linear probe on scikit-learn digits raw pixels (docs/methods.md F), against scikit-learn."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from diffssl_jax.evaluation import linear_probe as lp

L2 = 1e-4


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return train_test_split(x / 16.0, y, test_size=450, stratify=y, random_state=0)


@pytest.fixture(scope="module")
def probe(digits):
    x_train, _, y_train, _ = digits
    return lp.fit_linear_probe(x_train, y_train, num_classes=10, l2=L2)


def test_probe_reaches_digits_accuracy_with_all_labels(digits, probe):
    _, x_test, _, y_test = digits
    assert lp.accuracy(probe, x_test, y_test) >= 0.95


def test_probe_standardises_with_train_statistics(digits, probe):
    x_train = digits[0]
    np.testing.assert_allclose(probe.mean, x_train.mean(0), atol=1e-6)
    np.testing.assert_allclose(probe.std, np.sqrt(x_train.var(0) + 1e-6), rtol=1e-5)


def test_probe_matches_sklearn_logistic_regression(digits, probe):
    x_train, x_test, y_train, _ = digits
    mean, std = x_train.mean(0), np.sqrt(x_train.var(0) + 1e-6)
    # mean CE + (l2/2)||W||^2  ==  (1 / (C N)) * (C sum CE + ||W||^2 / 2)  with C = 1/(l2 N).
    clf = LogisticRegression(C=1.0 / (L2 * len(y_train)), max_iter=5000, tol=1e-8)
    clf.fit((x_train - mean) / std, y_train)
    ours = np.asarray(lp.predict(probe, x_test)).argmax(-1)
    assert np.mean(ours == clf.predict((x_test - mean) / std)) >= 0.98
    np.testing.assert_allclose(np.asarray(probe.weights), clf.coef_.T, atol=0.02)


def test_adam_minibatch_path_learns(digits):
    x_train, x_test, y_train, y_test = digits
    probe = lp.fit_linear_probe(
        x_train, y_train, num_classes=10, batch_size=128, num_steps=500, lr=1e-2, normalize="none"
    )
    np.testing.assert_array_equal(probe.std, 1.0)
    assert lp.accuracy(probe, x_test, y_test) >= 0.93


def test_label_budget_indices_are_stratified_and_seeded():
    labels = np.repeat(np.arange(4), 25)
    a = lp.label_budget_indices(labels, 10, seed=0)
    b = lp.label_budget_indices(labels, 10, seed=1)
    np.testing.assert_array_equal(np.bincount(labels[a]), [10, 10, 10, 10])
    assert len(np.unique(a)) == 40
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, lp.label_budget_indices(labels, 10, seed=0))
    np.testing.assert_array_equal(lp.label_budget_indices(labels, None, seed=0), np.arange(100))
    with pytest.raises(ValueError, match="fewer than 30"):
        lp.label_budget_indices(labels, 30, seed=0)
    with pytest.raises(ValueError, match="per_class"):
        lp.label_budget_indices(labels, 0, seed=0)


def test_evaluate_probe_reports_budgets(digits):
    x_train, x_test, y_train, y_test = digits
    out = lp.evaluate_probe(x_train, y_train, x_test, y_test, budgets=(None, 10), seeds=(0, 1, 2))
    assert set(out) == {"all", "10_per_class"}
    assert len(out["all"]["accuracies"]) == 1 and out["all"]["std"] == 0.0
    assert out["all"]["num_labels"] == len(y_train) and out["all"]["mean"] >= 0.95
    few = out["10_per_class"]
    assert len(few["accuracies"]) == 3 and few["num_labels"] == 100
    assert few["std"] > 0.0
    assert 0.7 <= few["mean"] < out["all"]["mean"]


def test_bad_input_raises():
    x, y = np.zeros((6, 3), np.float32), np.array([0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        lp.fit_linear_probe(x[:, 0], y, num_classes=3)
    with pytest.raises(ValueError, match="shape"):
        lp.fit_linear_probe(x, y[:5], num_classes=3)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        lp.fit_linear_probe(x, y, num_classes=2)
    with pytest.raises(ValueError, match="integers"):
        lp.fit_linear_probe(x, y.astype(float), num_classes=3)
    with pytest.raises(ValueError, match="num_classes"):
        lp.fit_linear_probe(x, np.zeros(6, int), num_classes=1)
    with pytest.raises(ValueError, match="normalize"):
        lp.fit_linear_probe(x, y, num_classes=3, normalize="layernorm")
    with pytest.raises(ValueError, match="batch_size"):
        lp.fit_linear_probe(x, y, num_classes=3, batch_size=7)
    probe = lp.fit_linear_probe(x + np.arange(6)[:, None], y, num_classes=3, num_steps=5)
    with pytest.raises(ValueError, match="D=3"):
        lp.predict(probe, np.zeros((2, 4)))
