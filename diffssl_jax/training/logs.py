"""Readable logs: absl at INFO for our own lines, libraries' INFO chatter filtered out.

Launchers call `setup_logging()` once in `main`. The library logs through `absl.logging`
(orbax, grain and etils do too, so their lines reach the same handler); this keeps the
progress and checkpoint lines of `diffssl_jax`, the launchers and user code at INFO, and
drops the INFO/DEBUG lines of installed third-party packages (orbax logs every file it
writes at INFO). Their warnings and errors still show.

An explicit `--verbosity` (or `-v`) flag is respected as given and disables the filter:
asking for a level means seeing every line at that level.

Also here: `shows_live_updates(stream)` (the training loop draws its tqdm bar only on a
terminal or in a notebook, never into a log file) and `suppress_absl_messages(...)`, a
narrowly scoped filter for known, unactionable library warnings.
"""

import contextlib
import logging as py_logging
import os
from collections.abc import Iterator
from typing import Any

from absl import flags, logging

# Directories whose log records are always kept: the package itself, wherever it is
# installed (a checkout or site-packages), and the launchers beside it.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_OWN_DIRS = (
    _PACKAGE_DIR + os.sep,
    os.path.join(os.path.dirname(_PACKAGE_DIR), "launch") + os.sep,
)
_LIBRARY_MARKERS = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")


def is_library_record(record: py_logging.LogRecord) -> bool:
    """Whether a log record comes from an installed third-party package (not ours)."""
    path = os.path.abspath(record.pathname) if record.pathname else ""
    if any(path.startswith(own) for own in _OWN_DIRS):
        return False
    return any(marker in path for marker in _LIBRARY_MARKERS)


class LibraryInfoFilter(py_logging.Filter):
    """Drops records below `min_level` that come from installed third-party packages."""

    def __init__(self, min_level: int = py_logging.WARNING):
        super().__init__()
        self.min_level = min_level

    def filter(self, record: py_logging.LogRecord) -> bool:
        return record.levelno >= self.min_level or not is_library_record(record)


def shows_live_updates(stream: Any) -> bool:
    """Whether `stream` is watched live, where a progress bar's '\\r' redraws work: a
    terminal, or a Jupyter/Colab cell (ipykernel's stream). False for files and pipes, so a
    log file never gets carriage-return updates."""
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return True
    return type(stream).__module__.startswith("ipykernel.")


def _verbosity_given() -> bool:
    return flags.FLAGS.is_parsed() and flags.FLAGS["verbosity"].present


def setup_logging(library_level: int = py_logging.WARNING) -> None:
    """Routes logs through absl at INFO and filters third-party INFO lines. Idempotent.

    Args:
        library_level: the lowest level shown for installed third-party packages (orbax,
            grain, jax, ...). Ignored when `--verbosity` was given explicitly.
    """
    logging.use_absl_handler()
    handler = logging.get_absl_handler()
    for old in [f for f in handler.filters if isinstance(f, LibraryInfoFilter)]:
        handler.removeFilter(old)
    if _verbosity_given():
        return
    logging.set_verbosity(logging.INFO)  # also sets the root level, so Python loggers follow
    handler.addFilter(LibraryInfoFilter(library_level))


class _MessageFilter(py_logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: py_logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


@contextlib.contextmanager
def suppress_absl_messages(*prefixes: str) -> Iterator[None]:
    """Drops absl log records whose message (format string) starts with one of `prefixes`,
    only while the block runs; every other record passes."""
    logger = logging.get_absl_logger()
    message_filter = _MessageFilter(prefixes)
    logger.addFilter(message_filter)
    try:
        yield
    finally:
        logger.removeFilter(message_filter)
