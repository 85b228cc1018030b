"""Label-efficient segmentation with per-pixel MLPs on frozen features (docs/methods.md A.6).

Protocol (i) (ddpm-segmentation, MDM natural images): an ensemble of `PixelMLP`s trained on
every labelled pixel, predicting by per-pixel majority vote. Protocol (ii) (MDM medical):
per-image L2-normalised features (`feature_norm="l2_image"`) and models scored one by one,
mean ± std (`evaluate_independent`); its random crops, end-of-epoch early stopping and
sliding-window inference are not reproduced.

Memory (ddpm-segmentation #11, docs/methods.md D): the [N, H, W, D] features of the labelled
images are cached only if they fit `cache_bytes`; otherwise each epoch visits the images in
a new random order, in chunks that fit, recomputing their features, and shuffles pixels
within a chunk (across its images) only. `feature_fn` sees <= `feature_batch_size` images.
"""

from collections.abc import Callable, Iterator
from functools import partial
from typing import NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffssl_jax.evaluation import seg_metrics
from diffssl_jax.models.heads import PixelMLPEnsemble, pixel_mlp_hidden

FeatureFn = Callable[[jax.Array], jax.Array]  # images [b, H, W, C] -> features [b, H, W, D]
_FEATURE_NORMS = ("none", "l2_image")


@flax.struct.dataclass
class PixelEnsemble:
    """A trained ensemble: `PixelMLPEnsemble` variables plus how to feed it.

    Attributes:
        variables: {"params", "batch_stats"}; every leaf has a leading model axis [M, ...].
        num_updates: [M] optimiser steps each model took before it stopped.
        model: the `PixelMLPEnsemble` (M, classes, widths).
        feature_norm: "none" or "l2_image"; applied to features at training and test time.
    """

    variables: dict
    num_updates: jax.Array
    model: PixelMLPEnsemble = flax.struct.field(pytree_node=False)
    feature_norm: str = flax.struct.field(pytree_node=False, default="none")


class _TrainState(NamedTuple):
    variables: dict
    opt_state: optax.OptState
    best_loss: jax.Array  # [M]
    bad_count: jax.Array  # [M]
    stopped: jax.Array  # [M] bool
    num_updates: jax.Array  # [M]


def normalize_image_features(features: jax.Array) -> jax.Array:
    """[b, H, W, D] -> same, each image's whole tensor divided by its L2 norm (protocol (ii))."""
    norm = jnp.sqrt(jnp.sum(jnp.square(features), axis=(1, 2, 3), keepdims=True))
    return features / jnp.maximum(norm, 1e-12)


def relabel_rare_classes(labels, min_pixels: int, ignore_label: int) -> np.ndarray:
    """[N, H, W] -> int32 copy; in each image, classes under `min_pixels` pixels become ignored."""
    labels = np.array(labels, np.int32)
    for image in labels:
        classes, counts = np.unique(image[image != ignore_label], return_counts=True)
        for c in classes[counts < min_pixels]:
            image[image == c] = ignore_label
    return labels


def _check_data(images, labels, num_classes: int, ignore_label: int) -> np.ndarray:
    if np.ndim(images) != 4:
        raise ValueError(f"images must be [N, H, W, C], got shape {np.shape(images)}")
    labels = np.asarray(labels)
    if labels.shape != np.shape(images)[:3] or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels shape {labels.shape} must be int [N, H, W] of the images")
    if num_classes < 2 or 0 <= ignore_label < num_classes:
        raise ValueError(f"need num_classes >= 2, ignore_label outside [0, {num_classes})")
    bad = (labels != ignore_label) & ((labels < 0) | (labels >= num_classes))
    if bad.any():
        raise ValueError(f"labels {np.unique(labels[bad])}: num_classes too small?")
    return labels


def _features(feature_fn, images, feature_norm: str, feature_batch_size: int) -> jax.Array:
    """[n, H, W, D] features of `images`, calling `feature_fn` on small chunks."""
    out = []
    for start in range(0, len(images), feature_batch_size):
        chunk = jnp.asarray(images[start : start + feature_batch_size])
        feats = feature_fn(chunk)
        if feats.ndim != 4 or feats.shape[:3] != chunk.shape[:3]:
            raise ValueError(
                f"feature_fn must map {chunk.shape} to [b, H, W, D], got {feats.shape}"
            )
        out.append(normalize_image_features(feats) if feature_norm == "l2_image" else feats)
    return jnp.concatenate(out).astype(jnp.float32)


