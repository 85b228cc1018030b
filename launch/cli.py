"""What every launcher shares: configs by name, flag parsing, logging and the multi-host start.

A launcher defines its flags, starts `main(argv)` with `cli.start()` and exposes `run()`
(its console script: `diffssl-train`, `diffssl-sample`, `diffssl-em`, `diffssl-evaluate`,
`diffssl-pipeline`) as `cli.run(main)`; `python -m launch.<name>` in a checkout runs the same.

`--config` (and `diffssl-sample`'s `--problem`) take a config file `path[:variants]` or the
name of a config shipped with the package: `--config=ddpm/digits:tiny` is the packaged
`configs/ddpm/digits.py` with the variants `tiny` (found through `importlib.resources`, so it
works from a checkout and from an installed wheel alike; `configs/ddpm/digits.py:tiny`, the
checkout's path, also resolves outside a checkout). Overrides are `--config.x.y=value`.
"""

import functools
import importlib.resources
import os
import re
import sys
import traceback

from absl import app, flags

from diffssl_jax import parallel
from diffssl_jax.training import finite_guard, preemption, validation, workdir_lock
from diffssl_jax.training.logs import setup_logging

CONFIG_PACKAGE = "diffssl_jax.configs"
CONFIG_FLAGS = ("config", "problem")  # the flags whose value may be a shipped config's name
_WORKDIR_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workdir_config.py")


def shipped_configs() -> list[str]:
    """The names of the shipped config files (`ddpm/digits`, ...): those with a `get_config`."""
    names = []
    for group in importlib.resources.files(CONFIG_PACKAGE).iterdir():
        if not group.is_dir() or group.name.startswith(("_", ".")):
            continue
        for file in group.iterdir():
            name = file.name
            if name.endswith(".py") and not name.startswith("_"):
                if "def get_config(" in file.read_text():
                    names.append(f"{group.name}/{name.removesuffix('.py')}")
    return sorted(names)


def resolve_config(spec: str) -> str:
    """A config flag's value as `path[:variants]`: an existing file, or a shipped config.

    Args:
        spec: `path[:variants]`, or `name[:variants]` with `name` one of `shipped_configs()`
            (a leading `configs/` and a trailing `.py` are accepted).

    Raises:
        ValueError: when `spec` is neither a file nor a shipped config; lists the names.
    """
    path, sep, variants = spec.partition(":")
    if os.path.isfile(path):
        return spec
    name = path.removeprefix("configs/").removesuffix(".py")
    names = shipped_configs()
    if name not in names:
        raise ValueError(
            f"{path!r} is neither a config file nor a shipped config; the shipped ones are "
            + ", ".join(names)
        )
    group, file = name.split("/")
    found = importlib.resources.files(CONFIG_PACKAGE).joinpath(group, f"{file}.py")
    return f"{found}{sep}{variants}"


def _resolve_args(args: list[str]) -> list[str]:
    """`--config=name` and `--config name` (and `--problem`) with names resolved to files."""
    out = []
    for i, arg in enumerate(args):
        name, eq, value = arg.lstrip("-").partition("=")
        previous = args[i - 1].lstrip("-") if i else ""
        if arg.startswith("-") and eq and name in CONFIG_FLAGS:
            arg = f"--{name}={resolve_config(value)}"
        elif previous in CONFIG_FLAGS and args[i - 1].startswith("-") and "=" not in previous:
            arg = resolve_config(arg)
        out.append(arg)
    return out


def _config_given(args: list[str]) -> bool:
    return any(a.lstrip("-").split("=")[0] == "config" and a.startswith("-") for a in args)


def _workdir_config_arg(argv: list[str]) -> list[str]:
    """`--config=<the workdir's config.json>` when `--config` is absent, read from `--workdir`."""
    try:
        flags.FLAGS(argv, known_only=True)
        workdir = flags.FLAGS.workdir
    except flags.Error:  # reported by the full parse that follows
        workdir = None
    finally:
        flags.FLAGS.unparse_flags()
    return [f"--config={_WORKDIR_CONFIG}:{workdir}"] if workdir else []


def _exit_with(error: BaseException) -> None:
    """Exits 1 with absl's one-line message (unwrapping ml_collections' nested errors)."""
    message = error  # a misspelt key: AttributeError(KeyError("'key'\nDid you mean ..."))
    while isinstance(message, BaseException) and len(message.args) == 1:
        message = message.args[0]
    text = str(message).replace("\n", " ")
    sys.stderr.write(f"FATAL Flags parsing error: {text}\n")
    sys.exit(1)


# A frame of a formatted traceback: `File "path", line N, in name` and its source line.
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in [^\n]*\n[ \t]*([^\n]*)')


