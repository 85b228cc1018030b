"""One writer per workdir (issue 18, finding 4): `workdir_lock.hold` on local disks and gs://."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import REPO_ROOT

from diffssl_jax.training import workdir_lock

# Holds the lock of argv[1] until killed (a live run on this host).
HOLDER = textwrap.dedent("""
    import sys, time
    from diffssl_jax.training import workdir_lock
    with workdir_lock.hold(sys.argv[1], command="holder-command"):
        print("held", flush=True)
        time.sleep(600)
""")


def _env(**extra):
    return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO_ROOT, **extra)


def _start_holder(workdir, env=None):
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, workdir],
        env=env or _env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "held", process.stderr.read()
    return process


def _lock_record(host, pid, heartbeat, token="old"):
    return {
        "host": host,
        "pid": pid,
        "started": heartbeat,
        "heartbeat": heartbeat,
        "command": "old-command",
        "token": token,
    }


def test_second_holder_fails_at_once_naming_the_first(tmp_path):
    workdir = str(tmp_path / "run")
    holder = _start_holder(workdir)
    try:
        t0 = time.monotonic()
        with pytest.raises(workdir_lock.WorkdirLockedError) as error:
            with workdir_lock.hold(workdir):
                pass
        assert time.monotonic() - t0 < 5
        message = str(error.value)
        for part in (f"pid {holder.pid}", socket.gethostname(), "holder-command", "since"):
            assert part in message, message
        assert "another --workdir" in message and "Wait for that run" in message
    finally:
        holder.kill()
        holder.communicate()  # reaps it and closes its pipes
    # Its holder is dead: the lock is stale and is taken over (same host: pid check).
    with workdir_lock.hold(workdir, command="second"):
        record = json.loads((tmp_path / "run" / "lock.json").read_text())
        assert record["pid"] == os.getpid() and record["command"] == "second"
    assert not (tmp_path / "run" / "lock.json").exists()


def test_nested_holds_in_subdirectories_do_not_deadlock(tmp_path):
    workdir = str(tmp_path / "em_run")
    with workdir_lock.hold(workdir):
        with workdir_lock.hold(os.path.join(workdir, "em", "lap_001", "train")):
            with workdir_lock.hold(workdir):
                assert sorted(os.listdir(workdir)) == ["lock.json"]
        assert (tmp_path / "em_run" / "lock.json").exists()  # still held by the outer one
    # A sibling is another workdir: it takes its own lock.
    with workdir_lock.hold(str(tmp_path / "a")):
        with workdir_lock.hold(str(tmp_path / "ab")):
            assert (tmp_path / "ab" / "lock.json").exists()


def test_released_on_error_and_leaves_no_directory_it_created(tmp_path):
    workdir = tmp_path / "new" / "run"
    with pytest.raises(ValueError, match="bad config"):
        with workdir_lock.hold(str(workdir)):
            assert (workdir / "lock.json").exists()
            raise ValueError("bad config")
    assert not (tmp_path / "new").exists()  # a failed start leaves no workdir behind
    with workdir_lock.hold(str(workdir)):
        (workdir / "config.json").write_text("{}")
    assert os.listdir(workdir) == ["config.json"]  # what the run wrote stays


def test_stale_locks_of_dead_pids_and_silent_hosts_are_taken_over(tmp_path, caplog):
    workdir = tmp_path / "run"
    workdir.mkdir()
    lock = workdir / "lock.json"
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock.write_text(json.dumps(_lock_record(socket.gethostname(), dead.pid, time.time())))
    with workdir_lock.hold(str(workdir)):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert "stale lock" in caplog.text and f"process {dead.pid}" in caplog.text

    # Another host: alive while its heartbeat is recent, stale after the timeout.
    lock.write_text(json.dumps(_lock_record("other-host", 1, time.time() - 30)))
    with pytest.raises(workdir_lock.WorkdirLockedError, match="other-host"):
        with workdir_lock.hold(str(workdir), stale_after_seconds=60):
            pass
    with workdir_lock.hold(str(workdir), stale_after_seconds=10):
        assert json.loads(lock.read_text())["host"] == socket.gethostname()
    assert "no heartbeat from other-host" in caplog.text


def test_heartbeat_keeps_a_long_run_alive(tmp_path):
    workdir = str(tmp_path / "run")
    with workdir_lock.hold(workdir, heartbeat_seconds=0.1):
        first = json.loads((tmp_path / "run" / "lock.json").read_text())["heartbeat"]
        time.sleep(0.6)
        record = json.loads((tmp_path / "run" / "lock.json").read_text())
        assert record["heartbeat"] > first and record["started"] == first
        seen_from_elsewhere = {**record, "host": "other-host"}  # judged by its heartbeat
        assert workdir_lock.stale_reason(seen_from_elsewhere, stale_after_seconds=0.5) is None


def test_train_holds_the_lock_before_writing(tmp_path):
    """`training.train` on a workdir another run holds fails before writing anything."""
    from diffssl_jax import methods, training
    from diffssl_jax.configs.ddpm import digits

    workdir = str(tmp_path / "run")
    holder = _start_holder(workdir)
    try:
        config = digits.get_config("tiny")
        with pytest.raises(workdir_lock.WorkdirLockedError, match=f"pid {holder.pid}"):
            training.train(config, workdir, methods.make_recipe(config))
        assert os.listdir(workdir) == ["lock.json"]  # no config.json, no checkpoints
    finally:
        holder.kill()
        holder.communicate()  # reaps it and closes its pipes


@pytest.mark.slow
def test_two_launches_on_one_workdir_one_trains_one_refused(tmp_path):
    """Finding 4: `C="python -m launch.train ... --workdir=runs/d"; $C & $C & wait` raced on
    orbax's temporary directories (one hung for minutes)."""
    command = [
        sys.executable,
        "-m",
        "launch.train",
        "--config=configs/ddpm/digits.py:tiny",
        f"--workdir={tmp_path / 'd'}",
    ]
    env = _env(JAX_DISABLE_MOST_OPTIMIZATIONS="1")
    runs = [
        subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=900) for p in runs]  # reads both pipes and closes them
    results = [(p.returncode, err.decode()) for p, (_, err) in zip(runs, outputs, strict=True)]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0 and codes[1] != 0, [r[1][-2000:] for r in results]
    refused = next(err for code, err in results if code != 0)
    assert "the workdir is in use" in refused and "pid" in refused, refused[-2000:]
    from diffssl_jax import load_params

    assert sorted(os.listdir(tmp_path / "d" / "checkpoints")) == ["4", "6"]
    assert not (tmp_path / "d" / "lock.json").exists()
    load_params(str(tmp_path / "d"))