def _train_step(model, tx, patience, stop_after_epoch, state, x, y, valid, epoch):
    """One Adam step of every model on its own pixel batch ([M, B, D], [M, B], [M, B]).

    ddpm-segmentation early stopping, per model: after epoch `stop_after_epoch`, a model
    stops once its batch loss has not beaten its best for more than `patience` consecutive
    iterations (the update of the stopping step is kept). A stopped model's parameters and
    statistics are frozen; its Adam moments keep moving but are never used again.
    """

    def loss_fn(params):
        variables = {"params": params, "batch_stats": state.variables["batch_stats"]}
        logits, new = model.apply(variables, x, True, valid, mutable=["batch_stats"])
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(valid, y, 0))
        losses = jnp.sum(ce * valid, -1) / jnp.maximum(valid.sum(-1), 1)
        return losses.sum(), (losses, new["batch_stats"])  # members' gradients are separate

    grads, (loss, stats) = jax.grad(loss_fn, has_aux=True)(state.variables["params"])
    updates, opt_state = tx.update(grads, state.opt_state, state.variables["params"])
    new = {"params": optax.apply_updates(state.variables["params"], updates), "batch_stats": stats}
    active = ~state.stopped
    variables = jax.tree.map(
        lambda a, b: jnp.where(active.reshape(-1, *[1] * (a.ndim - 1)), a, b), new, state.variables
    )
    counting = active & (epoch > stop_after_epoch)
    improved = loss < state.best_loss
    best = jnp.where(counting & improved, loss, state.best_loss)
    bad = jnp.where(counting, jnp.where(improved, 0, state.bad_count + 1), state.bad_count)
    stopped = state.stopped | (counting & (bad > patience))
    return _TrainState(variables, opt_state, best, bad, stopped, state.num_updates + active)


@partial(jax.jit, static_argnums=(0, 1, 3))
def _init_state(model, tx, rng, dim: int) -> _TrainState:
    variables = model.init(rng, jnp.zeros((2, dim)), train=False)
    zeros, best = jnp.zeros(model.num_models, jnp.int32), jnp.full(model.num_models, jnp.inf)
    opt_state = tx.init(variables["params"])
    return _TrainState(variables, opt_state, best.astype(jnp.float32), zeros, zeros > 0, zeros)


