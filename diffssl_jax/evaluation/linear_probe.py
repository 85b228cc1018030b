"""Linear probe on frozen pooled features: multinomial logistic regression in JAX/optax.

Protocol (docs/methods.md C.2, MAE/l-DAE): pooled features -> parameter-free BatchNorm (train
statistics, no affine) -> linear layer. The small-scale protocol (docs/methods.md F) reports
test accuracy for label budgets "all" and k per class over several seeds.

Objective (the same as scikit-learn's `LogisticRegression` with an L2 penalty):

    L(W, b) = (1/N) sum_i CE(softmax(W^T z_i + b), y_i) + (l2 / 2) ||W||_F^2,

with z_i the standardised features and the bias unpenalised. scikit-learn minimises
C sum_i CE_i + ||W||^2 / 2, i.e. the same problem when C = 1 / (l2 N).

Optimiser: the problem is smooth and strictly convex (l2 > 0), so the default full batch
(`batch_size=None`) uses L-BFGS (`optax.lbfgs`, zoom line search, memory 10) from W = 0,
stopping when the gradient norm falls below `tol` or after `num_steps` iterations; it is
deterministic and reaches scikit-learn's optimum to float32 precision. For feature sets too
large for one batch, `batch_size=k` switches to Adam at `lr` on random minibatches.
"""

from collections.abc import Sequence
from functools import partial

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

# MAE's linear-probe BatchNorm1d(affine=False, eps=1e-6).
_BN_EPS = 1e-6
_NORMALIZE = ("batchnorm", "none")


@flax.struct.dataclass
class LinearProbe:
    """A fitted probe; logits = ((x - mean) / std) @ weights + bias.

    Attributes:
        weights: [D, K].
        bias: [K].
        mean: [D] train feature mean (zeros without normalisation).
        std: [D] sqrt(train variance + 1e-6) (ones without normalisation).
    """

    weights: jax.Array
    bias: jax.Array
    mean: jax.Array
    std: jax.Array


def _check_features(features, name: str = "features") -> jax.Array:
    features = jnp.asarray(features)
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty [N, D] array, got shape {features.shape}")
    if not jnp.issubdtype(features.dtype, jnp.floating):
        features = features.astype(jnp.float32)
    return features


def _check_labels(labels, num: int, num_classes: int, name: str = "labels") -> jax.Array:
    labels = np.asarray(labels)
    if labels.shape != (num,):
        raise ValueError(
            f"{name} must have shape [{num}] to match the features, got {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"{name} must lie in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]"
        )
    return jnp.asarray(labels, jnp.int32)


def _objective(params, z, labels, l2):
    w, b = params
    logits = z @ w + b
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return ce + 0.5 * l2 * jnp.sum(w * w)


def _lbfgs(loss_fn, params, num_steps: int, tol: float):
    """Minimises `loss_fn` with optax L-BFGS inside a `lax.while_loop`."""
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss_fn)

    def step(carry):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss_fn)
        return optax.apply_updates(params, updates), state

    def keep_going(carry):
        _, state = carry
        count = optax.tree_utils.tree_get(state, "count")
        grad_norm = optax.tree_utils.tree_norm(optax.tree_utils.tree_get(state, "grad"))
        return (count == 0) | ((count < num_steps) & (grad_norm >= tol))

    params, _ = jax.lax.while_loop(keep_going, step, (params, opt.init(params)))
    return params


def _adam(loss_fn, params, num_steps: int, lr: float, batch_size: int, num: int, rng):
    """Minimises `loss_fn(params, idx)` with Adam on random minibatches of indices."""
    opt = optax.adam(lr)

    def step(carry, i):
        params, state = carry
        idx = jax.random.choice(jax.random.fold_in(rng, i), num, (batch_size,), replace=False)
        grad = jax.grad(loss_fn)(params, idx)
        updates, state = opt.update(grad, state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jnp.arange(num_steps))
    return params


@partial(jax.jit, static_argnames=("num_classes", "num_steps", "batch_size", "normalize"))
def _fit(features, labels, rng, l2, lr, tol, *, num_classes, num_steps, batch_size, normalize):
    if normalize == "batchnorm":
        mean = features.mean(0)
        std = jnp.sqrt(features.var(0) + _BN_EPS)
    else:
        mean = jnp.zeros(features.shape[1], features.dtype)
        std = jnp.ones(features.shape[1], features.dtype)
    z = (features - mean) / std
    params = (jnp.zeros((z.shape[1], num_classes), z.dtype), jnp.zeros(num_classes, z.dtype))
    if batch_size is None:
        params = _lbfgs(lambda p: _objective(p, z, labels, l2), params, num_steps, tol)
    else:
        loss_fn = lambda p, idx: _objective(p, z[idx], labels[idx], l2)  # noqa: E731
        params = _adam(loss_fn, params, num_steps, lr, batch_size, z.shape[0], rng)
    return LinearProbe(weights=params[0], bias=params[1], mean=mean, std=std)


