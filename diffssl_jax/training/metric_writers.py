"""Metric writers: `metrics.jsonl`, TensorBoard event files and an absl progress line.

The interface mirrors clu's `MetricWriter` (`write_scalars(step, scalars)`,
`write_images(step, images)`, `flush()`, `close()`), so a clu writer can stand in for any
of these. clu's own TensorBoard writer imports TensorFlow; event files here are written by
tensorboardX, which needs neither TensorFlow nor torch (`tensorboard` only views them).

Workdir layout: `metrics.jsonl` (one JSON object per logged step) and TensorBoard event
files (`events.out.tfevents.*`) in the workdir itself, the Flax examples' convention: both
`tensorboard --logdir=WORKDIR` and `tensorboard --logdir=runs/` work, and each run is named
after its workdir.

Object-store workdirs (`gs://`, `s3://`, `az://`): objects cannot be appended to, so
`AppendFile` keeps an event file's bytes in memory and rewrites the object on flush (what
TensorFlow's GCS file system and tensorboardX's own GCS writer do; a rewrite is atomic, so
readers see the file as of the last flush). tensorboardX's event writer reaches it through
`tensorboardX.record_writer.register_writer_factory`, so event files go straight to the
workdir through etils `epath` (and whatever backend epath has), never via local disk.
"""

import json
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorboardX
from absl import logging
from etils import epath
from tensorboardX import record_writer

from diffssl_jax import storage

_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://")


def uri_scheme(path: Any) -> str | None:
    """The scheme of a URI (`"gs"` for `gs://b/x`); None for a local path."""
    match = _SCHEME.match(os.fspath(path))
    return match.group(1) if match else None


class AppendFile:
    """A binary file that only grows, written through epath (a local disk or an object store).

    `write` buffers; `flush` appends the buffer to a local file, or rewrites the object with
    everything written so far. Remote rewrites are at least `min_upload_secs` apart, except
    on `close`. Thread-safe (tensorboardX flushes from its own thread too).
    """

    def __init__(self, path: Any, *, min_upload_secs: float = 0.0):
        self.path = epath.Path(path)
        self._remote = storage.is_remote(path)
        self._min_upload_secs = min_upload_secs
        self._last_upload = -float("inf")
        self._pending = bytearray()
        self._content = bytearray()
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self._pending += data

    def _flush(self, force: bool) -> None:
        with self._lock:
            if not self._pending:
                return
            if not self._remote:
                with self.path.open("ab") as f:
                    f.write(bytes(self._pending))
                self._pending.clear()
                return
            if not force and time.monotonic() - self._last_upload < self._min_upload_secs:
                return
            self._content += self._pending
            self._pending.clear()
            self.path.write_bytes(bytes(self._content))
            self._last_upload = time.monotonic()

    def flush(self) -> None:
        self._flush(force=False)

    def close(self) -> None:
        self._flush(force=True)


class _EpathRecordFiles:
    """tensorboardX writer factory that opens event files as `AppendFile`s through epath."""

    def __init__(self, min_upload_secs: float):
        self.min_upload_secs = min_upload_secs

    def open(self, path: str) -> AppendFile:
        return AppendFile(path, min_upload_secs=self.min_upload_secs)

    def directory_check(self, path: str) -> None:
        epath.Path(path).mkdir(parents=True, exist_ok=True)


