r"""Representations compared under one protocol: readouts chosen on validation, equal budgets.

    .venv/bin/python scripts/compare_representations.py --task=digits    # probe, digit seg
    .venv/bin/python scripts/compare_representations.py --task=canvases  # canvas segmentation
    .venv/bin/python scripts/compare_representations.py --task=roadmap   # l-DAE roadmap
    .venv/bin/python scripts/compare_representations.py --write_only     # docs/results.md

Each task pretrains its rows (`ROWS`, every one for `STEPS[task]` steps at batch 64; digits
and canvases rows at the pretraining seeds `--seeds` except `SEED_0_ONLY`, the others at
seed 0) into `--runs/<task>/<row>_s<seed>` (a finished run is not redone, an interrupted one
resumes), chooses each row's readout on validation (`evaluation.readout`, on the seed-0
network; other seeds are read the same way) and evaluates it on test. The roadmap stages are
read where the digits l-DAE row's sweep chose (run `--task=digits` first). Every stage writes
its JSON under the workdir's `study/` and is read back when it exists, so rerunning a command
redoes nothing finished. `--write_only` regenerates the tables of `docs/results.md`
(`study_tables.py`) and `docs/results_sweeps.md` from those files; the page's hand-written
part below the marker is kept.
"""

import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import study_tables  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from study_rows import (  # noqa: E402
    BASELINES,
    ROWS,
    SEED_0_ONLY,
    SEEDED_TASKS,
    SEG_LABELLED,
    SEG_SWEEP,
    SEG_SWEEP_EPOCHS,
    TS,
    row_config,
)

from diffssl_jax import methods, recipe_inputs, training  # noqa: E402
from diffssl_jax.data import DigitsSource, source_for  # noqa: E402
from diffssl_jax.evaluation import readout, representation  # noqa: E402
from diffssl_jax.evaluation.features import (  # noqa: E402
    load_features,
    random_init_features,
    raw_pixel_features,
)

flags.DEFINE_enum("task", "digits", list(ROWS), "Which comparison (long: 2x budget).")
flags.DEFINE_list("rows", None, "Rows to run (default: all of the task's, then the baselines).")
flags.DEFINE_list("seeds", ["0", "1"], "Pretraining seeds.")
flags.DEFINE_string("runs", os.path.join(REPO, "runs", "study"), "Workdirs root.")
flags.DEFINE_bool("write_only", False, "Only regenerate docs/results.md from the cache.")
flags.DEFINE_string("out", os.path.join(REPO, "docs", "results.md"), "Markdown page.")


def _with_eval(config, settings: dict):
    """`config` with `settings` in its eval group (`representation.apply_eval_overrides`)."""
    return representation.apply_eval_overrides(config, [f"{k}={v!r}" for k, v in settings.items()])


def _cached(path: str, compute):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    value = compute()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(value, f, indent=1)
    os.replace(path + ".tmp", path)
    return value


def _extractor(task, row, seed, workdir):
    """The row's `FeatureExtractor` (pretrained first when it is a recipe)."""
    config = row_config(task, row, seed)
    if row == "raw_pixels":
        return raw_pixel_features(), config
    if row == "random_init":
        return random_init_features(config, batch_size=256), config
    recipe = methods.make_recipe(config, recipe_inputs.prepare(config, workdir))
    training.train(config, workdir, recipe)
    return load_features(workdir, batch_size=256), config


def _candidates(task, row, config):
    """(t values, single blocks, pool grids, block sets for segmentation) of a row's sweep."""
    if row == "raw_pixels":  # grid 16 is the flattened image
        return (0.0,), ("pixels",), (1, 2, 4, 8, 16), [("pixels",)]
    extra = ROWS[task][row][2] if row in ROWS[task] else ()
    ts = (0.0,) if config.method == "mae" else (*TS, *extra)  # MAE's ViT has no t input
    blocks = readout.network_blocks(config)
    sets = [(b,) for b in blocks]
    if "channel_mult" in config.model:
        sets += [readout.below_full_resolution(config), blocks]
    return ts, blocks, readout.POOL_GRIDS, sets


