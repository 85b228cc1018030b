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
import sys

from absl import app, flags

from diffssl_jax.training import parallel
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
        return app.parse_flags_with_usage([argv[0], *args])
    except (AttributeError, KeyError, OSError) as e:  # a misspelt override, an unreadable config
        _exit_with(e)


def start() -> None:
    """The first call of every `main`: readable logs, then `jax.distributed` on many hosts."""
    setup_logging()
    parallel.initialize_distributed()


def run(main, config_from_workdir: bool = False) -> None:
    """Runs an absl `main` with this module's flag parsing (a launcher's console script)."""
    app.run(
        main, flags_parser=functools.partial(parse_flags, config_from_workdir=config_from_workdir)
    )
