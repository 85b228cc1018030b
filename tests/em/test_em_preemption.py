"""SIGTERM in EM: the stage in flight saves, nothing unfinished is marked done, reruns agree.

In process: the E-step finishes and saves the chunk in flight, then stops; outside a saving
stage a SIGTERM stops at once. Through `launch.em` (slow): a SIGTERM in lap 1's M-step and
one in its E-step exit with the preemption status, and the reruns (one of them extending
the finished run from 1 to 2 laps) end with samples bit-identical to an uninterrupted run.
"""

import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO_ROOT

from diffssl_jax import em, storage
from diffssl_jax.configs.em.toy import get_config
from diffssl_jax.em import estep
from diffssl_jax.posterior.observations import random_projections
from diffssl_jax.sampling.denoisers import GaussianDenoiser, ScaledDenoiser
from diffssl_jax.training import preemption

# 4 sampler steps, 6 M-step steps checkpointed every 2, two E-step chunks of 128.
TINY = [
    "--config=configs/em/toy.py:tiny",
    "--config.sampling.num_steps=4",
    "--config.em.num_eval_samples=64",
]


def _estep_inputs():
    x = jax.random.normal(jax.random.key(0), (64, 5))
    obs = random_projections(1, x, obs_dim=2, noise_std=0.01).replace(noise_var=1e-4)
    config = get_config("tiny")
    config.sampling.num_steps = 4
    config.em.chunk_size = 16  # 4 chunks
    prior = ScaledDenoiser(GaussianDenoiser(jnp.zeros(5), jnp.eye(5)), (5,), 1.0)
    return prior, obs, config


def test_estep_saves_the_chunk_in_flight_then_stops_and_resumes(tmp_path, monkeypatch):
    prior, obs, config = _estep_inputs()
    rng, handler = jax.random.key(3), signal.getsignal(signal.SIGTERM)
    groups = dict(sampling=config.sampling, posterior=config.posterior, chunk_size=16)
    expected = em.e_step(prior, obs, rng=rng, directory=tmp_path / "reference", **groups)
    sample_chunk = estep._sample_chunk

    def preempted_during_chunk_1(*args, **kwargs):
        if args[3] == 1:  # (method, denoiser, problem, j, ...)
            signal.raise_signal(signal.SIGTERM)  # arrives while the chunk is in flight
        return sample_chunk(*args, **kwargs)

    monkeypatch.setattr(estep, "_sample_chunk", preempted_during_chunk_1)
    directory = tmp_path / "estep"
    with pytest.raises(preemption.Preempted, match="before chunk 2"):
        em.e_step(prior, obs, rng=rng, directory=directory, **groups)
    assert sorted(os.listdir(directory)) == ["chunk_00000.npy", "chunk_00001.npy"]
    assert signal.getsignal(signal.SIGTERM) is handler  # the handler is restored
    monkeypatch.setattr(estep, "_sample_chunk", sample_chunk)
    resumed = em.e_step(prior, obs, rng=rng, directory=directory, **groups)
    np.testing.assert_array_equal(resumed, expected)


def test_sigterm_outside_a_saving_stage_stops_at_once_and_a_deferred_one_at_its_end():
    handler = signal.getsignal(signal.SIGTERM)
    with preemption.handle_sigterm():
        with pytest.raises(preemption.Preempted, match="rerun the same command to resume"):
            signal.raise_signal(signal.SIGTERM)
            time.sleep(1)  # not reached: the handler raises
    with preemption.handle_sigterm():
        with pytest.raises(preemption.Preempted, match="while saving"):
            with preemption.deferred("while saving"):
                signal.raise_signal(signal.SIGTERM)
                assert preemption.requested()  # only the flag, inside the stage
    assert signal.getsignal(signal.SIGTERM) is handler


def _launch(workdir, *overrides):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
    command = [sys.executable, "-m", "launch.em", f"--workdir={workdir}", *TINY, *overrides]
    return subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _finish(process):
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err.decode()[-3000:]


def _terminate_when(process, marker):
    """Sends SIGTERM once `marker` exists; returns (exit status, stderr)."""
    deadline = time.time() + 400
    while not marker.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), f"the run never reached {marker}"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    return process.returncode, err.decode()


def _assert_same_laps(workdir, reference, laps):
    assert em.completed_laps(str(workdir)) == list(laps)
    for lap in laps:
        expected, _ = em.load_lap(str(reference), lap)
        resumed, info = em.load_lap(str(workdir), lap)
        np.testing.assert_array_equal(resumed, expected)
        assert info["num_kept"] == len(resumed)


@pytest.mark.slow
def test_sigterm_in_the_m_step_and_the_e_step_then_rerun_and_extend(tmp_path):
    reference, in_m, in_e = tmp_path / "reference", tmp_path / "m_step", tmp_path / "e_step"
    first = _launch(reference, "--config.em.num_laps=2")

    # SIGTERM during lap 1's M-step (after its first checkpoint).
    status, err = _terminate_when(
        _launch(in_m, "--config.em.num_laps=1"), in_m / "em/lap_001/train/checkpoints/2"
    )
    assert status == preemption.EXIT_STATUS == 75, err[-3000:]
    assert "preempted, rerun to resume" in err and "Traceback" not in err
    assert em.completed_laps(str(in_m)) == [0]  # the half-trained prior sampled nothing
    assert not (in_m / "em/lap_001/mstep.json").exists()
    assert not (in_m / "em/lap_001/estep").exists()

    # SIGTERM during lap 1's E-step (after its first chunk).
    status, err = _terminate_when(
        _launch(in_e, "--config.em.num_laps=1"), in_e / "em/lap_001/estep/chunk_00000.npy"
    )
    assert status == 75, err[-3000:]
    assert em.completed_laps(str(in_e)) == [0]
    mstep = storage.read_json(in_e / "em/lap_001/mstep.json")

    _finish(first)
    _finish(_launch(in_e, "--config.em.num_laps=1"))
    _assert_same_laps(in_e, reference, (0, 1))
    # The M-step's time survives the kill in the E-step (it is not re-measured on the rerun).
    assert em.load_lap(str(in_e), 1)[1]["time/mstep_s"] == mstep["time/mstep_s"]

    _finish(_launch(in_m, "--config.em.num_laps=1"))
    _assert_same_laps(in_m, reference, (0, 1))
    # Extending the finished run to 2 laps continues from lap 1 (num_laps may change).
    _finish(_launch(in_m, "--config.em.num_laps=2"))
    _assert_same_laps(in_m, reference, (0, 1, 2))
    assert storage.read_json(in_m / "config.json")["em"]["num_laps"] == 2