def _config_paths(args: list[str]) -> set[str]:
    """The absolute paths of the config files named by `--config`/`--problem` in `args`."""
    paths = set()
    for i, arg in enumerate(args):
        name, eq, value = arg.lstrip("-").partition("=")
        previous = args[i - 1] if i else ""
        if arg.startswith("-") and eq and name in CONFIG_FLAGS:
            paths.add(os.path.abspath(value.partition(":")[0]))
        elif previous.startswith("-") and previous.lstrip("-") in CONFIG_FLAGS:
            paths.add(os.path.abspath(arg.partition(":")[0]))
    return paths


def config_file_error(error: BaseException, config_paths: set[str]) -> str | None:
    """One line for an error raised inside a config file while it loads (a NameError, a bad
    variant, a syntax error): the file, the line, its code and the error. None when no frame
    of the error is in one of `config_paths` (e.g. a misspelt `--config.x` override).

    ml_collections re-raises a config file's ValueError and TypeError (absl wraps them in a
    flags error) with the formatted traceback as the message; other errors arrive as raised.
    """
    if isinstance(error, SyntaxError) and error.filename:
        if os.path.abspath(error.filename) in config_paths:
            code = (error.text or "").strip()
            return f"{error.filename}, line {error.lineno} (`{code}`): SyntaxError: {error.msg}"
    text = (
        str(error) if isinstance(error, flags.Error) else "".join(traceback.format_exception(error))
    )
    frames = [m for m in _FRAME.finditer(text) if os.path.abspath(m.group(1)) in config_paths]
    if not frames:
        return None
    path, line, code = frames[-1].groups()
    last = [row.strip() for row in text.strip().splitlines() if row.strip()][-1]
    return f"{path}, line {line} (`{code.strip()}`): {last}"


def parse_flags(argv: list[str], config_from_workdir: bool = False) -> list[str]:
    """absl's flag parsing with shipped config names resolved (an unknown name exits 1).

    Args:
        argv: the command line, program name first.
        config_from_workdir: when `--config` is not given, use the config saved in
            `--workdir` (`workdir_config.py`), so `--config.eval.x=y` overrides it.
    """
    try:
        args = _resolve_args(argv[1:])
    except ValueError as e:
        _exit_with(e)
    if config_from_workdir and not _config_given(args):
        args = _workdir_config_arg([argv[0], *args]) + args
    try:
        return flags.FLAGS([argv[0], *args])
    except Exception as e:  # a config file may raise anything: one line for each
        line = config_file_error(e, _config_paths(args))
        if line is not None:
            sys.stderr.write(f"FATAL error in the config file: {line}\nFix it and rerun.\n")
            sys.exit(1)
        if isinstance(e, (AttributeError, KeyError, OSError)):  # a misspelt override
            _exit_with(e)
        if isinstance(e, flags.Error):  # as `app.parse_flags_with_usage` reports it
            sys.stderr.write(f"FATAL Flags parsing error: {e}\n")
            sys.stderr.write("Pass --helpshort or --helpfull to see help on flags.\n")
            sys.exit(1)
        raise


def start() -> None:
    """The first call of every `main`: readable logs, then `jax.distributed` on many hosts."""
    setup_logging()
    parallel.initialize_distributed()


def stop_on_preemption(main):
    """`main` with SIGTERM handled (`training.preemption`): a preempted run exits with status
    `preemption.EXIT_STATUS` (75) and "preempted, rerun to resume" instead of a traceback."""

    @functools.wraps(main)
    def preemptible_main(argv):
        with preemption.handle_sigterm():
            try:
                return main(argv)
            except preemption.Preempted as e:
                sys.stderr.write(f"preempted, rerun to resume: SIGTERM {e.where}\n")
                sys.exit(preemption.EXIT_STATUS)

    return preemptible_main


# Errors whose message is the whole story (what is wrong, what to do): one line, exit 1.
USER_ERRORS = (
    validation.ConfigError,
    finite_guard.NonFiniteError,
    workdir_lock.WorkdirLockedError,
)


def report_user_errors(main):
    """`main` with `USER_ERRORS` printed as one `FATAL` line (exit 1), not a traceback."""

    @functools.wraps(main)
    def reporting_main(argv):
        try:
            return main(argv)
        except USER_ERRORS as e:
            text = str(e).replace("\n", " ")
            sys.stderr.write(f"FATAL {type(e).__name__}: {text}\n")
            sys.exit(1)

    return reporting_main


def run(main, config_from_workdir: bool = False) -> None:
    """Runs an absl `main` with this module's flag parsing (a launcher's console script).

    A SIGTERM (a preemption) saves what is in flight and exits with status 75
    (`preemption.EXIT_STATUS`, EX_TEMPFAIL) and "preempted, rerun to resume".
    """
    app.run(
        stop_on_preemption(report_user_errors(main)),
        flags_parser=functools.partial(parse_flags, config_from_workdir=config_from_workdir),
    )
