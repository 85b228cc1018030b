"""The loop's guard rails: window logging, and which config keys may change on resume."""

import json
import time

import jax.numpy as jnp
import pytest

from diffssl_jax.configs.ddpm.digits import get_config
from diffssl_jax.training import loop, metric_writers, validation


def _jsonl(workdir):
    return metric_writers.JsonlWriter(workdir / "metrics.jsonl")


def test_log_appends_window_means(tmp_path):
    window = [{"train/loss": jnp.float32(1.0)}, {"train/loss": jnp.float32(3.0)}]
    loop._log(window, 4, time.perf_counter() - 2.0, _jsonl(tmp_path))
    record = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert record["step"] == 4 and record["train/loss"] == 2.0
    assert 0.5 < record["time/steps_per_sec"] <= 1.0


def test_resume_may_change_the_optimiser_and_pace_not_the_model(tmp_path):
    config = get_config("tiny")
    loop.prepare_workdir(config, str(tmp_path))
    config.train.num_steps = 100  # extending a run
    config.optim.lr_peak = 1e-4  # recovering from a divergence
    config.optim.decay = "linear"
    config.train.checkpoint_every_steps = 1
    config.train.keep_checkpoints = 5
    loop.prepare_workdir(config, str(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text())["optim"]["lr_peak"] == 1e-4
    config.model.model_channels = 64
    config.seed = 3
    with pytest.raises(validation.ConfigError) as error:
        loop.prepare_workdir(config, str(tmp_path))
    message = str(error.value)
    assert "model.model_channels: 8 -> 64; seed: 0 -> 3" in message
    assert "new --workdir" in message and "optim.*" in message  # what may change instead
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model"]["model_channels"] == 8  # a refused resume writes nothing


def test_clipping_cannot_be_switched_on_or_off_on_resume(tmp_path):
    config = get_config("tiny")
    loop.prepare_workdir(config, str(tmp_path))
    config.optim.grad_clip_norm = 0.5  # still clipping: the optimiser state keeps its shape
    loop.prepare_workdir(config, str(tmp_path))
    config.optim.grad_clip_norm = 0.0
    with pytest.raises(validation.ConfigError, match="keep it > 0"):
        loop.prepare_workdir(config, str(tmp_path))


def test_resumed_writer_drops_rows_the_resume_redoes(tmp_path):
    writer = metric_writers.create_default_writer(str(tmp_path), num_steps=10)
    for step in (2, 4, 6, 8):
        writer.write_scalars(step, {"train/loss": float(step)})
    writer.close()
    # Resumed from the checkpoint at step 6: step 8 is redone, its old row goes.
    resumed = metric_writers.create_default_writer(str(tmp_path), num_steps=10, start_step=6)
    resumed.write_scalars(8, {"train/loss": -8.0})
    resumed.close()
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [(r["step"], r["train/loss"]) for r in rows] == [(2, 2), (4, 4), (6, 6), (8, -8)]
    assert metric_writers.drop_rows_after(tmp_path / "missing.jsonl", 3) == 0


def test_a_workdir_written_before_a_key_existed_resumes_with_its_old_behaviour():
    """EM workdirs of before 2026-12-07 have no `posterior.safeguard`: they ran the residual
    cap, so a config that keeps it resumes and one that changes it does not."""
    saved = {"posterior": {"cg_maxiter": 1}}
    current = {"posterior": {"cg_maxiter": 1, **{k.split(".")[1]: v for k, v in
               validation.ADDED_KEYS.items() if k.startswith("posterior.")}}}  # fmt: skip
    assert validation.resume_conflicts(saved, current, ()) == []
    current["posterior"]["safeguard"] = "trust_region"
    conflicts = validation.resume_conflicts(saved, current, ())
    assert conflicts == ["posterior.safeguard: 'residual_cap' -> 'trust_region'"]
    assert validation.resume_conflicts({"a": 1}, {"a": 1}, ()) == []  # no key is invented


def test_a_saved_config_loads_with_the_keys_added_since_where_their_group_exists():
    saved = {"eval": {"feature_t": 0.05}, "model": {"channels": 32}}
    loaded = validation.with_added_keys(saved)
    assert loaded == {"eval": {"feature_t": 0.05, "probe_pool_grid": 1}, "model": {"channels": 32}}
    assert saved == {"eval": {"feature_t": 0.05}, "model": {"channels": 32}}  # not modified
    kept = validation.with_added_keys({"eval": {"probe_pool_grid": 4}})
    assert kept == {"eval": {"probe_pool_grid": 4}}  # a saved value wins


def test_evaluation_settings_may_change_on_resume_the_model_may_not():
    saved = {"eval": {"feature_blocks": [], "feature_t": 0.05}, "model": {"channels": 32}}
    current = {"eval": {"feature_blocks": ["dec_0"], "feature_t": 0.0}, "model": {"channels": 32}}
    assert validation.resume_conflicts(saved, current, loop.RESUMABLE_CHANGES) == []
    current["model"]["channels"] = 64
    conflicts = validation.resume_conflicts(saved, current, loop.RESUMABLE_CHANGES)
    assert conflicts == ["model.channels: 32 -> 64"]
