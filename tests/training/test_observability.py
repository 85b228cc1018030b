"""A tiny run through the launcher, as a user runs it with its output redirected to a file:
readable log lines (no '\\r'), a progress line per log window, TensorBoard scalars and
sample grids in the workdir; reading its parameters back logs no orbax warning."""

import gc
import glob
import json
import logging as py_logging
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import REPO_ROOT
from event_files import images, read_events, scalars

import diffssl_jax
from diffssl_jax.configs.ddpm.digits import get_config

TINY = "configs/ddpm/digits.py:tiny"
PROGRESS = re.compile(
    r"step (\d+)/(\d+) \(\d+%\) \| train/loss [0-9.e+-]+ \| [0-9.e+-]+ steps/s \| ETA \w+"
)
ABSL_INFO = re.compile(r"^I\d{4} [\d:.]+ +\d+ (\S+?):\d+\] ", re.MULTILINE)


def _logged_steps(every, num_steps):
    return sorted({*range(every, num_steps + 1, every), num_steps})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Trains the tiny config with stdout and stderr redirected to one file."""
    tmp = tmp_path_factory.mktemp("observability")
    workdir, log = tmp / "run", tmp / "train.log"
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
    with open(log, "w") as out:
        result = subprocess.run(
            [sys.executable, "-m", "launch.train", f"--config={TINY}", f"--workdir={workdir}"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
    assert result.returncode == 0, log.read_text()[-4000:]
    return workdir, log.read_text()


def test_log_file_has_readable_lines_and_a_progress_line_per_window(run):
    _, text = run
    cfg = get_config("tiny").train
    assert "\r" not in text
    progress = [(int(a), int(b)) for a, b in PROGRESS.findall(text)]
    logged = _logged_steps(cfg.log_every_steps, cfg.num_steps)
    assert progress == [(step, cfg.num_steps) for step in logged]
    # INFO lines come from the package and its launchers only, not orbax's per-file chatter.
    ours = {
        os.path.basename(p)
        for d in ("diffssl_jax", "launch")
        for p in glob.glob(os.path.join(REPO_ROOT, d, "**", "*.py"), recursive=True)
    }
    sources = set(ABSL_INFO.findall(text))
    assert sources and sources <= ours, sources - ours


def test_tensorboard_scalars_and_samples_match_metrics_jsonl(run):
    workdir, _ = run
    cfg = get_config("tiny").train
    (path,) = glob.glob(str(workdir / "events.out.tfevents.*"))
    with open(path, "rb") as f:
        events = read_events(f.read())
    records = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    logged = _logged_steps(cfg.log_every_steps, cfg.num_steps)
    assert [r["step"] for r in records] == logged
    tb = scalars(events)
    assert sorted(tb["train/loss"]) == logged
    for record in records:
        for tag in ("train/loss", "train/grad_norm", "train/lr", "time/steps_per_sec"):
            np.testing.assert_allclose(tb[tag][record["step"]], record[tag], rtol=1e-6)
    sample_steps = _logged_steps(cfg.sample_every_steps, cfg.num_steps)
    assert sorted(images(events)["samples"]) == sample_steps
    assert len(os.listdir(workdir / "figures")) == len(sample_steps)


def test_load_params_logs_no_orbax_warning(run, caplog):
    workdir, _ = run
    caplog.set_level(py_logging.DEBUG)
    gc.collect()  # another test's leftovers (e.g. unclosed pipes) must not warn in here
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            params = diffssl_jax.load_params(str(workdir))
    assert params
    noisy = [r.getMessage() for r in caplog.records if r.levelno >= py_logging.WARNING]
    assert noisy == []
    assert [str(w.message) for w in caught] == []
