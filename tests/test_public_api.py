"""The top-level API: what ``diffssl_jax`` exports, that it loads lazily, and docs/api.md."""

import importlib
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, load_script

import diffssl_jax

NOTEBOOK_NAMES = (
    "load_params",
    "load_config",
    "load_features",
    "load_denoiser",
    "make_recipe",
    "train",
    "sigma_grid",
    "sample",
    "ddpm_ancestral",
    "ddim",
    "edm_heun",
    "euler_maruyama",
    "GaussianDenoiser",
    "mmps",
    "dps",
    "pigdm",
    "tmpd",
    "diffpir",
    "PixelMask",
    "BoxDownsample",
    "UndersampledFourier",
    "InverseProblem",
    "posterior_method",
    "sample_posterior",
)


def test_exports_what_a_notebook_needs():
    assert set(NOTEBOOK_NAMES) <= set(diffssl_jax.__all__)
    assert sorted(diffssl_jax.__all__) == diffssl_jax.__all__
    assert len(set(diffssl_jax.__all__)) == len(diffssl_jax.__all__)


@pytest.mark.parametrize("module", sorted(diffssl_jax.API))
def test_each_name_is_the_object_of_its_home_module(module):
    home = importlib.import_module(f"diffssl_jax.{module}")
    for name in diffssl_jax.API[module]:
        assert getattr(diffssl_jax, name) is getattr(home, name), name


def test_dir_lists_exports_submodules_and_version():
    listed = dir(diffssl_jax)
    assert set(diffssl_jax.__all__) <= set(listed)
    assert {"training", "posterior", "sampling", "__version__"} <= set(listed)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="load_parameters"):
        diffssl_jax.load_parameters  # noqa: B018


def test_version_is_the_installed_distributions():
    assert diffssl_jax.__version__ == importlib.metadata.version("diffssl_jax")


def test_import_is_light_and_names_load_on_first_use():
    code = (
        "import sys, json, diffssl_jax\n"
        "heavy = ['flax', 'orbax.checkpoint', 'matplotlib', 'optax', 'diffssl_jax.training']\n"
        "before = [m for m in heavy if m in sys.modules]\n"
        "diffssl_jax.sample_posterior\n"
        "print(json.dumps([before, 'diffssl_jax.posterior.sampling' in sys.modules,\n"
        "                  sys.modules['jax'].config.jax_threefry_partitionable]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO_ROOT
    ).stdout
    assert json.loads(out.splitlines()[-1]) == [[], True, True]


def test_load_denoiser_refuses_a_workdir_that_is_not_a_ddpm(tmp_path):
    from diffssl_jax.configs.mae.digits import get_config

    (tmp_path / "config.json").write_text(get_config("tiny").to_json())
    with pytest.raises(ValueError, match="Gaussian-denoiser prior.*'mae'"):
        diffssl_jax.load_denoiser(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        diffssl_jax.load_denoiser(str(tmp_path / "missing"))


def test_docs_api_md_is_current():
    with open(os.path.join(REPO_ROOT, "docs", "api.md")) as f:
        written = f.read()
    assert written == load_script("api_reference").render(), "run: python scripts/api_reference.py"


def test_docs_api_md_lists_every_export_with_its_signature():
    text = load_script("api_reference").render()
    for name in diffssl_jax.__all__:
        assert f"- `{name}(" in text, name
    assert "- `load_denoiser(workdir, which='ema', step=None)`: The denoiser " in text
