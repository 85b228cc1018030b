"""The built wheel, installed in a fresh venv outside the repository, trains and samples.

The wheel is built from a copy of the packaged files (no build artefacts in the checkout)
and installed with `--no-deps`; the dependencies already in the test environment are made
visible to the fresh venv by a `.pth` line naming its site-packages (a plain path line, so
the checkout's editable finder there is not loaded and `diffssl_jax` comes from the wheel).
"""

import os
import shutil
import site
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from conftest import REPO_ROOT

PACKAGED = ("diffssl_jax", "configs", "launch", "setup.cfg", "pyproject.toml", "README.md")
OPTIONAL = ("LICENSE", "CHANGELOG.md")
ENV = {
    **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
    "JAX_PLATFORMS": "cpu",
    "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
}


def _check(args, cwd, timeout=300):
    result = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    source = tmp_path_factory.mktemp("source")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "tpu_vm.sh")
    for name in PACKAGED + tuple(n for n in OPTIONAL if os.path.exists(f"{REPO_ROOT}/{n}")):
        src, dst = os.path.join(REPO_ROOT, name), source / name
        shutil.copytree(src, dst, ignore=ignore) if os.path.isdir(src) else shutil.copy(src, dst)
    out = tmp_path_factory.mktemp("dist")
    _check([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
           cwd=out)  # fmt: skip
    (path,) = out.glob("diffssl_jax-*.whl")
    return path


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    root = tmp_path_factory.mktemp("fresh") / "venv"
    _check([sys.executable, "-m", "venv", "--without-pip", str(root)], cwd=root.parent)
    python = root / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps"]
    _check([*pip, str(wheel)], cwd=root.parent)
    purelib = _check([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     cwd=root.parent).stdout.strip()  # fmt: skip
    with open(os.path.join(purelib, "test_environment.pth"), "w") as f:
        f.write("\n".join(site.getsitepackages()) + "\n")
    return root


@pytest.mark.slow
def test_wheel_ships_launchers_and_configs_inside_the_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert "launch" not in tops and "configs" not in tops
    for folder, prefix in (("diffssl_jax", "diffssl_jax"), ("configs", "diffssl_jax/configs"),
                           ("launch", "diffssl_jax/launch")):  # fmt: skip
        for dirpath, _, files in os.walk(os.path.join(REPO_ROOT, folder)):
            rel = os.path.relpath(dirpath, os.path.join(REPO_ROOT, folder))
            for file in files:
                if file.endswith(".py"):
                    assert os.path.normpath(f"{prefix}/{rel}/{file}") in names, (folder, rel, file)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    for script in ("train", "sample", "em", "evaluate", "pipeline"):
        assert f"diffssl-{script} = diffssl_jax.launch.{script}:run" in text


@pytest.mark.slow
def test_console_scripts_train_and_sample_posteriors_from_shipped_configs(venv, tmp_path):
    bin_dir = venv / "bin"
    code = "import diffssl_jax.configs as c; print(c.__file__)"
    where = _check([str(bin_dir / "python"), "-c", code], cwd=tmp_path).stdout
    assert where.startswith(str(venv)) and "site-packages/diffssl_jax/configs" in where
    workdir = tmp_path / "ddpm"
    _check([str(bin_dir / "diffssl-train"), "--config=ddpm/digits:tiny", f"--workdir={workdir}",
            "--config.train.num_steps=2", "--config.train.sample_every_steps=0"],
           cwd=tmp_path)  # fmt: skip
    assert (workdir / "checkpoints" / "2").is_dir() and (workdir / "config.json").exists()
    result = _check([str(bin_dir / "diffssl-sample"), f"--workdir={workdir}",
                     "--problem=posterior/digits_inpaint:tiny",
                     "--problem.method.mmps.cg_maxiter=2"],
                    cwd=tmp_path)  # fmt: skip
    samples = np.load(workdir / "eval" / "posterior_digits_inpaint.npz")["samples"]
    assert samples.shape == (2, 2, 16, 16, 1) and np.isfinite(samples).all()
    assert (workdir / "figures" / "posterior_digits_inpaint.png").exists()
    assert "posterior mean PSNR" in result.stdout