def _make_chunk_trainer(model, tx, batch_size, ignore_label, patience, stop_after_epoch):
    """Jitted (state, feats [P, D], labels [P], rng, epoch) -> state: one pass over a chunk.

    Each model draws its own permutation of the P pixels; ignored pixels are moved to the
    end, so every batch is full except the last one holding valid pixels (the remainder is
    masked out of the loss and BatchNorm); batches with no valid pixel are skipped.
    """
    step = partial(_train_step, model, tx, patience, stop_after_epoch)

    @jax.jit
    def train_chunk(state, feats, labels, rng, epoch):
        num = labels.shape[0]
        num_batches = -(-num // batch_size)
        pad = num_batches * batch_size - num
        valid = labels != ignore_label

        def batch_order(key):
            perm = jax.random.permutation(key, num)
            perm = perm[jnp.argsort(~valid[perm], stable=True)]
            ok = jnp.concatenate([valid[perm], jnp.zeros(pad, bool)])
            perm = jnp.concatenate([perm, jnp.zeros(pad, perm.dtype)])
            return perm.reshape(num_batches, batch_size), ok.reshape(num_batches, batch_size)

        idx, ok = jax.vmap(batch_order)(jax.random.split(rng, model.num_models))

        def body(state, xs):
            idx_s, ok_s = xs  # [M, B]; valid counts agree across models, so `any` is shared
            run = lambda s: step(s, feats[idx_s], labels[idx_s], ok_s, epoch)  # noqa: E731
            return jax.lax.cond(ok_s.any(), run, lambda s: s, state), None

        state, _ = jax.lax.scan(body, state, (idx.swapaxes(0, 1), ok.swapaxes(0, 1)))
        return state

    return train_chunk


def train_pixel_ensemble(
    feature_fn: FeatureFn,
    images,
    labels,
    *,
    num_classes: int,
    num_models: int = 10,
    batch_size: int = 64,
    max_epochs: int = 100,
    lr: float = 1e-3,
    ignore_label: int = 255,
    min_pixels_per_class: int = 20,
    early_stop_patience: int = 50,
    early_stop_after_epoch: int = 3,
    feature_norm: str = "none",
    cache_bytes: int = 2 * 1024**3,
    feature_batch_size: int = 8,
    seed: int = 0,
) -> PixelEnsemble:
    """Trains `num_models` pixel MLPs on the labelled pixels (docs/methods.md A.6 (i)).

    The models train together (`PixelMLPEnsemble`), each with its own initialisation, pixel
    order and early stop. Adam; cross-entropy over non-ignored pixels; BatchNorm in train mode.

    Args:
        feature_fn: images [b, H, W, C] -> per-pixel features [b, H, W, D].
        images, labels: [N, H, W, C] images; [N, H, W] int in [0, K) or `ignore_label`.
        num_classes: K; the MLP widths are `pixel_mlp_hidden(K)`.
        num_models, batch_size, max_epochs, lr: ensemble size, pixels per step, epochs, Adam.
        ignore_label: label excluded from the loss and the BatchNorm statistics.
        min_pixels_per_class: rarer classes in an image become `ignore_label`.
        early_stop_patience, early_stop_after_epoch: see `_train_step` (50 and 3).
        feature_norm: "none" (protocol (i)) or "l2_image" (protocol (ii)).
        cache_bytes: largest float32 feature cache; above it features are recomputed per
            chunk of images every epoch (module docstring).
        feature_batch_size: images per `feature_fn` call.
        seed: initialisation and shuffling seed.

    Returns:
        The trained `PixelEnsemble`.
    """
    labels = _check_data(images, labels, num_classes, ignore_label)
    labels = relabel_rare_classes(labels, min_pixels_per_class, ignore_label)
    if feature_norm not in _FEATURE_NORMS:
        raise ValueError(f"feature_norm must be one of {_FEATURE_NORMS}, got {feature_norm!r}")
    if min(num_models, batch_size, max_epochs, feature_batch_size) < 1:
        raise ValueError("num_models, batch_size, max_epochs, feature_batch_size must be >= 1")
    features = lambda x: _features(feature_fn, x, feature_norm, feature_batch_size)  # noqa: E731
    num, height, width = labels.shape
    dim = features(images[:1]).shape[-1]
    image_bytes = height * width * dim * 4
    per_chunk = num if num * image_bytes <= cache_bytes else max(1, cache_bytes // image_bytes)
    model = PixelMLPEnsemble(num_models, num_classes, pixel_mlp_hidden(num_classes))
    tx = optax.adam(lr)
    rng_init, rng_train = jax.random.split(jax.random.key(seed))
    state = _init_state(model, tx, rng_init, dim)
    train_chunk = _make_chunk_trainer(
        model, tx, batch_size, ignore_label, early_stop_patience, early_stop_after_epoch
    )

    def pixels(ids):  # ([n H W, D] features, [n H W] labels) of the images `ids`
        return features(np.asarray(images)[ids]).reshape(-1, dim), jnp.asarray(labels[ids]).ravel()

    cache = pixels(np.arange(num)) if per_chunk == num else None
    for epoch in range(max_epochs):
        rng_order, rng_steps = jax.random.split(jax.random.fold_in(rng_train, epoch))
        order = np.asarray(jax.random.permutation(rng_order, num))
        for c, start in enumerate(range(0, num, per_chunk)):
            feats, labs = cache or pixels(np.sort(order[start : start + per_chunk]))
            state = train_chunk(state, feats, labs, jax.random.fold_in(rng_steps, c), epoch)
        if bool(state.stopped.all()):
            break
    return PixelEnsemble(state.variables, state.num_updates, model, feature_norm)


def majority_vote(predictions, num_classes: int) -> jax.Array:
    """[M, ...] int labels -> [...] int32 per-pixel mode; ties go to the lowest class index.

    (ddpm-segmentation uses `torch.mode`, whose tie order is unspecified.)
    """
    votes = jax.nn.one_hot(jnp.asarray(predictions), num_classes, dtype=jnp.int32).sum(0)
    return jnp.argmax(votes, axis=-1).astype(jnp.int32)  # argmax returns the first maximum


@jax.jit
def _model_labels(ensemble: PixelEnsemble, feats: jax.Array) -> jax.Array:
    logits = ensemble.model.apply(ensemble.variables, feats, train=False)
    return jnp.argmax(logits, -1).astype(jnp.int32)


def _iter_model_labels(ensemble, feature_fn, images, batch_size) -> Iterator[np.ndarray]:
    """Yields [M, b, H, W] per-model labels for consecutive chunks of `images`."""
    if np.ndim(images) != 4 or batch_size < 1:
        raise ValueError(f"need images [N, H, W, C], batch_size >= 1: {np.shape(images)}")
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        feats = _features(feature_fn, chunk, ensemble.feature_norm, batch_size)
        labels = _model_labels(ensemble, feats.reshape(-1, feats.shape[-1]))
        yield np.asarray(labels).reshape(-1, *feats.shape[:3])


def predict_ensemble(
    ensemble: PixelEnsemble, feature_fn: FeatureFn, images, *, batch_size: int = 8
) -> np.ndarray:
    """[N, H, W] int32 majority-vote labels, streamed over chunks of `batch_size` images."""
    chunks = _iter_model_labels(ensemble, feature_fn, images, batch_size)
    return np.concatenate([majority_vote(m, ensemble.model.num_classes) for m in chunks])


def evaluate_independent(
    ensemble: PixelEnsemble, feature_fn, images, labels, *, batch_size=8, ignore_label=255
) -> dict:
    """Scores every model on its own, mean ± std over models (no vote; protocol (ii)).

    See `seg_metrics.independent_model_scores`: mIoU, foreground Dice, derived IoU, AJI.
    Returns {"miou" | "dice" | "derived_iou" | "aji": {"mean", "std", "per_model"}}.
    """
    labels = _check_data(images, labels, ensemble.model.num_classes, ignore_label)
    chunks = _iter_model_labels(ensemble, feature_fn, images, batch_size)
    starts = range(0, len(labels), batch_size)
    pairs = ((p, labels[s : s + p.shape[1]]) for p, s in zip(chunks, starts, strict=True))
    return seg_metrics.independent_model_scores(pairs, ensemble.model.num_classes, ignore_label)