class JsonlWriter:
    """Appends one JSON object per `write_scalars` call (`{"step": ..., **scalars}`) to a
    file, at once (`storage.append_line`), so the file is current even after a kill."""

    def __init__(self, path: Any):
        self.path = storage.path(path)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        storage.append_line(self.path, json.dumps(record))

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        del step, images  # images are saved as PNG figures by the training loop

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def drop_rows_after(path: Any, step: int) -> int:
    """Rewrites a `metrics.jsonl` keeping its rows of steps <= `step` (atomically, through
    `storage`, so on `gs://` too): a run resumed from step `step` redoes the later steps.
    Returns how many rows were dropped."""
    path = storage.path(path)
    if not path.exists():
        return 0
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
    if len(kept) < len(lines):
        storage.write_text(path, "".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


def upscale(image: np.ndarray, min_size: int) -> np.ndarray:
    """Repeats pixels (nearest neighbour) by the smallest integer factor that makes the
    image's shorter side at least `min_size`, so small grids are legible in TensorBoard."""
    factor = max(1, -(-min_size // min(image.shape[:2])))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


class TensorBoardWriter:
    """TensorBoard event files in `logdir` (local or an object store) via tensorboardX.

    Args:
        logdir: the directory of the event files.
        purge_step: on a resumed run, the step it resumes from: TensorBoard hides events
            of earlier runs at steps >= `purge_step` (those the resumed run redoes).
        min_image_size: images are upscaled (nearest) to at least this many pixels.
        min_upload_secs: on object stores, the least time between two rewrites of an event
            file (each rewrite uploads the whole file); `close` always uploads.
    """

    def __init__(
        self,
        logdir: Any,
        *,
        purge_step: int | None = None,
        min_image_size: int = 256,
        min_upload_secs: float = 30.0,
    ):
        logdir = os.fspath(logdir)
        scheme = uri_scheme(logdir)
        if scheme is not None:
            record_writer.register_writer_factory(scheme, _EpathRecordFiles(min_upload_secs))
        self._min_image_size = min_image_size
        self._writer = tensorboardX.SummaryWriter(logdir=logdir, purge_step=purge_step)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for tag, value in scalars.items():
            self._writer.add_scalar(tag, float(value), global_step=int(step))

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """Writes `[H, W, C]` images in [0, 1] (C in {1, 3})."""
        for tag, image in images.items():
            image = np.asarray(image, np.float32)
            if image.ndim != 3 or image.shape[-1] not in (1, 3):
                raise ValueError(f"image {tag!r} must be [H, W, 1 or 3], got {image.shape}")
            image = upscale(image, self._min_image_size)
            self._writer.add_image(tag, image, global_step=int(step), dataformats="HWC")

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def format_duration(seconds: float) -> str:
    """`3725.0` -> `"1h02m05s"`, `65.2` -> `"1m05s"`, `4.4` -> `"4s"`."""
    seconds = int(round(max(seconds, 0.0)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def progress_line(
    step: int,
    num_steps: int,
    scalars: Mapping[str, float],
    *,
    loss_key: str = "train/loss",
    rate_key: str = "time/steps_per_sec",
) -> str:
    """`step 200/1000 (20%) | train/loss 0.1234 | 12.3 steps/s | ETA 1m05s`.

    The ETA assumes the remaining steps run at `scalars[rate_key]` (the last window's rate).
    """
    parts = [f"step {step}/{num_steps} ({100 * step / num_steps:.0f}%)"]
    if loss_key in scalars:
        parts.append(f"{loss_key} {scalars[loss_key]:.4g}")
    rate = scalars.get(rate_key)
    if rate:
        parts.append(f"{rate:.3g} steps/s")
        parts.append(f"ETA {format_duration((num_steps - step) / rate)}")
    return " | ".join(parts)


class LoggingWriter:
    """Logs one absl INFO progress line per `write_scalars` (see `progress_line`)."""

    def __init__(self, num_steps: int):
        if num_steps <= 0:
            raise ValueError(f"num_steps must be positive, got {num_steps}")
        self.num_steps = num_steps

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        logging.info("%s", progress_line(step, self.num_steps, scalars))

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        del step, images

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class MultiWriter:
    """Forwards every call to each of `writers`, in order."""

    def __init__(self, writers: Sequence[Any]):
        self.writers = tuple(writers)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for writer in self.writers:
            writer.write_scalars(step, scalars)

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        for writer in self.writers:
            writer.write_images(step, images)

    def flush(self) -> None:
        for writer in self.writers:
            writer.flush()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def create_default_writer(
    workdir: Any, *, num_steps: int, start_step: int = 0, process_index: int = 0
) -> MultiWriter:
    """The training loop's writer: `metrics.jsonl`, TensorBoard and the progress line on
    process 0; only the progress line on other processes (they write no shared files).

    A run that starts at `start_step` (the checkpoint it resumes from, or 0) logs steps
    `> start_step` only, and those a killed earlier run may have logged already: its rows
    of later steps are dropped from `metrics.jsonl` (`drop_rows_after`), and TensorBoard
    hides its events of steps >= `start_step + 1` (`purge_step`; the rows of `start_step`
    itself and before stay, as nothing redoes them).

    Args:
        workdir: the run's workdir (local or `gs://...`).
        num_steps: the run's total steps (for the progress and ETA).
        start_step: the step the run starts or resumes from.
        process_index: `jax.process_index()`.
    """
    if process_index != 0:
        return MultiWriter([LoggingWriter(num_steps)])
    metrics = storage.path(workdir) / "metrics.jsonl"
    dropped = drop_rows_after(metrics, start_step)
    if dropped:
        logging.info("%s: dropped %d rows after step %d (redone now)", metrics, dropped, start_step)
    return MultiWriter(
        [
            JsonlWriter(metrics),
            TensorBoardWriter(storage.path(workdir), purge_step=start_step + 1),
            LoggingWriter(num_steps),
        ]
    )
