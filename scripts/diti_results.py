r"""DiTi's digits table (docs/diti.md): attribute probes of DiTi, PDAE, DDPM, MDM features.

    nice -n 10 .venv/bin/python scripts/diti_results.py --diti=runs/study/diti/diti_s0,... \
        --pdae=runs/study/diti/pdae_s0,...

Rows: DiTi (k = 64, non-uniform, base) on all of z, on its early subsets (0-6: steps
0-109, 35 dims) and on its late subsets (32-63: steps 500-999, 50 dims); PDAE (k = 1) on
all of z and, as a control, on the same two dim ranges (which mean nothing there); the
DiTi encoder at its initialisation; DDPM and MDM pooled decoder features (the workdirs'
`config.eval`); raw pixels. Mean ± std over the DiTi/PDAE training seeds, and over
`--noise_seeds` feature-noise seeds for one DDPM / MDM network. Writes
`--out` (JSON) and prints the markdown table.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from diffssl_jax import load_config, recipe_inputs  # noqa: E402
from diffssl_jax.data import DigitsSource  # noqa: E402
from diffssl_jax.evaluation import attributes, digit_tasks  # noqa: E402
from diffssl_jax.evaluation.features import (  # noqa: E402
    load_features,
    random_init_features,
    raw_pixel_features,
)

flags.DEFINE_list("diti", [], "DiTi workdirs (one per seed).")
flags.DEFINE_list("pdae", [], "PDAE (k = 1) workdirs (one per seed).")
flags.DEFINE_string("ddpm", "runs/study/digits/ddpm_s0", "DDPM workdir (equal-budget study).")
flags.DEFINE_string("mdm", "runs/study/digits/mdm_s0", "MDM workdir (equal-budget study).")
flags.DEFINE_integer("noise_seeds", 3, "Feature-noise seeds for DDPM and MDM.")
flags.DEFINE_string("out", "runs/study/diti/attributes.json", "Results JSON.")

COLUMNS = ("class_accuracy", "class_map", "ink_mass", "slant", "width", "height", "mean_mse")
HEADER = "| features | dims | class acc | class mAP | r ink | r slant | r width | r height | MSE |"


def _flat(s: dict) -> dict:
    return {"class_accuracy": s["class_accuracy"], "class_map": s["class_map"], **s["r"],
            "mean_mse": s["mean_mse"], "num_dims": s["num_dims"]}  # fmt: skip


def _scores(extractor, data, groups) -> dict:
    (train, test), (train_attrs, test_attrs) = data
    pooled = extractor.replace(pooled=True)
    x_train, x_test = pooled(train.images), pooled(test.images)
    out = attributes.scores_by_dims(x_train, train_attrs, x_test, test_attrs, groups)
    return {name: _flat(s) for name, s in out.items()}


def _row(name: str, runs: list[dict]) -> str:
    cells = [name, str(runs[0]["num_dims"])]
    for col in COLUMNS:
        values = [r[col] for r in runs]
        cells.append(f"{np.mean(values):.3f} ± {np.std(values):.3f}")
    return "| " + " | ".join(cells) + " |"


def main(argv):
    del argv
    logging.set_verbosity(logging.ERROR)
    f = flags.FLAGS
    split = DigitsSource("train"), DigitsSource("test")
    data = split, tuple(digit_tasks.digit_attributes(s.images, s.labels) for s in split)
    rows, results = [], {}

    def add(label, key, runs_by_group, group):
        runs = [r[group] for r in runs_by_group]
        results[key] = runs
        rows.append(_row(label, runs))

    if f.diti:
        config = load_config(f.diti[0])
        groups = attributes.feature_group_dims(recipe_inputs.load_recipe(f.diti[0]), config)
        diti = [_scores(load_features(w), data, groups) for w in f.diti]
        add("DiTi k=64, all of z", "diti_all", diti, "all")
        for g in groups:
            add(f"DiTi, {g} subsets {list(config.eval.subset_groups[g])}", f"diti_{g}", diti, g)
        init = []
        for seed in range(len(f.diti)):
            config.seed = seed
            init.append(_scores(random_init_features(config), data, {}))
        add("DiTi encoder at init", "diti_init", init, "all")
    if f.pdae:
        pdae = [_scores(load_features(w), data, groups if f.diti else {}) for w in f.pdae]
        add("PDAE k=1, all of z", "pdae_all", pdae, "all")
        for g in ("early", "late") if f.diti else ():
            add(f"PDAE, same dims as DiTi {g}", f"pdae_{g}", pdae, g)
    for name, workdir in (("DDPM", f.ddpm), ("MDM", f.mdm)):
        if workdir:
            runs = [_scores(load_features(workdir, seed=s), data, {}) for s in range(f.noise_seeds)]
            add(f"{name} decoder features (pooled)", name.lower(), runs, "all")
    add("raw pixels", "raw_pixels", [_scores(raw_pixel_features(), data, {})], "all")
    os.makedirs(os.path.dirname(os.path.abspath(f.out)), exist_ok=True)
    with open(f.out, "w") as fh:
        json.dump(results, fh, indent=2)
    print("\n".join([HEADER, "|" + "---|" * 9, *rows]))


if __name__ == "__main__":
    app.run(main)
