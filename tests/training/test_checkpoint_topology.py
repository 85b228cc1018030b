"""Checkpoints independent of the topology that wrote them (issue 18, finding 6).

A tiny DDPM trained on 8 (fake CPU) devices, as on an 8-chip TPU host, is read on one device
through `load_params`, `load_features` and `load_denoiser`, and a run killed on 8 devices
resumes on 1. Each side runs in its own subprocess: the device count is fixed when JAX starts.
"""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import REPO_ROOT

pytestmark = pytest.mark.slow

# Trains configs/ddpm/digits.py:tiny (6 steps, global batch 8, checkpoints at 2, 4, 6) into
# argv[1] on every visible device; KILL_AT=n SIGKILLs it while the n-th batch is assembled.
TRAIN = textwrap.dedent("""
    import os, signal, sys, time
    from diffssl_jax.configs.ddpm import digits
    from diffssl_jax import methods, training
    from diffssl_jax import parallel
    original, count = parallel.to_global_batch, [0]
    def killing(batch, mesh):
        count[0] += 1
        if count[0] == int(os.environ.get("KILL_AT", "0")):
            time.sleep(3)  # let orbax finish its asynchronous writes, then die
            os.kill(os.getpid(), signal.SIGKILL)
        return original(batch, mesh)
    parallel.to_global_batch = killing
    config = digits.get_config("tiny")
    config.train.sample_every_steps = 0
    training.train(config, sys.argv[1], methods.make_recipe(config))
""")

# Writes what every reader returns on this process's devices to argv[2] (an .npz).
READ = textwrap.dedent("""
    import sys, jax, numpy as np
    import diffssl_jax
    workdir, out = sys.argv[1], sys.argv[2]
    arrays = {"num_devices": np.array(jax.device_count())}
    for which in ("ema", "params"):
        for i, leaf in enumerate(jax.tree.leaves(diffssl_jax.load_params(workdir, which=which))):
            arrays[f"{which}_{i}"] = np.asarray(leaf)
    images = np.random.default_rng(0).uniform(-1, 1, (3, 16, 16, 1)).astype(np.float32)
    features = diffssl_jax.load_features(workdir, t=0.1)(images)
    for name, value in sorted(features.items()):
        arrays[f"features_{name}"] = np.asarray(value)
    denoiser, _ = diffssl_jax.load_denoiser(workdir)
    arrays["denoised"] = np.asarray(denoiser(images[0], 0.5))
    np.savez(out, **arrays)
""")


def _run(script, args, devices, kill_at=0):
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        JAX_DISABLE_MOST_OPTIMIZATIONS="1",
        PYTHONPATH=REPO_ROOT,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        KILL_AT=str(kill_at),
    )
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _read(workdir, out, devices):
    result = _run(READ, [workdir, out], devices)
    assert result.returncode == 0, result.stderr[-3000:]
    arrays = dict(np.load(out))
    assert int(arrays.pop("num_devices")) == devices
    return arrays


@pytest.fixture(scope="module")
def trained_on_8(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("topology") / "run8"
    result = _run(TRAIN, [workdir], devices=8)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_eight_device_checkpoint_loads_on_one_device(trained_on_8, tmp_path):
    one = _read(trained_on_8, tmp_path / "one.npz", devices=1)
    eight = _read(trained_on_8, tmp_path / "eight.npz", devices=8)
    assert sorted(one) == sorted(eight)
    assert any(k.startswith("features_") for k in one) and "ema_0" in one
    for key in one:
        np.testing.assert_array_equal(one[key], eight[key], err_msg=key)


def test_resume_on_another_device_count_continues_to_the_same_parameters(trained_on_8, tmp_path):
    """Killed on 8 devices after checkpoint 4, resumed on 1: the same global batch, so the
    same parameters as the uninterrupted 8-device run, up to float32 rounding (the gradient
    mean is summed in another order across devices). Tolerance: 1e-5 absolute on parameters
    of order 0.1-1 after 2 steps on one device."""
    workdir = tmp_path / "resumed"
    killed = _run(TRAIN, [workdir], devices=8, kill_at=5)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
    resumed = _run(TRAIN, [workdir], devices=1)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "taking over the stale lock" in resumed.stderr  # the killed run's lock
    assert sorted(os.listdir(workdir / "checkpoints")) == ["4", "6"]
    got = _read(workdir, tmp_path / "resumed.npz", devices=1)
    want = _read(trained_on_8, tmp_path / "uninterrupted.npz", devices=1)
    for key in (k for k in want if k.startswith(("ema_", "params_"))):
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1e-5, err_msg=key)