def fit_linear_probe(
    features,
    labels,
    *,
    num_classes: int,
    l2: float = 1e-4,
    num_steps: int = 1000,
    lr: float = 1e-2,
    tol: float = 1e-5,
    batch_size: int | None = None,
    normalize: str = "batchnorm",
    seed: int = 0,
) -> LinearProbe:
    """Fits the L2-regularised multinomial logistic regression of the module docstring.

    Args:
        features: [N, D] frozen pooled features.
        labels: [N] int class labels in [0, num_classes).
        num_classes: K >= 2.
        l2: penalty strength on W (sklearn C = 1 / (l2 N)).
        num_steps: L-BFGS iteration cap (full batch) or Adam steps (minibatch).
        lr: Adam learning rate; unused by L-BFGS, which line-searches.
        tol: L-BFGS stops when ||grad L|| < tol.
        batch_size: None for full-batch L-BFGS, else Adam minibatch size (<= N).
        normalize: "batchnorm" (standardise with train mean/std, no affine) or "none".
        seed: minibatch sampling seed (the full-batch fit is deterministic).

    Returns:
        The fitted `LinearProbe`.
    """
    features = _check_features(features)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    labels = _check_labels(labels, features.shape[0], num_classes)
    if normalize not in _NORMALIZE:
        raise ValueError(f"normalize must be one of {_NORMALIZE}, got {normalize!r}")
    if l2 < 0 or num_steps < 1:
        raise ValueError(f"need l2 >= 0 and num_steps >= 1, got l2={l2}, num_steps={num_steps}")
    if batch_size is not None and not 1 <= batch_size <= features.shape[0]:
        raise ValueError(f"batch_size must be in [1, N={features.shape[0]}], got {batch_size}")
    return _fit(
        features,
        labels,
        jax.random.key(seed),
        l2,
        lr,
        tol,
        num_classes=num_classes,
        num_steps=num_steps,
        batch_size=batch_size,
        normalize=normalize,
    )


def predict(probe: LinearProbe, features) -> jax.Array:
    """Logits of a fitted probe.

    Args:
        probe: from `fit_linear_probe`.
        features: [N, D].

    Returns:
        [N, K] logits.
    """
    features = _check_features(features)
    if features.shape[1] != probe.weights.shape[0]:
        raise ValueError(
            f"features have D={features.shape[1]}, the probe expects D={probe.weights.shape[0]}"
        )
    return ((features - probe.mean) / probe.std) @ probe.weights + probe.bias


def accuracy(probe: LinearProbe, features, labels) -> float:
    """Top-1 accuracy of the probe on ([N, D] features, [N] int labels)."""
    logits = predict(probe, features)
    labels = _check_labels(labels, logits.shape[0], logits.shape[1])
    return float(jnp.mean(jnp.argmax(logits, -1) == labels))


def label_budget_indices(labels, per_class: int | None, seed: int) -> np.ndarray:
    """Indices of a stratified labelled subset: `per_class` examples of every class.

    Args:
        labels: [N] int labels.
        per_class: examples per class drawn without replacement, or None for all N.
        seed: NumPy seed of the draw.

    Returns:
        [K * per_class] (or [N]) sorted int indices into `labels`.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D int array, got {labels.dtype} {labels.shape}")
    if per_class is None:
        return np.arange(labels.size)
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1 or None, got {per_class}")
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if idx.size < per_class:
            raise ValueError(f"class {c} has {idx.size} examples, fewer than {per_class}")
        chosen.append(rng.choice(idx, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def evaluate_probe(
    train_feats,
    train_labels,
    test_feats,
    test_labels,
    *,
    num_classes: int | None = None,
    budgets: Sequence[int | None] = (None, 10),
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    l2: float = 1e-4,
    num_steps: int = 1000,
    normalize: str = "batchnorm",
) -> dict:
    """Test accuracy of full-batch probes per label budget (docs/methods.md F).

    The all-labels budget (None) is deterministic and fitted once; each k-per-class budget
    is fitted on one stratified subset per seed, standardised with that subset's statistics.

    Args:
        train_feats, train_labels: [N, D] and [N] int.
        test_feats, test_labels: [M, D] and [M] int.
        num_classes: K; by default 1 + the largest label seen.
        budgets: None (all labels) and/or examples per class.
        seeds: seeds of the labelled subsets.
        l2, num_steps, normalize: as in `fit_linear_probe`.

    Returns:
        {"all" | f"{k}_per_class": {"mean", "std", "accuracies", "num_labels"}}.
    """
    if num_classes is None:
        num_classes = int(max(np.max(train_labels), np.max(test_labels))) + 1
    if not seeds:
        raise ValueError("seeds must not be empty")
    results = {}
    for budget in budgets:
        accs = []
        for seed in seeds if budget is not None else seeds[:1]:
            idx = label_budget_indices(train_labels, budget, seed)
            probe = fit_linear_probe(
                np.asarray(train_feats)[idx],
                np.asarray(train_labels)[idx],
                num_classes=num_classes,
                l2=l2,
                num_steps=num_steps,
                normalize=normalize,
            )
            accs.append(accuracy(probe, test_feats, test_labels))
        key = "all" if budget is None else f"{budget}_per_class"
        results[key] = {
            "mean": float(np.mean(accs)),
            "std": float(np.std(accs)),
            "accuracies": accs,
            "num_labels": int(idx.size),
        }
    return results
