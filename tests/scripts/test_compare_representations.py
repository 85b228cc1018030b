"""`scripts/study_tables.py` and `scripts/study_rows.py` (of compare_representations.py): the
spreads and paired differences of the results page from cached study records, and the rows'
configs."""

import json

import numpy as np
from conftest import load_script

from diffssl_jax.evaluation.calibration import mean_interval


def _record(root, row, seed, per_class, seg):
    study = root / "digits" / f"{row}_s{seed}" / "study"
    study.mkdir(parents=True)
    probe = {"per_class": {"per_class_values": per_class}, "all": {"all": 0.9}}
    values = {"miou": {"values": seg}, "dice": {"values": seg}}
    (study / "test.json").write_text(json.dumps({"probe": probe, "segmentation": {"20": values}}))
    choice = {"chosen": {"block": "dec_2", "t": 0.0, "grid": 4}}
    (study / "probe_choice.json").write_text(json.dumps(choice))


def test_digits_table_spreads_and_paired_differences(tmp_path):
    tables = load_script("study_tables")
    _record(tmp_path, "mdm", 0, [0.80, 0.90], [0.3, 0.5])
    _record(tmp_path, "mdm", 1, [0.84, 0.94], [0.4, 0.6])
    _record(tmp_path, "ddpm", 0, [0.70, 0.75], [0.2, 0.2])
    rows = {"mdm": ("A", "x", ()), "ddpm": ("B", "y", ())}
    text = "\n".join(tables.digits_tables(str(tmp_path), rows, {}))
    # Row a: network means 85 and 89 -> 87.0, std over networks 2.0, mean subset std 5.0.
    assert "| A | 2 | probe dec_2, t=0, 4x4 | 90.0 (±0.0 pre) | 87.0 (±2.0 pre, ±5.0 sub) |" in text
    # A - B paired by network index and subset: only seed 0 of A pairs with B's one network.
    probe = mean_interval([100 * (0.80 - 0.70), 100 * (0.90 - 0.75)])
    seg = mean_interval([100 * (0.3 - 0.2), 100 * (0.5 - 0.2)])
    expected = f"| MDM > DDPM (MDM paper) | A - B | {probe[0]:+.1f} ± {probe[1]:.1f} | "
    assert expected + f"{seg[0]:+.1f} ± {seg[1]:.1f} |" in text
    assert np.isclose(probe[0], 12.5)


def test_rows_pretrain_for_the_stated_budget_with_their_seed():
    script = load_script("study_rows")
    for task, rows in script.ROWS.items():
        for row in rows:
            config = script.row_config(task, row, seed=1)
            assert (config.train.num_steps, config.seed) == (script.STEPS[task], 1)
            assert config.train.batch_size == 64
            assert config.data.name == ("canvases" if task == "canvases" else "digits")
    single = script.row_config("roadmap", "single", seed=0)
    assert single.corruption.noise_levels == "single"