def _splits(task, config, final: bool):
    """(train, evaluation) sources: validation choices, or (`final`) train and test (the
    digits for every task but the canvases)."""
    if task == "canvases":
        return source_for(config.data, "train"), source_for(
            config.data, "test" if final else "validation"
        )
    if final:
        return DigitsSource("train"), DigitsSource("test")
    return DigitsSource("train_minus_validation"), DigitsSource("validation")


def _roadmap_readout(config) -> dict:
    """A roadmap stage is read where the l-DAE digits row's sweep chose (its block, grid and
    t), except the single-level stage, read at its one noise level (`eval.feature_t`)."""
    path = os.path.join(flags.FLAGS.runs, "digits", "ldae_s0", "study", "probe_choice.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: run --task=digits --rows=ldae first")
    with open(path) as f:
        chosen = dict(json.load(f)["chosen"])
    if config.corruption.noise_levels == "single":
        chosen["t"] = float(config.eval.feature_t)
    return chosen


def choose_probe(task, row, extractor, config, study_dir):
    """The probe readout chosen on validation: sweep, then l2 at the chosen (cached)."""

    def compute():
        ts, blocks, grids, _ = _candidates(task, row, config)
        train, val = _splits(task, config, final=False)
        if task == "roadmap":
            rows, best = [], _roadmap_readout(config)
        else:
            rows = readout.sweep_probe(extractor, train, val, blocks=blocks, ts=ts, grids=grids)
            best = readout.choose(rows, "per_class")
        feats = [
            readout.pooled_features(
                extractor, s.images, t=best["t"], blocks=(best["block"],), grid=best["grid"]
            )
            for s in (train, val)
        ]
        l2 = readout.choose_l2(feats[0], train.labels, feats[1], val.labels)
        return {"sweep": rows, "chosen": best, "l2": l2}

    return _cached(os.path.join(study_dir, "probe_choice.json"), compute)


def choose_segmentation(task, row, extractor, config, study_dir, probe):
    """The segmentation readout (block set, t) chosen on validation mIoU (cached): block
    sets at the probe's chosen t (t = 0 without a probe), then every t at the best set."""

    def compute():
        ts, _, _, sets = _candidates(task, row, config)
        train, val = _splits(task, config, final=False)
        labelled = SEG_LABELLED[task][0]
        settings = {"seg_num_labelled": labelled, **SEG_SWEEP}
        cfg = _with_eval(config, settings)

        def score(blocks, t):
            ex = extractor.replace(t=float(t), blocks=tuple(blocks))
            seg = representation.segment_digits(ex, cfg, train, val, max_epochs=SEG_SWEEP_EPOCHS)
            logging.info("%s %s: seg %s t=%g mIoU %.3f", task, row, blocks, t, seg["miou"]["mean"])
            return {
                "blocks": list(blocks),
                "t": float(t),
                "miou": seg["miou"]["mean"],
                "dice": seg["dice"]["mean"],
            }

        t0 = probe["chosen"]["t"] if probe else 0.0
        rows = [score(blocks, t0) for blocks in sets]
        best = readout.choose(rows, "miou")
        rows += [score(best["blocks"], t) for t in ts if t != t0]
        return {"sweep": rows, "chosen": readout.choose(rows, "miou")}

    return _cached(os.path.join(study_dir, "segmentation_choice.json"), compute)


