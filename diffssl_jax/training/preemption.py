"""Preemption: a SIGTERM saves what is in flight, then stops the whole program.

A preemptible TPU VM (or a batch scheduler) sends SIGTERM, then SIGKILL after a grace
period. While `handle_sigterm()` is active (every launcher, through `launch/cli.py`; the
training loop and the EM E-step also enter it, for library calls), a SIGTERM

- inside `deferred()` (the training loop's steps, the EM E-step's chunks) only sets a flag:
  the stage polls it (`requested()`) at its next save point, saves (and waits for the save),
  then raises `Preempted`; leaving the block with the flag set raises `Preempted` too;
- anywhere else (loading, evaluation, figures) raises `Preempted` at once: nothing is in
  flight there that a rerun cannot redo, and every file is written atomically (`storage`).

`Preempted` propagates through `em.run` and the pipeline, so nothing downstream of the
unfinished stage runs or is marked complete. The launchers turn it into the exit status
`EXIT_STATUS` (75, `EX_TEMPFAIL` of `sysexits.h`: a temporary failure, retry) and the line
"preempted, rerun to resume"; rerunning the same command continues where the run stopped.
"""

import contextlib
import signal
import threading

EXIT_STATUS = 75  # EX_TEMPFAIL: distinct from 1 (an error) and 143 (killed by SIGTERM)


class Preempted(Exception):
    """A SIGTERM stopped the run after saving what was in flight; rerun to resume.

    Attributes:
      where: what was stopped (e.g. "training runs/x at step 40").
      step: the training step checkpointed last, when a training loop was stopped.
    """

    def __init__(self, where: str, step: int | None = None):
        super().__init__(f"preempted (SIGTERM) {where}; rerun the same command to resume")
        self.where = where
        self.step = step


class _State:
    """The process's SIGTERM state (signal handlers run in the main thread only)."""

    requested = False  # a SIGTERM arrived while handled
    depth = 0  # nesting of `handle_sigterm`
    deferring = 0  # nesting of `deferred`
    previous = None  # the handler `handle_sigterm` replaced


_STATE = _State()


def _on_sigterm(signum, frame) -> None:
    del signum, frame
    _STATE.requested = True
    if not _STATE.deferring:
        raise Preempted("with nothing in flight")


def requested() -> bool:
    """Whether a SIGTERM arrived (the flag a stage polls inside `deferred`)."""
    return _STATE.requested


@contextlib.contextmanager
def handle_sigterm():
    """Turns SIGTERM into `Preempted` (see the module docstring); nests, restores on exit.

    Outside the main thread (some notebook kernels) signals cannot be handled: it does nothing.
    """
    main = threading.current_thread() is threading.main_thread()
    outermost = main and _STATE.depth == 0
    if outermost:
        _STATE.requested = False
        _STATE.previous = signal.signal(signal.SIGTERM, _on_sigterm)
    _STATE.depth += main
    try:
        yield
    finally:
        _STATE.depth -= main
        if outermost:
            signal.signal(signal.SIGTERM, _STATE.previous)
            _STATE.previous = None


@contextlib.contextmanager
def deferred(where: str):
    """A stage that saves its progress: SIGTERM only sets the flag it polls (`requested()`).

    Args:
      where: what the stage is, for the `Preempted` raised when the block ends (without an
        error of its own) after a SIGTERM the stage did not act on.
    """
    _STATE.deferring += 1
    try:
        yield
    finally:
        _STATE.deferring -= 1
    if _STATE.requested and not _STATE.deferring:
        raise Preempted(where)
