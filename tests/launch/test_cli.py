"""`launch/cli.py`: shipped configs by name, flag rewriting, the workdir's config, packaging."""

import configparser
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from diffssl_jax.launch import cli, workdir_config


def test_shipped_configs_are_the_files_with_get_config():
    names = cli.shipped_configs()
    assert {"ddpm/digits", "mdm/digits", "em/toy", "posterior/digits_inpaint"} <= set(names)
    assert not {"base", "em/defaults", "posterior/common", "diti/__init__"} & set(names)
    assert names == sorted(names)


def test_a_name_resolves_to_the_packaged_file_with_its_variants(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no checkout here: names and checkout paths both resolve
    for spec in ("ddpm/digits:tiny", "configs/ddpm/digits.py:tiny"):
        path, variants = cli.resolve_config(spec).split(":")
        assert variants == "tiny"
        assert os.path.samefile(path, os.path.join(REPO_ROOT, "configs", "ddpm", "digits.py"))
    toy = os.path.join(REPO_ROOT, "configs", "em", "toy.py")
    assert os.path.samefile(cli.resolve_config("em/toy"), toy)


def test_an_existing_file_is_kept_and_an_unknown_name_lists_the_shipped_ones(tmp_path):
    own = tmp_path / "mine.py"
    own.write_text("def get_config(arg=None):\n    return {}\n")
    assert cli.resolve_config(f"{own}:x,y") == f"{own}:x,y"
    shipped = r"'ddpm/digitz' is neither .* ddpm/digits, ddpm/patches, ddpm/phantoms"
    with pytest.raises(ValueError, match=shipped):
        cli.resolve_config("ddpm/digitz:tiny")


def test_config_and_problem_flags_are_rewritten_in_both_spellings():
    args = cli._resolve_args(
        ["--config=ddpm/digits:tiny", "--config.train.num_steps=3", "--problem",
         "posterior/digits_inpaint", "--workdir=ddpm/digits"]
    )  # fmt: skip
    assert args[0].startswith("--config=") and args[0].endswith("configs/ddpm/digits.py:tiny")
    assert args[1] == "--config.train.num_steps=3" and args[2] == "--problem"
    assert args[3].endswith("configs/posterior/digits_inpaint.py")
    assert args[4] == "--workdir=ddpm/digits"  # other flags are left alone


def test_the_workdir_config_restores_tuples_so_they_stay_overridable(tmp_path):
    saved = {"eval": {"feature_blocks": ["dec_2", "dec_3"], "probe_budgets": [0, 10]}, "seed": 1}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config = workdir_config.get_config(str(tmp_path))
    assert config.eval.feature_blocks == ("dec_2", "dec_3") and config.eval.probe_budgets == (0, 10)
    assert config.seed == 1


def test_launcher_rejects_an_unknown_config_name_and_a_misspelt_override(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    for flag, message in (
        ("--config=ddpm/nope", "'ddpm/nope' is neither a config file nor a shipped config"),
        ("--config.train.num_stepz=2", 'Did you mean "num_steps"'),
    ):
        flags = ["--config=ddpm/digits:tiny", f"--workdir={tmp_path}"]
        flags = [flag, f"--workdir={tmp_path}"] if flag.startswith("--config=") else [*flags, flag]
        result = subprocess.run(
            [sys.executable, "-m", "launch.train", *flags],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 1 and message in result.stderr, result.stderr[-2000:]
        assert not os.listdir(tmp_path)


def test_setup_cfg_packages_every_package_of_the_tree():
    """setup.cfg lists packages explicitly (configs/ and launch/ are mapped into diffssl_jax)."""
    setup = configparser.ConfigParser()
    setup.read(os.path.join(REPO_ROOT, "setup.cfg"))
    listed = set(setup["options"]["packages"].split())
    found = set()
    for folder, prefix in (("diffssl_jax", "diffssl_jax"), ("configs", "diffssl_jax.configs"),
                           ("launch", "diffssl_jax.launch")):  # fmt: skip
        for dirpath, _, files in os.walk(os.path.join(REPO_ROOT, folder)):
            if "__init__.py" in files:
                rel = os.path.relpath(dirpath, os.path.join(REPO_ROOT, folder))
                found.add(prefix if rel == "." else f"{prefix}.{rel.replace(os.sep, '.')}")
    assert listed == found
