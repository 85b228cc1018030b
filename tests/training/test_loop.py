"""The loop's guard rails: non-finite metrics stop the run; a resumed config must match."""

import json
import time

import jax.numpy as jnp
import pytest

from diffssl_jax.configs.ddpm.digits import get_config
from diffssl_jax.training import loop, metric_writers


def _jsonl(workdir):
    return metric_writers.JsonlWriter(workdir / "metrics.jsonl")


def test_non_finite_metric_stops_with_step_range(tmp_path):
    window = [
        {"train/loss": jnp.float32(1.0), "train/grad_norm": jnp.float32(2.0)},
        {"train/loss": jnp.float32(jnp.nan), "train/grad_norm": jnp.float32(2.0)},
    ]
    with pytest.raises(FloatingPointError, match="between steps 10 and 12.*step 8"):
        loop._log(window, 12, 10, 8, time.perf_counter(), _jsonl(tmp_path))
    assert not (tmp_path / "metrics.jsonl").exists()  # nothing is logged from a bad window


def test_log_appends_window_means(tmp_path):
    window = [{"train/loss": jnp.float32(1.0)}, {"train/loss": jnp.float32(3.0)}]
    loop._log(window, 4, 2, 0, time.perf_counter() - 2.0, _jsonl(tmp_path))
    record = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert record["step"] == 4 and record["train/loss"] == 2.0
    assert 0.5 < record["time/steps_per_sec"] <= 1.0


def test_resumed_config_may_only_extend_the_run(tmp_path):
    config = get_config("tiny")
    loop.prepare_workdir(config, str(tmp_path))
    config.train.num_steps = 100  # extending a run is allowed
    loop.prepare_workdir(config, str(tmp_path))
    config.model.model_channels = 64
    with pytest.raises(ValueError, match="model.model_channels: 8 -> 64"):
        loop.prepare_workdir(config, str(tmp_path))
