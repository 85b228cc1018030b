r"""Pretrains every recipe on the digits, evaluates each, and writes one table (issue 3).

    .venv/bin/python scripts/compare_representations.py

trains each recipe of `RECIPES` from its `configs/<method>/digits.py[:variant]` into
`runs/compare/<name>` with `diffssl_jax.training.train` (a finished run is not redone, an
interrupted one resumes), evaluates it with `evaluate_representation` (its
`eval/results.json`), adds the baselines (the DDPM U-Net at its random initialisation, and
raw pixels) and writes `docs/results.md`. An evaluation whose `eval/results.json` exists with
the same eval settings and epoch cap is read back instead of redone (`--reevaluate` redoes
it), so regenerating the table is quick. Everything below `TAIL_MARKER` in an existing output
file (the discussion, the DiTi section) is kept. Smoke test (tiny configs, few seeds and epochs;
writes under `runs/compare_quick/`, never `docs/results.md`):

    .venv/bin/python scripts/compare_representations.py --quick \
        --recipes=ddpm,random_init,raw_pixels
"""

import importlib
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import app, flags, logging  # noqa: E402

from diffssl_jax import methods, recipe_inputs, training  # noqa: E402
from diffssl_jax.evaluation import features, representation  # noqa: E402
from diffssl_jax.evaluation.samples import sample_grid_drawer  # noqa: E402

# name -> (table label, config module, variants); variants must exist in that config file.
RECIPES = {
    "mdm": ("MDM (SSIM loss)", "configs.mdm.digits", ""),
    "mdm_mse": ("MDM, MSE loss", "configs.mdm.digits", "mse"),
    "mdm_fixed_t": ("MDM, fixed t", "configs.mdm.digits", "fixed_t"),
    "mae": ("MAE", "configs.mae.digits", ""),
    "ddpm": ("DDPM", "configs.ddpm.digits", ""),
    "ldae": ("l-DAE", "configs.ldae.digits", ""),
}
BASELINES = {"random_init": "random-init U-Net (DDPM config)", "raw_pixels": "raw pixels"}
QUICK_EVAL = ("probe_seeds=2", "seg_seeds=1", "seg_num_models=2")
TAIL_MARKER = "<!-- Below: written by hand; kept when the table above is regenerated. -->"
DEFAULT_TAIL = [
    TAIL_MARKER,
    "",
    "## Discussion",
    "",
    "(to be written)",
    "",
    "## DiTi attribute probes",
    "",
    "(the DiTi attribute-probe table goes here)",
    "",
]

flags.DEFINE_list("recipes", [*RECIPES, *BASELINES], "Rows of the table, in order.")
flags.DEFINE_bool("quick", False, "Tiny configs and evaluations: a smoke test.")
flags.DEFINE_string(
    "runs", None, "Workdirs root; default runs/compare (quick: runs/compare_quick)."
)
flags.DEFINE_string("out", None, "Markdown table; default docs/results.md (quick: under --runs).")
flags.DEFINE_integer("seg_max_epochs", None, "Pixel-classifier epoch cap; default 100 (quick 3).")
flags.DEFINE_bool("reevaluate", False, "Redo evaluations whose results.json already exists.")


def _config(name: str, quick: bool):
    _, module, variants = RECIPES[name]
    try:
        get_config = importlib.import_module(module).get_config
    except ModuleNotFoundError as error:
        raise ValueError(f"recipe {name!r} needs {module.replace('.', '/')}.py") from error
    return get_config(",".join(v for v in (variants, "tiny" if quick else "") if v))


