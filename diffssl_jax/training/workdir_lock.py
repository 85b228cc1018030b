"""One writer per workdir: `hold(workdir)`, a lock file naming its holder.

`workdir/lock.json` holds `{host, pid, started, heartbeat, command, token}`. `hold` creates
it atomically before anything is written, refreshes `heartbeat` from a daemon thread while
the run lives, and removes it on exit (also on an exception). A second run on the same
workdir fails at once with `WorkdirLockedError` naming the holder. A lock is stale, and is
taken over with a warning, when its holder is gone: the same host and a pid that no longer
runs, or (another host) no heartbeat for `stale_after_seconds`.

Nesting: a process that holds a workdir's lock may enter `hold` again on it or on any path
under it (EM trains each M-step in `workdir/em/lap_k/train`); the inner call takes nothing.
Multi-host: process 0 takes the lock for the job; the other processes take nothing.

Primitives. Local disk: `O_CREAT | O_EXCL` (atomic, also over NFS v3+), and takeover by an
atomic rename of the stale file. `gs://`: gcsfs's `mode="create"` upload (GCS precondition
`ifGenerationMatch=0`: exactly one of two racing creators succeeds) and a delete conditioned
on the stale object's generation. Other object stores (and a GCS server that ignores
preconditions, e.g. some emulators): create if absent, then read back and keep the lock only
if the token is ours; two launches within one round trip of each other can both pass.
"""

import contextlib
import dataclasses
import datetime
import json
import os
import socket
import sys
import threading
import time
import uuid

from absl import logging

from diffssl_jax import storage
from diffssl_jax.training import lock_files

LOCK_NAME = "lock.json"
HEARTBEAT_SECONDS = 60.0
STALE_AFTER_SECONDS = 600.0

_held: dict[str, int] = {}  # workdirs this process holds -> nesting depth
_held_guard = threading.Lock()


class WorkdirLockedError(RuntimeError):
    """Another live run holds the workdir's lock."""


def _key(workdir) -> str:
    return str(storage.path(workdir)).rstrip("/") + "/"


def _covering(key: str) -> str | None:
    """The held workdir that is `key` or one of its parents, if any."""
    with _held_guard:
        return next((held for held in _held if key.startswith(held)), None)


def _record(command: str | None) -> dict:
    now = time.time()
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": now,
        "heartbeat": now,
        "command": command if command is not None else " ".join(sys.argv),
        "token": uuid.uuid4().hex,
    }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def stale_reason(holder: dict, stale_after_seconds: float, now: float | None = None):
    """Why `holder`'s lock is stale, or None while its holder may still run.

    Same host: stale iff the pid no longer runs (or is this very process, which does not
    hold it: a leftover of an earlier process with the same pid). Another host: stale iff
    the last heartbeat is older than `stale_after_seconds`.
    """
    now = time.time() if now is None else now
    if holder.get("host") == socket.gethostname():
        pid = int(holder.get("pid", -1))
        if pid == os.getpid() or not _pid_alive(pid):
            return f"process {pid} on this host ({holder.get('host')}) is no longer running"
        return None
    age = now - float(holder.get("heartbeat", 0.0))
    if age > stale_after_seconds:
        return f"no heartbeat from {holder.get('host')} for {age:.0f} s"
    return None


def _when(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds).isoformat(sep=" ", timespec="seconds")


def locked_message(lock_path, holder: dict, stale_after_seconds: float) -> str:
    """What a second launch is told: who holds the workdir, and how to proceed."""
    age = time.time() - float(holder.get("heartbeat", 0.0))
    return (
        f"the workdir is in use: {lock_path} is held by pid {holder.get('pid')} on host "
        f"{holder.get('host')} since {_when(float(holder.get('started', 0.0)))} (command: "
        f"{holder.get('command')!r}; last heartbeat {age:.0f} s ago). Only one run may write "
        "a workdir. Wait for that run to finish, stop it (it checkpoints on SIGTERM) and "
        "rerun, or use another --workdir. A lock whose holder died is taken over "
        f"automatically: at once on the same host, after {stale_after_seconds:.0f} s "
        f"without a heartbeat from another host; if you are sure it is dead, remove {lock_path}."
    )


@dataclasses.dataclass
class _Lock:
    """A lock file this process created; `refresh` and `release` only touch our own."""

    path: object
    record: dict
    files: lock_files.LockFiles
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Writes a new heartbeat if the lock is still ours; False if it was taken over."""
        current = self.files.read(self.path)
        if current is None or current[0].get("token") != self.record["token"]:
            return False
        self.record = {**self.record, "heartbeat": time.time()}
        self.files.overwrite(self.path, json.dumps(self.record).encode())
        return True

    def beat(self, interval: float) -> None:
        while not self.stop.wait(interval):
            try:
                if not self.refresh():
                    logging.error(
                        "the lock %s is no longer ours (taken over as stale?); another run "
                        "may be writing this workdir",
                        self.path,
                    )
                    return
            except Exception as error:  # storage hiccup: try again at the next beat
                logging.warning("could not refresh the lock %s: %s", self.path, error)

    def release(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        current = self.files.read(self.path)
        if current is not None and current[0].get("token") == self.record["token"]:
            self.files.remove_if(self.path, current[1])


def acquire(workdir, *, command=None, stale_after_seconds=STALE_AFTER_SECONDS) -> _Lock:
    """Creates `workdir/lock.json` for this process, taking over a stale one.

    Raises:
        WorkdirLockedError: if a live run holds the lock.
    """
    lock_path = storage.path(workdir) / LOCK_NAME
    files = lock_files.for_path(lock_path)
    record = _record(command)
    for _ in range(5):
        if files.create(lock_path, json.dumps(record).encode()):
            return _Lock(lock_path, record, files)
        current = files.read(lock_path)
        if current is None:  # released between our create and read: try again
            continue
        holder, version = current
        reason = stale_reason(holder, stale_after_seconds)
        if reason is None:
            raise WorkdirLockedError(locked_message(lock_path, holder, stale_after_seconds))
        logging.warning(
            "taking over the stale lock %s of pid %s on %s (since %s): %s",
            lock_path,
            holder.get("pid"),
            holder.get("host"),
            _when(float(holder.get("started", 0.0))),
            reason,
        )
        files.remove_if(lock_path, version)
    raise WorkdirLockedError(
        f"could not take {lock_path}: other launches keep creating it; start one run only"
    )


@contextlib.contextmanager
def hold(
    workdir,
    *,
    command: str | None = None,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
    stale_after_seconds: float = STALE_AFTER_SECONDS,
):
    """Holds the lock of `workdir` for the `with` block (see the module docstring).

    Args:
        workdir: a local path or a `gs://` URI.
        command: what the lock says the holder runs; None for this process's `sys.argv`.
        heartbeat_seconds: how often the holder refreshes the lock.
        stale_after_seconds: how old a heartbeat from another host must be to be stale.

    Raises:
        WorkdirLockedError: at once, if another live run holds it.
    """
    key = _key(workdir)
    if _covering(key) is not None:
        yield
        return
    lock, created = None, []
    if storage.is_primary():
        created = lock_files.missing_local_dirs(storage.path(workdir))
        lock = acquire(workdir, command=command, stale_after_seconds=stale_after_seconds)
        lock.thread = threading.Thread(
            target=lock.beat, args=(heartbeat_seconds,), name="workdir-lock", daemon=True
        )
        lock.thread.start()
    with _held_guard:
        _held[key] = 1
    try:
        yield
    finally:
        with _held_guard:
            _held.pop(key, None)
        if lock is not None:
            lock.release()
            lock_files.remove_empty_dirs(created)
