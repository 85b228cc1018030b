"""Workdir storage: every file the library writes goes through `etils.epath`.

A workdir is a local directory or an object-store URI (`gs://bucket/dir`, also `s3://`): epath
picks the backend (the local filesystem, or fsspec's gcsfs for `gs://` when TensorFlow is
absent, `tf.io.gfile` when it is present); orbax takes the same `epath.Path` for checkpoints.

Rules every writer here follows:

- Atomic writes. Locally a file is written to `<name>.tmp` and renamed over the target
  (`os.replace`, atomic on POSIX). On an object store a rename is a copy and a delete, but a
  single object upload is atomic (readers see the old object or the new one, never a part),
  so the final object is written directly.
- Appends. Object stores cannot append: `append_line` rewrites the whole (small) object with
  the new line added; locally it appends. Files appended to must stay small (a metrics log).
- Multi-host. Only `is_primary()` (process 0) writes shared files: config, metrics, figures,
  EM laps, evaluation outputs. Orbax writes checkpoints from every process itself.
"""

import io
import json
import os
from typing import Any

import jax
import numpy as np
from etils import epath

PathLike = str | os.PathLike


def is_remote(path: PathLike) -> bool:
    """Whether `path` is an object-store URI (`gs://...`, `s3://...`), not a local path."""
    return "://" in os.fspath(path)


def path(location: PathLike) -> epath.Path:
    """`location` as an `epath.Path`: URIs unchanged, local paths made absolute.

    (`os.path.abspath` and `epath.Path.resolve` turn `gs://b/x` into a local `./gs:/b/x`, so
    they are applied to local paths only.)
    """
    if is_remote(location):
        return epath.Path(location)
    return epath.Path(os.path.abspath(os.fspath(location)))


def is_primary() -> bool:
    """Whether this process writes the shared files of a workdir (process 0)."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """Waits for every process (after process 0 wrote files the others read); no-op on one."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def write_bytes(target: PathLike, data: bytes) -> epath.Path:
    """Writes `data` to `target` atomically (see the module docstring); makes the parents."""
    target = path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_remote(target):
        target.write_bytes(data)
        return target
    tmp = target.parent / f"{target.name}.tmp"
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


def write_text(target: PathLike, text: str) -> epath.Path:
    """Writes `text` (UTF-8) to `target` atomically."""
    return write_bytes(target, text.encode("utf-8"))


def write_json(target: PathLike, obj: Any, indent: int = 1) -> epath.Path:
    """Writes `obj` as JSON to `target` atomically."""
    return write_text(target, json.dumps(obj, indent=indent))


def read_json(source: PathLike) -> Any:
    """The JSON object stored at `source`."""
    return json.loads(path(source).read_text())


def append_line(target: PathLike, line: str) -> None:
    """Appends `line` (and a newline) to a text file, creating it if missing.

    Locally this is an `open(..., "a")`; on an object store the object is read and rewritten
    whole (one atomic upload), so a reader never sees a half-written line.
    """
    if "\n" in line:
        raise ValueError(f"append_line takes a single line, got {line!r}")
    target = path(target)
    if is_remote(target):
        old = target.read_text() if target.exists() else ""
        write_text(target, old + line + "\n")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a") as f:
        f.write(line + "\n")


def save_npy(target: PathLike, array: np.ndarray) -> epath.Path:
    """Saves `array` in `.npy` format to `target` atomically."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return write_bytes(target, buffer.getvalue())


def load_npy(source: PathLike) -> np.ndarray:
    """The array stored in the `.npy` file `source`."""
    return np.load(io.BytesIO(path(source).read_bytes()), allow_pickle=False)


def save_npz(target: PathLike, **arrays: np.ndarray) -> epath.Path:
    """Saves `arrays` to a compressed `.npz` file `target` atomically."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return write_bytes(target, buffer.getvalue())
