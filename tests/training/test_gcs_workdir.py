"""`gs://` workdirs against a GCS emulator on loopback: nothing may land on local disk.

The emulator (`gcs_emulator.running`) speaks the GCS JSON API; gcsfs (epath's `gs://`
backend) and tensorstore (orbax's array writer) both talk to it, so these tests run the same
client code as a TPU VM writing to a bucket. They also check that no `gs:` directory appears
locally (what `os.path.abspath("gs://b/x")` used to create).
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap

import jax
import numpy as np
import pytest
from conftest import REPO_ROOT

# Read by gcsfs at import: no bucket-layout RPCs (they need real credentials; an emulator
# bucket is a plain one).
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
pytest.importorskip("gcsfs")
pytest.importorskip("gcp_storage_emulator")

import gcs_emulator  # noqa: E402 (tests/training is on sys.path under pytest's rootdir mode)

import diffssl_jax  # noqa: E402
from diffssl_jax import em, storage  # noqa: E402
from diffssl_jax.em import laps  # noqa: E402
from diffssl_jax.training import loop  # noqa: E402

BUCKET = "diffssl-test"


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """The emulator's environment, set in this process too (restored afterwards)."""
    cwd = tmp_path_factory.mktemp("emulator")
    with gcs_emulator.running(BUCKET, str(cwd)) as env, pytest.MonkeyPatch.context() as mp:
        env = {**env, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
        for key, value in env.items():
            mp.setenv(key, value)
        yield env
    assert not os.listdir(cwd), "the in-memory emulator wrote files"


def _local_gs_dirs(tree) -> list[str]:
    """Local `gs:` paths anywhere under `tree`, or directly in the repository, the temporary
    directory or the home directory (where a URI treated as a local path lands)."""
    found = []
    for directory, dirs, files in os.walk(tree):
        found += [os.path.join(directory, n) for n in dirs + files if n.startswith("gs:")]
    for root in (REPO_ROOT, tempfile.gettempdir(), os.path.expanduser("~")):
        found += [os.path.join(root, n) for n in os.listdir(root) if n.startswith("gs:")]
    return found


def test_path_keeps_uris_and_makes_local_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert str(storage.path("gs://b/x") / "config.json") == "gs://b/x/config.json"
    assert str(storage.path("runs/a")) == str(tmp_path / "runs" / "a")
    assert storage.is_remote("gs://b/x") and not storage.is_remote("runs/a")


def test_local_writes_are_atomic_and_append(tmp_path):
    storage.write_json(tmp_path / "a" / "b.json", {"x": 1})
    storage.save_npy(tmp_path / "a" / "c.npy", np.arange(3))
    storage.append_line(tmp_path / "m.jsonl", '{"step": 1}')
    storage.append_line(tmp_path / "m.jsonl", '{"step": 2}')
    assert sorted(os.listdir(tmp_path / "a")) == ["b.json", "c.npy"]  # no *.tmp left
    assert storage.read_json(tmp_path / "a" / "b.json") == {"x": 1}
    np.testing.assert_array_equal(storage.load_npy(tmp_path / "a" / "c.npy"), np.arange(3))
    assert (tmp_path / "m.jsonl").read_text() == '{"step": 1}\n{"step": 2}\n'
    with pytest.raises(ValueError, match="single line"):
        storage.append_line(tmp_path / "m.jsonl", "a\nb")


def test_only_process_0_writes_shared_files(tmp_path, monkeypatch):
    from diffssl_jax.configs.ddpm import digits

    monkeypatch.setattr(jax, "process_index", lambda: 1)
    loop.prepare_workdir(digits.get_config("tiny"), str(tmp_path / "run"))
    laps.write_lap(str(tmp_path / "run"), 0, {"num_kept": 1}, np.zeros((1, 2)))
    assert not os.listdir(tmp_path)
    monkeypatch.setattr(jax, "process_index", lambda: 0)
    laps.write_lap(str(tmp_path / "run"), 0, {"num_kept": 1}, np.zeros((1, 2)))
    assert em.completed_laps(str(tmp_path / "run")) == [0]


def test_files_round_trip_through_the_bucket(gcs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = f"gs://{BUCKET}/files"
    storage.write_json(f"{root}/a/b.json", {"x": 1})
    storage.save_npz(f"{root}/eval/s.npz", images=np.ones((2, 3)))
    for step in (1, 2, 3):
        storage.append_line(f"{root}/metrics.jsonl", json.dumps({"step": step}))
    assert storage.read_json(f"{root}/a/b.json") == {"x": 1}
    rows = storage.path(f"{root}/metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [1, 2, 3]
    with storage.path(f"{root}/eval/s.npz").open("rb") as f:
        np.testing.assert_array_equal(np.load(f)["images"], np.ones((2, 3)))
    assert not os.listdir(tmp_path) and not _local_gs_dirs(tmp_path)


def test_prepare_workdir_and_em_laps_live_in_the_bucket(gcs, tmp_path, monkeypatch):
    from diffssl_jax.configs.ddpm import digits

    monkeypatch.chdir(tmp_path)
    workdir = f"gs://{BUCKET}/em_run"
    config = digits.get_config("tiny")
    loop.prepare_workdir(config, workdir)
    assert json.loads(diffssl_jax.load_config(workdir).to_json()) == json.loads(config.to_json())
    with config.unlocked():
        config.seed += 1
    with pytest.raises(ValueError, match="different config"):
        loop.prepare_workdir(config, workdir)

    # An object store has no directories: laps are found by their objects' prefixes.
    samples = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    assert em.completed_laps(workdir) == []
    laps.write_lap(workdir, 0, {"num_kept": 5}, samples)
    laps.write_lap(workdir, 1, {"num_kept": 5}, samples + 1)
    assert em.completed_laps(workdir) == [0, 1]
    got, info = em.load_lap(workdir, 1)
    np.testing.assert_array_equal(got, samples + 1)
    assert info == {"num_kept": 5}
    metrics = storage.path(workdir) / "metrics.jsonl"
    assert [json.loads(r)["lap"] for r in metrics.read_text().splitlines()] == [0, 1]
    assert not os.listdir(tmp_path) and not _local_gs_dirs(tmp_path)


# Trains configs/ddpm/digits.py:tiny (6 steps, checkpoints at 2, 4, 6) into argv[1] with the
# library's one loop (and the launchers' sample grids); with KILL_AT=n it SIGKILLs itself
# while the n-th batch is assembled.
TRAIN = textwrap.dedent("""
    import os, signal, sys, time
    from diffssl_jax.configs.ddpm import digits
    from diffssl_jax import methods, training
    from diffssl_jax import parallel
    from diffssl_jax.evaluation.samples import sample_grid_drawer
    original, count = parallel.to_global_batch, [0]
    def killing(batch, mesh):
        count[0] += 1
        if count[0] == int(os.environ.get("KILL_AT", "0")):
            time.sleep(3)  # let orbax finish its asynchronous writes, then die mid-step
            os.kill(os.getpid(), signal.SIGKILL)
        return original(batch, mesh)
    parallel.to_global_batch = killing
    config = digits.get_config("tiny")
    draw = sample_grid_drawer(config.method)
    training.train(config, sys.argv[1], methods.make_recipe(config), draw_samples=draw)
""")


def _train(workdir, env, cwd, kill_at=0):
    env = dict(
        os.environ,
        **env,
        JAX_PLATFORMS="cpu",
        JAX_DISABLE_MOST_OPTIMIZATIONS="1",
        PYTHONPATH=REPO_ROOT,
        KILL_AT=str(kill_at),
    )
    return subprocess.run(
        [sys.executable, "-c", TRAIN, workdir],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _steps(workdir) -> list[int]:
    """Finalised checkpoint steps (orbax's `commit_success.txt` marks them on GCS)."""
    root = storage.path(workdir) / "checkpoints"
    return sorted(int(p.parent.name) for p in root.glob("*/commit_success.txt"))


@pytest.mark.slow
def test_gs_workdir_trains_resumes_after_sigkill_and_loads(gcs, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    workdir = f"gs://{BUCKET}/ddpm_tiny"

    killed = _train(workdir, gcs, cwd, kill_at=5)  # dies in step 5: checkpoints 2, 4 exist
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert _steps(workdir) == [2, 4]
    ema_4 = diffssl_jax.load_params(workdir)  # the latest finalised step: 4

    resumed = _train(workdir, gcs, cwd)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _steps(workdir) == [4, 6]  # keep_checkpoints=2
    metrics = (storage.path(workdir) / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(r) for r in metrics]
    # Rows 2 and 4 from the killed run, 6 from the resumed one (which started at step 4).
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert all(np.isfinite(r["train/loss"]) for r in rows)
    assert (storage.path(workdir) / "figures" / "samples_0000006.png").exists()
    assert (storage.path(workdir) / "config.json").exists()

    ema_6 = diffssl_jax.load_params(workdir)
    params_4 = diffssl_jax.load_params(workdir, step=4, which="params")
    leaves_4, leaves_6 = jax.tree.leaves(ema_4), jax.tree.leaves(ema_6)
    assert jax.tree.structure(ema_4) == jax.tree.structure(ema_6)
    assert all(np.all(np.isfinite(x)) for x in leaves_6)
    assert any(not np.array_equal(a, b) for a, b in zip(leaves_4, leaves_6, strict=True))
    assert len(jax.tree.leaves(params_4)) == len(leaves_4)

    assert not os.listdir(cwd), os.listdir(cwd)
    assert not _local_gs_dirs(tmp_path)