def _saved_results(path: str, eval_config, seg_max_epochs: int) -> dict | None:
    """The results at `path` if they were made with these eval settings, else None."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        saved = json.load(f)
    same_eval = saved["config"]["eval"] == json.loads(eval_config.to_json())["eval"]
    seg = saved["segmentation"]
    if not same_eval or (seg is not None and seg["max_epochs"] != seg_max_epochs):
        return None
    return saved


def _evaluate(name, runs, quick, seg_max_epochs, reevaluate=False) -> tuple[dict, str]:
    """(results, pretraining note) of one row; trains the recipe first when it is one."""
    config = _config("ddpm" if name in BASELINES else name, quick)
    eval_config = representation.apply_eval_overrides(config, QUICK_EVAL if quick else ())
    workdir = os.path.join(runs, name)
    out = os.path.join(workdir, "eval", "results.json")
    note = {"raw_pixels": "none", "random_init": "none (step 0)"}.get(
        name, f"{config.train.num_steps} steps"
    )
    if name not in BASELINES:
        recipe = methods.make_recipe(config, recipe_inputs.prepare(config, workdir))
        training.train(config, workdir, recipe, draw_samples=sample_grid_drawer(config.method))
    saved = None if reevaluate else _saved_results(out, eval_config, seg_max_epochs)
    if saved is not None:
        return saved, note
    if name == "raw_pixels":
        extractor = features.raw_pixel_features()
    elif name == "random_init":
        extractor = features.random_init_features(config)
    else:
        extractor = workdir
    kwargs = {"out_path": out, "seg_max_epochs": seg_max_epochs}
    return representation.evaluate_representation(extractor, eval_config, **kwargs), note


def _cell(result: dict | None) -> str:
    return "n/a" if result is None else f"{100 * result['mean']:.1f} ± {100 * result['std']:.1f}"


def _table(rows: list[tuple[str, dict, str]]) -> list[str]:
    budgets = list(dict.fromkeys(b for _, r, _ in rows for b in r["linear_probe"]))
    seg = next((r["segmentation"] for _, r, _ in rows if r["segmentation"]), None)
    labelled = f" ({seg['num_labelled']} labelled)" if seg else ""
    header = ["representation", "pretraining", "feature t", "feature dim"]
    header += [f"probe acc, {b.replace('_', ' ')}" for b in budgets]
    header += [f"seg mIoU{labelled}", f"seg Dice{labelled}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, r, note in rows:
        dim = sum(shape[-1] for shape in r["feature_dims"].values())
        cells = [label, note, f"{r['features']['t']:g}", str(dim)]
        cells += [_cell(r["linear_probe"].get(b)) for b in budgets]
        s = r["segmentation"]
        cells += [_cell(s and s["miou"]), _cell(s and s["dice"])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _markdown(rows, command: str, quick: bool, seg_max_epochs: int) -> str:
    cfg = rows[0][1]["config"]["eval"]
    return "\n".join(
        [
            "# Representations compared on the digits",
            "",
            f"Produced by `{command}`{' (smoke test: tiny configs)' if quick else ''}.",
            "",
            "Protocols of `docs/methods.md` F (1347 train / 450 test digits, 16x16):",
            "",
            "- Linear probe: test accuracy of logistic regression on globally pooled features",
            "  (raw pixels: the flattened image); k-per-class budgets over "
            f"{cfg['probe_seeds']} seeds of the labelled subset.",
            "- Segmentation: pixel-classifier protocol (i) of docs/methods.md A.6, "
            f"{cfg['seg_num_models']} MLPs,",
            f"  majority vote, at most {seg_max_epochs} epochs, {cfg['seg_seeds']} seed(s) of the",
            "  labelled images; mIoU over the 11 classes, foreground Dice averaged over images.",
            "- Percentages, mean ± std over seeds (± 0.0: a single deterministic fit). Feature",
            "  dim is per pixel, before pooling (raw pixels: the channels).",
            "",
            *_table(rows),
            "",
        ]
    )


def _tail(out: str) -> str:
    """The hand-written part of an existing `out` from `TAIL_MARKER` on, or a fresh one."""
    if os.path.exists(out):
        with open(out) as f:
            text = f.read()
        if TAIL_MARKER in text:
            return text[text.index(TAIL_MARKER) :]
    return "\n".join(DEFAULT_TAIL)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.ERROR)
    f = flags.FLAGS
    unknown = sorted(set(f.recipes) - set(RECIPES) - set(BASELINES))
    if unknown:
        raise app.UsageError(f"unknown --recipes {unknown}; known: {[*RECIPES, *BASELINES]}")
    runs = f.runs or os.path.join(REPO, "runs", "compare_quick" if f.quick else "compare")
    out = f.out or os.path.join(*((runs,) if f.quick else (REPO, "docs")), "results.md")
    epochs = f.seg_max_epochs or (3 if f.quick else 100)
    rows = []
    for name in f.recipes:
        results, note = _evaluate(name, runs, f.quick, epochs, f.reevaluate)
        rows.append(((RECIPES.get(name) or (BASELINES[name],))[0], results, note))
        print(f"{name}:\n{representation.format_results(results)}", flush=True)
    script = os.path.relpath(os.path.abspath(sys.argv[0]), REPO)
    command = " ".join([".venv/bin/python", script, *sys.argv[1:]])
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    text = _markdown(rows, command, f.quick, epochs) + "\n" + _tail(out)
    with open(out, "w") as file:
        file.write(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)
