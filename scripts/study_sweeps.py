"""Validation sweeps of `compare_representations.py`: a summary for docs/results.md and every
candidate for docs/results_sweeps.md, from the cached `probe_choice.json` and
`segmentation_choice.json` of each seed-0 network."""

import json
import os

FULL_RESOLUTION = {"dec_3", "dec_4", "dec_5"}  # the digits U-Net's 16x16 decoder blocks


def load_records(runs, task, row) -> list[dict]:
    """`[{"seed", "choice": {...}, "test": {...}}]` of the row's finished networks."""
    out, seed = [], 0
    while os.path.isdir(os.path.join(runs, task, f"{row}_s{seed}")):
        study = os.path.join(runs, task, f"{row}_s{seed}", "study")
        record = {"seed": seed}
        for name in ("test", "probe_choice", "segmentation_choice"):
            path = os.path.join(study, f"{name}.json")
            if os.path.exists(path):
                with open(path) as f:
                    record[name] = json.load(f)
        if "test" in record:
            out.append(record)
        seed += 1
    return out


def markdown_table(header, lines):
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *lines, ""]


def summary(runs, rows, baselines) -> list[str]:
    """Per row: the best validation probe accuracy (10 labels per class, %) at each t, each
    pool grid, and over the full-resolution blocks against the others, and the choice."""
    lines, ts, grids = [], set(), set()
    sweeps = {}
    for row in [*rows, *baselines]:
        recs = load_records(runs, "digits", row)
        if recs and "probe_choice" in recs[0] and recs[0]["probe_choice"].get("sweep"):
            sweeps[row] = recs[0]["probe_choice"]
            ts |= {c["t"] for c in sweeps[row]["sweep"]}
            grids |= {c["grid"] for c in sweeps[row]["sweep"] if c["grid"] <= 4}
    labels = {**{r: v[0] for r, v in rows.items()}, **baselines}
    ts, grids = sorted(ts), sorted(grids)

    def best(sweep, keep):
        scores = [c["per_class"] for c in sweep if keep(c)]
        return f"{100 * max(scores):.1f}" if scores else "-"

    for row, choice in sweeps.items():
        sweep, c = choice["sweep"], choice["chosen"]
        cells = [labels[row]]
        cells += [best(sweep, lambda x, t=t: x["t"] == t) for t in ts]
        cells += [best(sweep, lambda x, g=g: x["grid"] == g) for g in grids]
        unet = any(x["block"].startswith("dec_") for x in sweep)
        cells += [best(sweep, lambda x: x["block"] in FULL_RESOLUTION) if unet else "-"]
        cells += [best(sweep, lambda x: x["block"] not in FULL_RESOLUTION) if unet else "-"]
        l2 = choice["l2"]
        chosen = f"{c['block']}, t={c['t']:g}, {c['grid']}x{c['grid']}: {100 * c['per_class']:.1f}"
        cells += [chosen, f"{l2['all']:g} / {l2['per_class']:g}"]
        lines.append("| " + " | ".join(cells) + " |")
    header = ["representation", *(f"best at t={t:g}" for t in ts)]
    header += [f"best at {g}x{g}" for g in grids]
    header += ["best full-res block", "best coarser block", "chosen", "l2 (all / 10 per class)"]
    note = (
        "Validation accuracy (%) with 10 labels per class, the best candidate under each "
        "constraint (all candidates: docs/results_sweeps.md). U-Net full resolution: "
        "dec_3 ... dec_5; MAE has no t; raw pixels' grids go up to 16x16 (the image)."
    )
    return [note, "", *markdown_table(header, lines)]


def sweep_page(runs, rows) -> list[str]:
    """Every validation candidate of every seed-0 network (docs/results_sweeps.md)."""
    out = [
        "# Readout sweeps on validation",
        "",
        "Written by `scripts/compare_representations.py` (see docs/results.md). Probe: "
        "validation accuracy (%), 10 labels per class, mean over 5 labelled subsets. "
        "Segmentation: validation mIoU (%), 3 MLPs, 2 labelled subsets, 30 epochs.",
        "",
    ]
    for task in ("digits", "canvases"):
        for row, spec in rows[task].items():
            recs = load_records(runs, task, row)
            if not recs:
                continue
            rec = recs[0]
            if "probe_choice" in rec and rec["probe_choice"]["sweep"]:
                out += [f"## {task}: {spec[0]}, probe", ""]
                sweep = rec["probe_choice"]["sweep"]
                ts = sorted({c["t"] for c in sweep})
                grids = sorted({c["grid"] for c in sweep})
                head = ["block"] + [f"t={t:g}, {g}x{g}" for t in ts for g in grids]
                body = []
                for block in dict.fromkeys(c["block"] for c in sweep):
                    score = {
                        (c["t"], c["grid"]): c["per_class"] for c in sweep if c["block"] == block
                    }
                    cells = [
                        f"{100 * score[(t, g)]:.1f}" if (t, g) in score else "-"
                        for t in ts
                        for g in grids
                    ]
                    body.append("| " + " | ".join([block, *cells]) + " |")
                out += markdown_table(head, body)
            if "segmentation_choice" in rec:
                out += [f"## {task}: {spec[0]}, segmentation", ""]
                sweep = rec["segmentation_choice"]["sweep"]
                ts = sorted({c["t"] for c in sweep})
                head = ["blocks"] + [f"t={t:g}" for t in ts]
                body = []
                for blocks in dict.fromkeys("+".join(c["blocks"]) for c in sweep):
                    score = {c["t"]: c["miou"] for c in sweep if "+".join(c["blocks"]) == blocks}
                    cells = [f"{100 * score[t]:.1f}" if t in score else "-" for t in ts]
                    body.append("| " + " | ".join([blocks, *cells]) + " |")
                out += markdown_table(head, body)
    return out
