"""`scripts/compare_posterior.py`: which cached rows make the page (the setting chosen on
validation images), its method and grid entries (configs of
`evaluation.posterior.run_problem`), its splits, and no sampler of its own."""

import os

import numpy as np
import pytest
from conftest import REPO_ROOT, load_script


def _metrics(psnr, num_images=16, finite=True):
    return {"sample_psnr": psnr, "all_finite": finite, "num_images": num_images}


def test_collect_keeps_the_rows_of_the_setting_chosen_on_validation():
    script = load_script("compare_posterior")
    cache = {
        "tune/patches_box/dps/zeta=1.0/100/16": _metrics(12.0),
        "tune/patches_box/dps/zeta=10.0/100/16": _metrics(20.0),
        "tune/patches_box/dps/zeta=1.0/10/16": _metrics(30.0, finite=False),
        "tune/patches_box/dps/zeta=10.0/10/16": _metrics(3.0),
        "tune/patches_box/dps/zeta=0.1/10/16": _metrics(99.0),  # not on the grid any more
        "patches_box/dps/100/32x2/zeta=1.0": _metrics(50.0, 32),  # not the chosen setting
        "patches_box/dps/100/32x2/zeta=10.0": _metrics(21.0, 32),
        "patches_box/dps/100/8x2/zeta=10.0": _metrics(25.0, 8),  # fewer images
        "patches_box/dps/10/32x2/zeta=10.0": _metrics(4.0, 32),
        "patches_box/dps/1000/8x2/zeta=10.0": _metrics(9.0, 8),  # never chosen at 1000 steps
    }
    results, choices = script.collect(cache, {"dps": script._grid("zeta", (1.0, 10.0))})
    assert choices[("patches_box", "dps", 100)] == (
        "zeta=10.0",
        {"zeta=1.0": 12.0, "zeta=10.0": 20.0},
    )
    assert choices[("patches_box", "dps", 10)][0] == "zeta=10.0"  # a non-finite row never wins
    assert results[("patches_box", "dps", 100)]["sample_psnr"] == 21.0
    assert results[("patches_box", "dps", 100)]["size"] == "32x2"
    assert results[("patches_box", "dps", 10)]["sample_psnr"] == 4.0
    assert ("patches_box", "dps", 1000) not in results


def test_every_grid_setting_is_a_posterior_method_and_a_problem_config():
    from diffssl_jax import posterior
    from diffssl_jax.evaluation import posterior as posterior_eval

    script = load_script("compare_posterior")
    assert set(script.GRIDS) == set(script.METHODS)
    for name, (_, method, prior) in script.METHODS.items():
        assert prior in ("trained", "gaussian")
        for options in script.GRIDS[name]:
            posterior.posterior_method(method, **options)  # raises on an unknown option
            c = script.problem_config("mri4_phantoms", name, 10, (2, 4, 3), options)
            assert c.num_samples == 3 and c.sampling.num_steps == 10
            assert (c.data.num_images, c.data.start) == (2, 4)
            record = posterior_eval.method_record(c.method)
            assert record["name"] == method and options.items() <= record.items()
    assert len({script.canonical(o) for o in script.GRIDS["mmps"]}) == len(script.GRIDS["mmps"])


@pytest.mark.parametrize("task", ["patches_box", "patches_pixels", "patches_superres"])
def test_patch_tasks_choose_on_validation_photographs_and_report_on_test_ones(task):
    script = load_script("compare_posterior")
    test = script.problem_config(task, "mmps", 10, (32, 0, 2), {})
    validation = script.problem_config(task, "mmps", 10, (16, 0, 1), {}, validation=True)
    assert (test.data.split, validation.data.split) == ("test", "validation")
    assert test.operator.kind == validation.operator.kind == task.split("_")[1]
    settings = script._settings(type("F", (), {"quick": False, "steps": ["10"], "num_images": 32,
        "num_images_long": 8, "num_validation": 16, "num_samples": 2})())  # fmt: skip
    assert settings["validation"][task] == (16, 0)
    assert settings["validation"]["mri4_phantoms"] == (16, 32)  # after every test image


def test_the_script_defines_no_sampler_of_its_own():
    with open(os.path.join(REPO_ROOT, "scripts", "compare_posterior.py")) as f:
        source = f.read()
    assert "evaluation.posterior" in source and "run_problem(" in source
    for name in ("samplers.", "sample_posterior", "ddpm_ancestral(", "jax.jit", "vmap("):
        assert name not in source, name
    assert np.isfinite(load_script("compare_posterior").calibration.expected_coverage(2))


def test_settings_are_named_for_the_page():
    script = load_script("compare_posterior")
    names = [script.describe(o) for o in script.GRIDS["mmps"]]
    assert names == [
        "CG 1, residual cap 10",
        "CG 1, symmetrised J, trust region 3",
        "CG 3, residual cap 10",
        "CG 3, symmetrised J, trust region 3",
    ]
    assert script.describe({"zeta": 1.0}) == "zeta=1.0"
