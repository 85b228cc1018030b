"""Readable logs: library INFO chatter filtered, our lines kept, live bars only on terminals."""

import io
import logging as py_logging
import os
import subprocess
import sys
import textwrap

from absl import logging

from diffssl_jax.training import logs

SITE = os.path.join(os.sep, "venv", "lib", "python3.12", "site-packages")


def _record(pathname, level=py_logging.INFO):
    return py_logging.LogRecord("absl", level, pathname, 1, "msg", None, None)


def test_filter_drops_only_library_info():
    keep = logs.LibraryInfoFilter()
    assert not keep.filter(_record(os.path.join(SITE, "orbax", "checkpoint", "x.py")))
    assert not keep.filter(_record(os.path.join(SITE, "grain", "y.py"), py_logging.DEBUG))
    assert keep.filter(_record(os.path.join(SITE, "orbax", "x.py"), py_logging.WARNING))
    assert keep.filter(_record(os.path.join(logs._PACKAGE_DIR, "training", "loop.py")))
    assert keep.filter(_record("/home/me/my_experiment.py"))  # user code
    assert keep.filter(_record("<ipython-input-3>"))


# A fake third-party package (under a site-packages directory) and our own logger, in an
# absl app that calls setup_logging() like the launchers do.
APP = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from absl import app, logging
    from diffssl_jax.training import logs
    import chatty

    def main(argv):
        logs.setup_logging()
        logs.setup_logging()  # idempotent
        chatty.talk()
        logging.info("ours: info")

    app.run(main, argv=sys.argv[:1] + sys.argv[2:])
""")


def _run_app(tmp_path, *flags):
    lib = tmp_path / "site-packages"
    lib.mkdir(exist_ok=True)
    (lib / "chatty.py").write_text(
        "from absl import logging\n"
        "def talk():\n"
        "    logging.info('chatty: info')\n"
        "    logging.warning('chatty: warning')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", APP, str(lib), *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_setup_logging_keeps_ours_and_library_warnings(tmp_path):
    out = _run_app(tmp_path)
    assert "ours: info" in out and "chatty: warning" in out
    assert "chatty: info" not in out


def test_explicit_verbosity_shows_every_library_line(tmp_path):
    out = _run_app(tmp_path, "--verbosity=0")
    assert "chatty: info" in out and "ours: info" in out
    assert "ours: info" not in _run_app(tmp_path, "--verbosity=-1")


def test_live_updates_only_on_terminals(tmp_path):
    assert not logs.shows_live_updates(io.StringIO())
    notebook_cell = type("OutStream", (io.StringIO,), {"__module__": "ipykernel.iostream"})
    assert logs.shows_live_updates(notebook_cell())  # Jupyter and Colab render '\r' live
    with open(tmp_path / "log.txt", "w") as f:
        assert not logs.shows_live_updates(f)
    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as tty:
        assert logs.shows_live_updates(tty)
    os.close(leader)


def test_suppress_absl_messages_is_narrow_and_scoped(caplog):
    caplog.set_level(py_logging.WARNING, logger="absl")
    with logs.suppress_absl_messages("Given directory is read only"):
        logging.warning("Given directory is read only=%s", "/x")
        logging.warning("another warning")
    logging.warning("Given directory is read only=%s", "/y")
    assert [r.getMessage() for r in caplog.records] == [
        "another warning",
        "Given directory is read only=/y",
    ]
