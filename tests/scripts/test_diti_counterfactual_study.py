"""`scripts/diti_counterfactual_study.py`: its tables' numbers, and on a tiny DiTi run (tiny
DDPM prior trained here) that every checkpoint is checked, results are cached in the workdir
and a rerun recomputes nothing."""

import os

import numpy as np
import pytest
from conftest import load_script, train_tiny_diti

from diffssl_jax.evaluation import counterfactuals as cf
from diffssl_jax.evaluation.calibration import mean_interval


def test_reconstruction_table_gives_the_paired_difference_interval():
    script = load_script("diti_counterfactual_study")
    guided, prior = [20.0, 22.0, 27.0], [19.0, 21.0, 20.0]
    table = script.reconstruction_table([("s0", {"step": 300, "guided": guided, "prior": prior})])
    mean, half = mean_interval(np.subtract(guided, prior))  # t(0.975, 2) = 4.303, s = sqrt(12)
    assert mean == 3.0 and half == pytest.approx(4.303 * np.sqrt(12.0 / 3.0), rel=1e-3)
    row = table.splitlines()[-1].split(" | ")
    assert row[1:3] == ["300", "3"] and row[3] == "23.00 ± 8.96" and row[4] == "20.00 ± 2.48"
    assert row[5] == f"{mean:.2f} ± {half:.2f} |"


def _info(ink, slant):
    fractions = {"early": {"ink_mass": [0.0, ink], "slant": [0.0, slant], "width": [0.0, 0.0],
                           "p_class": [0.0, 1.0]}}  # fmt: skip
    return {
        "alphas": [0.0, 1.0],
        "groups": {"early": [0, 34]},
        "transfer": {"fractions": fractions},
    }


def test_transfer_table_is_mean_and_sample_std_over_runs_then_per_run():
    script = load_script("diti_counterfactual_study")
    table = script.transfer_tables([("s0", _info(0.1, 0.5)), ("s1", _info(0.3, 0.5))])
    lines = table.splitlines()
    assert lines[0] == "f at weight 1, mean ± std over 2 runs"
    # ink: mean 0.2, sample std |0.3 - 0.1| / sqrt(2) = 0.14; slant 0.5 ± 0
    assert (
        lines[4] == "| early | 0–34 (35) | 0.20 ± 0.14 | 0.50 ± 0.00 | 0.00 ± 0.00 | 1.00 ± 0.00 |"
    )
    assert lines[-2:] == ["| early | s0 | 0.10 | 0.50 | 0.00 | 1.00 |",
                          "| early | s1 | 0.30 | 0.50 | 0.00 | 1.00 |"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_diti(tmp_path_factory):
    return train_tiny_diti(str(tmp_path_factory.mktemp("study")), 4)  # checkpoints at 2 and 4


@pytest.mark.slow
def test_study_checks_every_checkpoint_and_caches_in_the_workdir(tiny_diti, monkeypatch):
    script = load_script("diti_counterfactual_study")
    assert script.checkpoint_steps(tiny_diti) == [2, 4]
    first = {s: script.reconstruction(tiny_diti, s, 3, 4) for s in (2, 4)}
    for step, r in first.items():
        assert r["step"] == step and len(r["guided"]) == len(r["prior"]) == 3
        assert np.all(np.isfinite(r["guided"])) and np.all(np.isfinite(r["prior"]))
    # G differs between the checkpoints, the frozen prior's round trip does not
    np.testing.assert_allclose(first[2]["prior"], first[4]["prior"], rtol=1e-6)
    info = script.transfer(tiny_diti, 2, 4)
    assert info["step"] == 4 and info["x_T"] == "slerp" and info["transfer"]["num_pairs"] == 2
    assert set(info["transfer"]["fractions"]) == {"early", "late", "all"}
    assert os.path.exists(os.path.join(tiny_diti, "eval", "study_transfer_step4_2x4.json"))

    # A control swapping the workdir's own groups, given explicitly, measures the same
    control = script.transfer(tiny_diti, 2, 4, dims_of=tiny_diti)
    assert control["transfer"] == info["transfer"] and control["groups"] == info["groups"]

    def fail(*args, **kwargs):
        raise AssertionError("a cached result was recomputed")

    monkeypatch.setattr(cf, "reconstruction_psnrs", fail)
    monkeypatch.setattr(cf, "evaluate_workdir_counterfactuals", fail)
    assert script.reconstruction(tiny_diti, 4, 3, 4) == first[4]
    assert script.transfer(tiny_diti, 2, 4) == info
    figure = script.draw_reconstructions(tiny_diti, str(tiny_diti) + "/r.png", 4, num_images=3)
    assert os.path.getsize(figure) > 0
    table = script.transfer_tables([("s0", info)])
    assert "| all | 0–63 (64) |" in table and "nan" in table  # one run: no std