# gs:// through the GCS emulator (tests/training/gcs_emulator.py).
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    pytest.importorskip("gcsfs")
    pytest.importorskip("gcp_storage_emulator")
    import gcs_emulator

    cwd = tmp_path_factory.mktemp("emulator")
    with gcs_emulator.running("lock-test", str(cwd)) as env, pytest.MonkeyPatch.context() as mp:
        for key, value in {**env, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}.items():
            mp.setenv(key, value)
        yield env


def test_gs_workdir_lock_refuses_a_live_holder_and_takes_over_a_stale_one(gcs, caplog):
    from diffssl_jax import storage

    workdir = "gs://lock-test/run"
    lock = storage.path(workdir) / "lock.json"
    holder = _start_holder(workdir, env=_env(**gcs, GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false"))
    try:
        assert json.loads(lock.read_text())["pid"] == holder.pid
        with pytest.raises(workdir_lock.WorkdirLockedError, match=f"pid {holder.pid}"):
            with workdir_lock.hold(workdir):
                pass
    finally:
        holder.kill()
        holder.communicate()  # reaps it and closes its pipes
    with workdir_lock.hold(workdir, command="after"):  # dead pid on this host: stale
        assert json.loads(lock.read_text())["command"] == "after"
        with workdir_lock.hold(workdir + "/em/lap_000/train"):  # nested: no deadlock
            pass
    assert not lock.exists()
    assert "stale lock" in caplog.text

    storage.write_json(lock, _lock_record("other-host", 1, time.time() - 5))
    with pytest.raises(workdir_lock.WorkdirLockedError, match="other-host"):
        with workdir_lock.hold(workdir):
            pass
    storage.write_json(lock, _lock_record("other-host", 1, time.time() - 3600))
    with workdir_lock.hold(workdir):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()
