"""Exclusive-create files on local disks and object stores, for `workdir_lock`.

Each backend offers `create(path, data) -> bool` (False if the file exists), `read(path)`
(the JSON record and a version that identifies this very file, or None), `overwrite` and
`remove_if(path, version)` (removes the file only if it is still that version). See
`workdir_lock`'s docstring for the guarantees each gives.
"""

import json
import os
import uuid

from etils import epath

from diffssl_jax import storage


def _decode(data: bytes) -> dict:
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        record = None
    # A half-written or foreign file: reported as held by nobody alive (stale at once).
    return record if isinstance(record, dict) else {"host": "?", "pid": -1, "heartbeat": 0}


class LockFiles:
    """Local files: `O_EXCL` create, takeover through an atomic rename."""

    def create(self, path: epath.Path, data: bytes) -> bool:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True

    def read(self, path: epath.Path):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return _decode(data), data

    def overwrite(self, path: epath.Path, data: bytes) -> None:
        storage.write_bytes(path, data)

    def remove_if(self, path: epath.Path, version: bytes) -> None:
        aside = path.parent / f"{path.name}.{uuid.uuid4().hex}.stale"
        try:
            os.rename(path, aside)  # atomic: of two takers, one moves the file
        except FileNotFoundError:
            return
        if aside.read_bytes() != version:  # it changed since we read it: put it back
            try:
                os.link(aside, path)  # fails if a new lock appeared meanwhile
            except FileExistsError:
                pass
        os.remove(aside)


class GcsLockFiles(LockFiles):
    """`gs://` objects through gcsfs: create with `ifGenerationMatch=0`, delete on generation."""

    def __init__(self):
        import gcsfs

        self.fs = gcsfs.GCSFileSystem()

    def create(self, path: epath.Path, data: bytes) -> bool:
        if self.read(path) is not None:  # for servers that ignore the precondition
            return False
        try:
            self.fs.pipe_file(str(path), data, mode="create")
        except FileExistsError:  # gcsfs's name for 412 Precondition Failed
            return False
        # A server that ignores the precondition overwrote silently: keep the lock only if
        # the object holds our bytes.
        return self.fs.cat_file(str(path)) == data

    def read(self, path: epath.Path):
        self.fs.invalidate_cache(str(path))
        try:
            generation = self.fs.info(str(path)).get("generation")
            data = self.fs.cat_file(str(path))
        except FileNotFoundError:
            return None
        return _decode(data), (generation, data)

    def overwrite(self, path: epath.Path, data: bytes) -> None:
        self.fs.pipe_file(str(path), data)

    def remove_if(self, path: epath.Path, version) -> None:
        from fsspec.asyn import sync

        generation, data = version
        current = self.read(path)
        if current is None or current[1][1] != data:
            return
        bucket, key, _ = self.fs.split_path(str(path))
        params = {"ifGenerationMatch": str(generation)} if generation else {}
        try:
            sync(self.fs.loop, self.fs._call, "DELETE", "b/{}/o/{}", bucket, key, **params)
        except (FileNotFoundError, FileExistsError):  # gone, or 412: replaced meanwhile
            pass
        self.fs.invalidate_cache(str(path))


class ObjectLockFiles(LockFiles):
    """Any other store through epath: create if absent, then read back (a race window)."""

    def create(self, path: epath.Path, data: bytes) -> bool:
        if path.exists():
            return False
        path.write_bytes(data)
        return path.read_bytes() == data

    def remove_if(self, path: epath.Path, version: bytes) -> None:
        current = self.read(path)
        if current is not None and current[1] == version:
            path.unlink(missing_ok=True)


def for_path(path: epath.Path) -> LockFiles:
    """The backend for `path`: local, `gs://` (gcsfs when installed), or another store."""
    if not storage.is_remote(path):
        return LockFiles()
    if str(path).startswith("gs://"):
        try:
            return GcsLockFiles()
        except ImportError:
            pass
    return ObjectLockFiles()


def missing_local_dirs(directory: epath.Path) -> list[epath.Path]:
    """The local directories from `directory` up that do not exist yet (innermost first)."""
    if storage.is_remote(directory):
        return []  # an object store has no directories to leave behind
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    return missing


def remove_empty_dirs(directories: list[epath.Path]) -> None:
    """Removes those of `directories` (innermost first) that are empty, so that a run that
    failed before writing anything leaves no trace of its lock."""
    for directory in directories:
        try:
            os.rmdir(directory)
        except OSError:  # not empty (the run wrote something) or already gone
            return
