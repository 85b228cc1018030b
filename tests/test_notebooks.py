"""The notebooks: each runs top to bottom from the installed package, and installs it in Colab.

The install cell is executed here as Colab would run it (``google.colab`` imported), with
``subprocess.run`` recorded instead of calling pip.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import types

import nbformat
import pytest
from conftest import REPO_ROOT
from nbclient import NotebookClient

NOTEBOOKS = sorted(glob.glob(os.path.join(REPO_ROOT, "notebooks", "*.ipynb")))
SOURCE_LINE = re.compile(r'^DIFFSSL_JAX_SOURCE = "([^"]*)"$', re.MULTILINE)
COLAB = "https://colab.research.google.com"


def _cells(path, kind):
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == kind]


def _install_cell(path, source=None):
    cell = _cells(path, "code")[0]
    assert len(SOURCE_LINE.findall(cell)) == 1, "one DIFFSSL_JAX_SOURCE assignment"
    if source is not None:
        cell = SOURCE_LINE.sub(f'DIFFSSL_JAX_SOURCE = "{source}"', cell)
    return cell


def _run_cell(code):
    exec(compile(code, "install_cell", "exec"), {"__name__": "__main__"})


class _Pip:
    """Records ``subprocess.run`` calls; optionally fails or changes installed versions."""

    def __init__(self, fail_with=None, versions=None, after=None):
        self.calls, self.fail_with, self.versions, self.after = [], fail_with, versions, after

    def __call__(self, args, **kwargs):
        self.calls.append((args, kwargs))
        if self.fail_with is not None:
            raise subprocess.CalledProcessError(1, args, output="", stderr=self.fail_with)
        if self.after is not None:
            self.versions.update(self.after)
        return subprocess.CompletedProcess(args, 0, "", "")


@pytest.fixture
def colab(monkeypatch):
    """Runs like a Colab kernel on a CPU runtime: ``google.colab`` imported, no nvidia-smi."""
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    pip = _Pip()
    monkeypatch.setattr(subprocess, "run", pip)
    return pip


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_opens_with_its_colab_badge(path):
    name = os.path.basename(path)
    first = nbformat.read(path, as_version=4).cells[0]
    assert first.cell_type == "markdown"
    assert f"({COLAB}/assets/colab-badge.svg)" in first.source
    assert f"({COLAB}/github/OWNER/diffssl_jax/blob/main/notebooks/{name})" in first.source
    assert "`OWNER`" in first.source and "DIFFSSL_JAX_SOURCE" in first.source


def test_every_notebook_has_the_same_install_cell_first():
    cells = {os.path.basename(p): _install_cell(p) for p in NOTEBOOKS}
    assert len(cells) == 5 and len(set(cells.values())) == 1, sorted(cells)
    (cell,) = set(cells.values())
    assert SOURCE_LINE.search(cell).group(1) == "git+https://github.com/OWNER/diffssl_jax"
    assert "check=True" in cell and '"google.colab" in sys.modules' in cell


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_needs_no_checkout(path):
    code = "\n".join(_cells(path, "code"))
    for banned in ("sys.path", "os.chdir", "os.system", "from configs", "configs/", "setup.cfg"):
        assert banned not in code, f"{os.path.basename(path)} uses {banned!r}"
    assert "from diffssl_jax" in code


def test_install_cell_in_colab_refuses_the_placeholder(colab):
    with pytest.raises(ValueError, match="Set DIFFSSL_JAX_SOURCE"):
        _run_cell(_install_cell(NOTEBOOKS[0]))
    assert colab.calls == []


def test_install_cell_in_colab_pip_installs_the_source_with_check(colab):
    _run_cell(_install_cell(NOTEBOOKS[0], "git+https://github.com/someone/diffssl_jax"))
    ((args, kwargs),) = colab.calls
    requirement = "diffssl_jax @ git+https://github.com/someone/diffssl_jax"
    assert args == [sys.executable, "-m", "pip", "install", "-q", requirement]
    assert kwargs["check"] is True and kwargs["env"]["GIT_TERMINAL_PROMPT"] == "0"
    assert not any("lock" in a or a in ("-c", "-r") for a in args), "ranges, not the lock file"


def test_install_cell_on_a_gpu_runtime_adds_the_cuda12_extra(colab, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    _run_cell(_install_cell(NOTEBOOKS[0], "git+https://github.com/someone/diffssl_jax"))
    assert (
        colab.calls[0][0][-1] == "diffssl_jax[cuda12] @ git+https://github.com/someone/diffssl_jax"
    )


def test_install_cell_turns_a_wheel_path_into_a_file_url(colab, tmp_path):
    wheel = tmp_path / "diffssl_jax-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    _run_cell(_install_cell(NOTEBOOKS[0], str(wheel)))
    assert colab.calls[0][0][-1] == f"diffssl_jax @ {wheel.as_uri()}"


def test_install_cell_fails_loudly_with_pips_error(monkeypatch, colab):
    monkeypatch.setattr(subprocess, "run", _Pip(fail_with="ERROR: Repository not found."))
    code = _install_cell(NOTEBOOKS[0], "git+https://github.com/nobody/diffssl_jax")
    with pytest.raises(RuntimeError, match=r"check DIFFSSL_JAX_SOURCE(.|\n)*Repository not found"):
        _run_cell(code)


def test_install_cell_asks_for_a_restart_when_pip_replaced_an_imported_package(monkeypatch, colab):
    import importlib.metadata

    versions = {"jax": "0.12.0.1", "jaxlib": "0.12.0.1", "numpy": "2.0.0", "scipy": "1.18.1"}
    monkeypatch.setattr(importlib.metadata, "version", lambda name: versions[name])
    monkeypatch.setattr(subprocess, "run", _Pip(versions=versions, after={"numpy": "2.5.5"}))
    code = _install_cell(NOTEBOOKS[0], "git+https://github.com/someone/diffssl_jax")
    with pytest.raises(RuntimeError, match=r"pip replaced \['numpy'\].*restart"):
        _run_cell(code)


def test_install_cell_outside_colab_only_checks_the_package(monkeypatch, capsys):
    pip = _Pip()
    monkeypatch.setattr(subprocess, "run", pip)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    _run_cell(_install_cell(NOTEBOOKS[0]))
    assert pip.calls == [] and "diffssl_jax 0." in capsys.readouterr().out


def test_install_cell_outside_colab_says_how_to_install(monkeypatch):
    import importlib.util

    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install -e ."):
        _run_cell(_install_cell(NOTEBOOKS[0]))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_executes(path, monkeypatch, tmp_path):
    """Runs in an empty directory with no PYTHONPATH: only the installed package is seen."""
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
    monkeypatch.delenv("PYTHONPATH", raising=False)
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    assert os.listdir(tmp_path) == [], "notebooks write their workdirs in a temporary directory"
