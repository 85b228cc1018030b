"""The digit classifier behind the Fréchet distance of EM on digits (docs/methods.md F).

    .venv/bin/python -m diffssl_jax.evaluation.digit_classifier --workdir=runs/digit_classifier

A small CNN trained once on the clean training digits (`DigitsSource('train')`, 1347 images
16x16 in [-1, 1], labels 0..9) with the mean cross-entropy, through the library's one training
loop (`training.train` with `classifier_recipe`: Adam, cosine decay from `lr`, batches of the
data pipeline, checkpoints in `workdir/checkpoints/`, rerunning resumes) from a fixed seed; its
penultimate layer `phi(x) in R^F` (F = 64 by default) is the feature space of the Fréchet
distance

    FD(a, b) = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a^(1/2) S_b S_a^(1/2))^(1/2))

(Heusel et al. 2017, Eq. 6; `evaluation.metrics.frechet_distance`), the digits' analogue of
FID's Inception pool features. Network: conv 3x3 (c1) -> conv 3x3 stride 2 (c2) -> conv 3x3
stride 2 (c3), each followed by ReLU, then flattened (4x4xc3), dense F + ReLU (= phi), dense 10.

Workdir layout: a training workdir (`config.json`, `checkpoints/`, `metrics.jsonl`) plus
`classifier.json` (architecture, training settings, test accuracy; written last, its presence
means complete). `load_feature_fn(workdir)` returns the jitted `images [N, 16, 16, 1] -> phi
[N, F]` of the trained (not averaged) parameters; `test_images()` the 450 held-out test digits.
"""

import json
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from diffssl_jax import storage, training
from diffssl_jax.data.sources import DigitsSource
from diffssl_jax.methods import Recipe

COMMAND = "python -m diffssl_jax.evaluation.digit_classifier --workdir={workdir}"
NUM_CLASSES = 10
_META = "classifier.json"


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


def classifier_recipe(model: DigitCNN, image_shape: tuple[int, ...]) -> Recipe:
    """The `Recipe` that trains `model`: loss = mean cross-entropy of `batch["label"]`.

    `init(rng)` gives the model's variables; `features` its penultimate layer `{"phi": [B, 1,
    1, F]}`; it does not sample.
    """

    def init(rng):
        return model.init(rng, jnp.zeros((1, *image_shape), jnp.float32))

    def loss(params, batch, rng):
        del rng
        logits, _ = model.apply(params, batch["image"])
        labels = batch["label"]
        value = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return value, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}

    def features(params, images, rng, **unused_at):
        del rng, unused_at
        return {"phi": model.apply(params, images)[1][:, None, None, :]}

    return Recipe(init=init, loss=loss, features=features, sample=None)


def classifier_config(
    *, num_steps: int, batch_size: int, lr: float, seed: int, channels, features: int
) -> ml_collections.ConfigDict:
    """The training config of the classifier (`training.train`'s groups)."""
    return ml_collections.ConfigDict(
        {
            "method": "digit_classifier",
            "seed": seed,
            "model": {"channels": tuple(channels), "features": features},
            "data": {
                "name": "digits",
                "split": "train",
                "data_dir": "",
                "image_size": 16,
                "label_key": "label",
                "image_shape": (16, 16, 1),
            },
            "pipeline": {"random_flip": False, "num_workers": 0},
            "optim": {
                "lr_peak": lr,
                "warmup_steps": 0,
                "decay": "cosine",
                "weight_decay": 0.0,
                "grad_clip_norm": 0.0,
                "ema_decay": 0.0,  # the classifier uses its trained parameters
            },
            "train": {
                "num_steps": num_steps,
                "batch_size": batch_size,
                "log_every_steps": min(50, num_steps),
                "checkpoint_every_steps": num_steps,
                "keep_checkpoints": 1,
                "sample_every_steps": 0,
                "num_samples": 0,
                "init_from": "",
                "progress_bar": False,
            },
            "mesh": {"num_devices": 0},
        }
    )


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
    """Trains `DigitCNN` on the clean training digits into `workdir` (`training.train`).

    AdamW without weight decay (= Adam), cosine decay from `lr` (`training.step.
    make_optimizer`), batches drawn by the data pipeline with `seed` (as its initialisation):
    the result is a function of `seed` alone. Rerunning resumes (a finished run is reused).

    Returns:
      The metadata written to `workdir/classifier.json`: the settings, `final_train_loss`
      (the mean cross-entropy of the trained parameters over the training digits) and
      `test_accuracy`.
    """
    config = classifier_config(
        num_steps=num_steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        channels=channels,
        features=features,
    )
    model = DigitCNN(channels=tuple(channels), features=features)
    shape = tuple(config.data.image_shape)
    state = training.train(config, workdir, classifier_recipe(model, shape))
    params = jax.device_get(state.params)
    train, test = DigitsSource("train"), DigitsSource("test")
    logits, _ = model.apply(params, jnp.asarray(train.images))
    train_loss = optax.softmax_cross_entropy_with_integer_labels(logits, train.labels).mean()
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
        "final_train_loss": float(train_loss),
        "test_accuracy": accuracy,
    }
    if storage.is_primary():
        storage.write_json(storage.path(workdir) / _META, meta)
    return meta


def load_classifier(workdir: str) -> tuple[DigitCNN, dict, dict]:
    """`(model, params, meta)` of a classifier workdir; FileNotFoundError naming the command."""
    path = storage.path(workdir) / _META
    if not path.exists():
        raise FileNotFoundError(
            f"no digit classifier in {storage.path(workdir)} (missing {_META}). Train it once "
            f"with `{COMMAND.format(workdir=workdir)}` (about a minute on a CPU), or point "
            "config.em.classifier_workdir at an existing one."
        )
    meta = storage.read_json(path)
    model = DigitCNN(channels=tuple(meta["channels"]), features=meta["features"])
    params = training.load_params(workdir, which="params")
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
