"""Every recipe trains: from `launch/train.py` on the digits, and on a (mocked) TFDS source."""

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import REPO_ROOT

from diffssl_jax import methods, recipe_inputs, training

ENV = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
OVERRIDES = ("--config.train.num_steps=2", "--config.train.checkpoint_every_steps=2")


def _records(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize(
    "config",
    ["configs/mdm/digits.py:tiny", "configs/mae/digits.py:tiny", "configs/ldae/digits.py:tiny"],
)
def test_launch_train_on_the_digits(tmp_path, config):
    cmd = [sys.executable, "-m", "launch.train", f"--config={config}", f"--workdir={tmp_path}"]
    result = subprocess.run(
        [*cmd, *OVERRIDES], cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    records = _records(tmp_path)
    assert records[-1]["step"] == 2 and np.isfinite(records[-1]["train/loss"])
    assert os.listdir(tmp_path / "checkpoints") == ["2"]
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["method"] == config.split("/")[1]


def _mdm_on_mnist():
    config = importlib.import_module("configs.mdm.digits").get_config("tiny")
    config.data.name = "mnist"
    config.data.image_shape = (28, 28, 1)  # 49 mask patches of 4x4
    return config


def _cifar(method):
    return lambda: importlib.import_module(f"configs.{method}.cifar10").get_config("tiny")


@pytest.mark.parametrize(
    "make_config", [_mdm_on_mnist, _cifar("mae"), _cifar("ldae")], ids=["mdm", "mae", "ldae"]
)
def test_train_on_a_tfds_source(tmp_path, make_config):
    config = make_config()
    config.data.data_dir = str(tmp_path / "tfds")
    config.train.num_steps = 2
    config.train.checkpoint_every_steps = 2
    workdir = str(tmp_path / "run")
    with tfds.testing.mock_data(num_examples=16):
        # l-DAE fits its PCA basis from the (mocked) tfds training images right here.
        inputs = recipe_inputs.prepare(config, workdir)
        state = training.train(config, workdir, methods.make_recipe(config, inputs))
    assert int(state.step) == 2
    records = _records(workdir)
    assert records[-1]["step"] == 2 and np.isfinite(records[-1]["train/loss"])
