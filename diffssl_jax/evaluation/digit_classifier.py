"""The digit classifier behind the Fréchet distance of EM on digits (docs/methods.md F).

    .venv/bin/python -m diffssl_jax.evaluation.digit_classifier --workdir=runs/digit_classifier

A small CNN trained once on the clean training digits (`DigitsSource('train')`, 1347 images
16x16 in [-1, 1], labels 0..9) with cross-entropy and Adam, from a fixed seed; its penultimate
layer `phi(x) in R^F` (F = 64 by default) is the feature space of the Fréchet distance

    FD(a, b) = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a^(1/2) S_b S_a^(1/2))^(1/2))

(Heusel et al. 2017, Eq. 6; `evaluation.metrics.frechet_distance`), the digits' analogue of
FID's Inception pool features. Network: conv 3x3 (c1) -> conv 3x3 stride 2 (c2) -> conv 3x3
stride 2 (c3), each followed by ReLU, then flattened (4x4xc3), dense F + ReLU (= phi), dense 10.

Workdir layout: `classifier.json` (architecture, training settings, test accuracy) and
`params/` (orbax `StandardCheckpointer`). `load_feature_fn(workdir)` returns the jitted
`images [N, 16, 16, 1] -> phi [N, F]`; `test_images()` the 450 held-out test digits.
"""

import json
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from diffssl_jax import storage
from diffssl_jax.data.sources import DigitsSource

COMMAND = "python -m diffssl_jax.evaluation.digit_classifier --workdir={workdir}"
NUM_CLASSES = 10
_META = "classifier.json"
_PARAMS = "params"


class DigitCNN(nn.Module):
    """`x [B, H, W, 1] -> (logits [B, 10], phi [B, F])` (module docstring).

    Attributes:
      channels: widths of the three convolutions (the last two have stride 2).
      features: width F of the penultimate layer phi.
    """

    channels: Sequence[int] = (16, 32, 64)
    features: int = 64

    @nn.compact
    def __call__(self, x):
        h = x
        for i, width in enumerate(self.channels):
            stride = 1 if i == 0 else 2
            h = nn.relu(nn.Conv(width, (3, 3), strides=stride, name=f"conv_{i}")(h))
        phi = nn.relu(nn.Dense(self.features, name="penultimate")(h.reshape(len(h), -1)))
        return nn.Dense(NUM_CLASSES, name="logits")(phi), phi


def _check_images(images) -> jax.Array:
    images = jnp.asarray(images, jnp.float32)
    if images.ndim != 4 or images.shape[-1] != 1 or len(images) == 0:
        raise ValueError(f"images must be non-empty grey [N, H, W, 1], got {images.shape}.")
    return images


def train_classifier(
    workdir: str,
    *,
    num_steps: int = 600,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    channels: Sequence[int] = (16, 32, 64),
    features: int = 64,
) -> dict:
    """Trains `DigitCNN` on the clean training digits and saves it to `workdir`.

    Minimises the mean cross-entropy with Adam (cosine decay from `lr`), on minibatches
    drawn without replacement per epoch: epoch `e` uses the permutation of
    `fold_in(rng_data, e)`, with `rng_init, rng_data = split(key(seed))`, so the result is
    a function of `seed` alone.

    Returns:
      The metadata written to `workdir/classifier.json`, including `test_accuracy`.
    """
    train, test = DigitsSource("train"), DigitsSource("test")
    model = DigitCNN(channels=tuple(channels), features=features)
    rng_init, rng_data = jax.random.split(jax.random.key(seed))
    params = model.init(rng_init, jnp.zeros((1, *train.images.shape[1:])))
    tx = optax.adam(optax.cosine_decay_schedule(lr, num_steps))
    opt_state = tx.init(params)
    images, labels = jnp.asarray(train.images), jnp.asarray(train.labels)

    @jax.jit
    def step(params, opt_state, index):
        def loss_fn(p):
            logits, _ = model.apply(p, images[index])
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels[index]).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    per_epoch = len(images) // batch_size
    for s in range(num_steps):
        epoch, b = divmod(s, per_epoch)
        if b == 0:
            order = jax.random.permutation(jax.random.fold_in(rng_data, epoch), len(images))
        index = order[b * batch_size : (b + 1) * batch_size]
        params, opt_state, loss = step(params, opt_state, index)
    logits, _ = model.apply(params, jnp.asarray(test.images))
    accuracy = float(jnp.mean(jnp.argmax(logits, -1) == jnp.asarray(test.labels)))
    meta = {
        "channels": list(channels),
        "features": features,
        "image_size": int(train.images.shape[1]),
        "num_steps": num_steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "final_train_loss": float(loss),
        "test_accuracy": accuracy,
    }
    save_classifier(workdir, params, meta)
    return meta


def save_classifier(workdir: str, params, meta: dict) -> None:
    """Writes `params` (orbax) then `classifier.json` (last: its presence means complete)."""
    workdir = storage.path(workdir)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(workdir / _PARAMS, params, force=True)
    checkpointer.wait_until_finished()
    if storage.is_primary():
        storage.write_json(workdir / _META, meta)


def load_classifier(workdir: str) -> tuple[DigitCNN, dict, dict]:
    """`(model, params, meta)` of a classifier workdir; FileNotFoundError naming the command."""
    workdir = storage.path(workdir)
    path = workdir / _META
    if not path.exists():
        raise FileNotFoundError(
            f"no digit classifier in {workdir} (missing {_META}). Train it once with "
            f"`{COMMAND.format(workdir=workdir)}` (about a minute on a CPU), or point "
            "config.em.classifier_workdir at an existing one."
        )
    meta = storage.read_json(path)
    model = DigitCNN(channels=tuple(meta["channels"]), features=meta["features"])
    size = meta["image_size"]
    abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 1)))
    params = ocp.StandardCheckpointer().restore(workdir / _PARAMS, abstract)
    return model, params, meta


def load_feature_fn(workdir: str):
    """The jitted `images [N, H, W, 1] in [-1, 1] -> phi [N, F]` of the classifier in `workdir`.

    Raises:
      FileNotFoundError: `workdir` has no classifier (the message gives the command).
    """
    model, params, _ = load_classifier(workdir)
    apply = jax.jit(lambda p, x: model.apply(p, x)[1])

    def feature_fn(images) -> np.ndarray:
        return np.asarray(apply(params, _check_images(images)))

    return feature_fn


def test_images() -> np.ndarray:
    """The 450 held-out test digits `[450, 16, 16, 1]` in [-1, 1] (docs/methods.md F's split)."""
    return DigitsSource("test").images


test_images.__test__ = False  # not a pytest test, despite its name


def _main(argv) -> None:
    del argv
    from absl import flags

    f = flags.FLAGS
    meta = train_classifier(f.workdir, num_steps=f.num_steps, seed=f.seed)
    print(json.dumps(meta))
    print(f"test accuracy {meta['test_accuracy']:.4f}; saved to {storage.path(f.workdir)}")


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("workdir", "runs/digit_classifier", "Where to save the classifier.")
    flags.DEFINE_integer("num_steps", 600, "Adam steps (batch 64).")
    flags.DEFINE_integer("seed", 0, "Seed of the initialisation and the data order.")
    app.run(_main)