def evaluate_test(task, row, extractor, config, study_dir, probe, seg):
    """Test results at the chosen readouts (cached): probe per budget at its l2, and
    segmentation with the protocol's ensembles per labelled budget."""

    def compute():
        train, test = _splits(task, config, final=True)
        out = {"probe": None, "segmentation": {}}
        if probe is not None:
            c = probe["chosen"]
            feats = [
                readout.pooled_features(
                    extractor, s.images, t=c["t"], blocks=(c["block"],), grid=c["grid"]
                )
                for s in (train, test)
            ]
            out["probe"] = {
                budget: readout.probe_scores(
                    feats[0],
                    train.labels,
                    feats[1],
                    test.labels,
                    per_class=10,
                    seeds=range(5),
                    l2=probe["l2"][budget],
                )
                for budget in ("all", "per_class")
            }
        if seg is not None:
            c = seg["chosen"]
            ex = extractor.replace(t=c["t"], blocks=tuple(c["blocks"]))
            for labelled in SEG_LABELLED[task]:
                cfg = _with_eval(config, {"seg_num_labelled": labelled})
                out["segmentation"][str(labelled)] = representation.segment_digits(
                    ex, cfg, train, test
                )
        return out

    return _cached(os.path.join(study_dir, "test.json"), compute)


def _choice(task, row) -> dict:
    """The readouts chosen for the task's seed-0 `row` network (the random network's floor
    is read where DDPM reads; a longer budget where the same recipe's network reads)."""
    study = os.path.join(flags.FLAGS.runs, task, f"{row}_s0", "study")
    chosen = {"probe": None, "segmentation": None}
    for key, name in (("probe", "probe_choice"), ("segmentation", "segmentation_choice")):
        path = os.path.join(study, f"{name}.json")
        if os.path.exists(path):
            with open(path) as f:
                chosen[key] = json.load(f)
    if chosen["probe"] is None and chosen["segmentation"] is None:
        raise FileNotFoundError(f"no readout chosen in {study}: run --task={task} --rows={row}")
    if task == "digits":
        probe = chosen["probe"]["chosen"]
        chosen["segmentation"] = {"chosen": {"blocks": [probe["block"]], "t": probe["t"]}}
    return chosen


def run_row(task, row, seed, chosen=None):
    """Pretrains, chooses (seed 0) and tests one row; returns its study records."""
    workdir = os.path.join(flags.FLAGS.runs, task, f"{row}_s{seed}")
    study_dir = os.path.join(workdir, "study")
    extractor, config = _extractor(task, row, seed, workdir)
    if chosen is None and row == "random_init":  # the floor is read where DDPM reads
        chosen = _choice(task, "ddpm")
    if chosen is None and task == "long":  # read where the row's digits network reads
        chosen = _choice("digits", row)
    if chosen is None:
        probe = (
            None if task == "canvases" else choose_probe(task, row, extractor, config, study_dir)
        )
        seg = None
        if task == "canvases":
            seg = choose_segmentation(task, row, extractor, config, study_dir, probe)
        elif task == "digits":  # single digits: segmented where the probe reads (no sweep)
            seg = {"chosen": {"blocks": [probe["chosen"]["block"]], "t": probe["chosen"]["t"]}}
        chosen = {"probe": probe, "segmentation": seg}
    test = evaluate_test(
        task, row, extractor, config, study_dir, chosen["probe"], chosen["segmentation"]
    )
    logging.info("%s/%s seed %d: %s", task, row, seed, test)
    return chosen


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    if not f.write_only:
        with_baselines = f.task in ("digits", "canvases")
        known = [*ROWS[f.task], *(BASELINES if with_baselines else ())]
        rows = f.rows or known
        unknown = sorted(set(rows) - set(known))
        if unknown:
            raise app.UsageError(f"unknown --rows {unknown}; known: {known}")
        for row in rows:
            one = row in (*BASELINES, *SEED_0_ONLY) or f.task not in SEEDED_TASKS
            seeds = [0] if one else [int(s) for s in f.seeds]
            chosen = None
            for seed in seeds:
                chosen = run_row(f.task, row, seed, chosen)
    study_tables.write_page(f.runs, f.out, ROWS, BASELINES)


if __name__ == "__main__":
    app.run(main)
