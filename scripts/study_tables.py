"""The tables of docs/results.md (and docs/results_sweeps.md) from the study records that
`compare_representations.py` caches under `<runs>/<task>/<row>_s<seed>/study/`.

Spreads: a row's number is the mean over its pretraining seeds of each network's mean over
labelled subsets; "pre" is the std over pretraining seeds of those means, "sub" the mean over
networks of the std over labelled subsets. Differences to the best row are paired by
labelled subset (the same labelled images for every row) and pooled over pretraining
seeds, with a Student-t 95 % interval over those pairs.
"""

import os

import numpy as np
import study_sweeps
from study_sweeps import load_records, markdown_table

from diffssl_jax.evaluation.calibration import mean_interval

MARKER = "<!-- Below: written by hand; kept when the tables above are regenerated. -->"


def _probe_values(record, budget) -> list[float]:
    probe = record["test"]["probe"][budget]
    return probe["per_class_values"] if budget == "per_class" else [probe["all"]]


def _seg_values(record, labelled, key) -> list[float]:
    return record["test"]["segmentation"][str(labelled)][key]["values"]


def _cell(per_network: list[list[float]]) -> str:
    """`mean (± pre, ± sub)` in percent over networks (outer) and subsets (inner)."""
    means = [100 * np.mean(v) for v in per_network]
    text = f"{np.mean(means):.1f}"
    spreads = []
    if len(means) > 1:
        spreads.append(f"±{np.std(means):.1f} pre")
    if max(len(v) for v in per_network) > 1:
        spreads.append(f"±{np.mean([100 * np.std(v) for v in per_network]):.1f} sub")
    return text + (f" ({', '.join(spreads)})" if spreads else "")


def _difference(a: list[list[float]], b: list[list[float]]) -> str:
    """Paired difference a - b in points (pairs: same network index and subset; a baseline's
    single network is paired with the other row's seed-0 network)."""
    networks = zip(a, b, strict=False)
    pairs = [100 * (x - y) for va, vb in networks for x, y in zip(va, vb, strict=True)]
    if len(pairs) < 2:
        return "n/a"
    mean, half = mean_interval(pairs)
    return f"{mean:+.1f} ± {half:.1f}"


# The papers' orderings, as (a, b, claim): the tables give a - b with its interval.
CLAIMS = {
    "digits": [
        ("mdm", "ddpm", "MDM > DDPM (MDM paper)"),
        ("ddpm", "mae", "DDPM > MAE (MDM paper)"),
        ("mdm", "mdm_fixed_t", "MDM multi-t > fixed t (MDM ablation)"),
        ("mae", "ldae", "MAE > l-DAE, slightly (l-DAE paper)"),
        ("mdm", "raw_pixels", "MDM > raw pixels"),
        ("ddpm", "raw_pixels", "DDPM > raw pixels"),
        ("mae", "raw_pixels", "MAE > raw pixels"),
        ("ldae", "raw_pixels", "l-DAE > raw pixels"),
    ],
    "canvases": [
        ("mdm", "ddpm", "MDM > DDPM (MDM paper)"),
        ("ddpm", "mae", "DDPM > MAE (MDM paper)"),
        ("mdm", "mae", "MDM > MAE (MDM paper)"),
        ("mae", "ldae", "MAE > l-DAE, slightly (l-DAE paper)"),
        ("mdm", "random_init", "MDM > its random network"),
        ("ddpm", "random_init", "DDPM > its random network"),
    ],
}


def _claims(claims, metrics, labels, keys) -> list[str]:
    """The paired difference a - b of every claim whose rows both exist, per metric."""
    lines = []
    for a, b, claim in claims:
        if a in metrics and b in metrics:
            cells = [_difference(metrics[a][k], metrics[b][k]) for k, _ in keys]
            lines.append("| " + " | ".join([claim, f"{labels[a]} - {labels[b]}", *cells]) + " |")
    header = ["claim", "difference", *(f"{name}, points (95 % CI)" for _, name in keys)]
    return [
        "The papers' orderings, tested (paired differences):",
        "",
        *markdown_table(header, lines),
    ]


def _readout(record) -> str:
    parts = []
    if "probe_choice" in record:
        c = record["probe_choice"]["chosen"]
        parts.append(f"probe {c['block']}, t={c['t']:g}, {c['grid']}x{c['grid']}")
    if "segmentation_choice" in record:
        c = record["segmentation_choice"]["chosen"]
        blocks = c["blocks"][0] if len(c["blocks"]) == 1 else "+".join(c["blocks"])
        parts.append(f"seg {blocks}, t={c['t']:g}")
    return "; ".join(parts)


def digits_tables(runs, rows, baselines) -> list[str]:
    records = {r: load_records(runs, "digits", r) for r in [*rows, *baselines]}
    records = {r: v for r, v in records.items() if v}
    labels = {**{r: v[0] for r, v in rows.items()}, **baselines}
    header = [
        "representation",
        "networks",
        "readout (chosen on validation)",
        "probe, all labels",
        "probe, 10 per class",
        "seg mIoU (20 labelled)",
        "seg Dice (20 labelled)",
    ]
    lines, metrics = [], {}
    for row, recs in records.items():
        m = {
            "all": [_probe_values(r, "all") for r in recs],
            "per_class": [_probe_values(r, "per_class") for r in recs],
            "miou": [_seg_values(r, 20, "miou") for r in recs],
            "dice": [_seg_values(r, 20, "dice") for r in recs],
        }
        metrics[row] = m
        cells = [labels[row], str(len(recs)), _readout(recs[0]) or "as DDPM's"]
        cells += [_cell(m[k]) for k in ("all", "per_class", "miou", "dice")]
        lines.append("| " + " | ".join(cells) + " |")
    out = markdown_table(header, lines)
    keys = (("per_class", "probe, 10 per class"), ("miou", "seg mIoU (20 labelled)"))
    return out + _claims(CLAIMS["digits"], metrics, labels, keys)


def canvases_table(runs, rows, baselines) -> list[str]:
    records = {r: load_records(runs, "canvases", r) for r in [*rows, *baselines]}
    records = {r: v for r, v in records.items() if v}
    labels = {**{r: v[0] for r, v in rows.items()}, **baselines}
    header = ["representation", "networks", "readout (chosen on validation)"]
    header += [f"{k} ({n} labelled)" for n in (10, 50) for k in ("mIoU", "Dice")]
    lines, metrics = [], {}
    for row, recs in records.items():
        m = {
            (n, k): [_seg_values(r, n, k) for r in recs] for n in (10, 50) for k in ("miou", "dice")
        }
        metrics[row] = m
        cells = [labels[row], str(len(recs)), _readout(recs[0]) or "as DDPM's"]
        cells += [_cell(m[(n, k)]) for n in (10, 50) for k in ("miou", "dice")]
        lines.append("| " + " | ".join(cells) + " |")
    out = markdown_table(header, lines)
    keys = (((10, "miou"), "mIoU, 10 labelled"), ((50, "miou"), "mIoU, 50 labelled"))
    return out + _claims(CLAIMS["canvases"], metrics, labels, keys)


def long_table(runs, rows, digits_rows) -> list[str]:
    """Each leading row at twice the budget beside its seed-0 network at the equal budget,
    with the paired difference (read where the equal-budget network reads)."""
    lines = []
    for row, (label, _, _) in rows.items():
        long, short = load_records(runs, "long", row), load_records(runs, "digits", row)
        if not long or not short:
            continue
        for name, r in ((digits_rows[row][0], short[0]), (label, long[0])):
            cells = [name, _readout(r) or "the same", _cell([_probe_values(r, "all")])]
            cells += [_cell([_probe_values(r, "per_class")]), _cell([_seg_values(r, 20, "miou")])]
            lines.append("| " + " | ".join(cells) + " |")
        probe = [_probe_values(x[0], "per_class") for x in (long, short)]
        seg = [_seg_values(x[0], 20, "miou") for x in (long, short)]
        diffs = [_difference([probe[0]], [probe[1]]), _difference([seg[0]], [seg[1]])]
        lines.append(f"| {label} minus equal budget | | | {diffs[0]} | {diffs[1]} |")
    header = ["representation (seed 0)", "readout", "probe, all labels", "probe, 10 per class"]
    return markdown_table([*header, "seg mIoU (20 labelled)"], lines)


def roadmap_table(runs, rows) -> list[str]:
    """One row per stage; the last column is the paired difference to the final l-DAE."""
    records = {row: load_records(runs, "roadmap", row) for row in rows}
    records = {row: recs[0] for row, recs in records.items() if recs}
    final = records.get("ldae")
    lines = []
    for row, r in records.items():
        label, config, _ = rows[row]
        c = r["probe_choice"]["chosen"]
        values = [_probe_values(r, "per_class")]
        cells = [
            label,
            f"`{config}`",
            f"{c['block']}, t={c['t']:g}, {c['grid']}x{c['grid']}",
            _cell([_probe_values(r, "all")]),
            _cell(values),
        ]
        cells.append(_difference(values, [_probe_values(final, "per_class")]) if final else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    header = [
        "stage",
        "config",
        "readout",
        "probe, all labels",
        "probe, 10 per class",
        "10 per class minus l-DAE, points (95 % CI)",
    ]
    return markdown_table(header, lines)


def write_page(runs, out, rows, baselines):
    """Rewrites the generated part of `out` (kept: everything from `MARKER` on) and writes
    the full sweeps next to it."""
    tail = MARKER + "\n"
    if os.path.exists(out):
        with open(out) as f:
            text = f.read()
        if MARKER in text:
            tail = text[text.index(MARKER) :]
    page = [
        "# Representations compared on the digits and on digit canvases",
        "",
        "Generated by `scripts/compare_representations.py` (commands and protocol below the "
        "tables; every choice made on validation, every number here on test).",
        "",
        "## Readouts chosen on validation (single digits, probe)",
        "",
        *study_sweeps.summary(runs, rows["digits"], baselines),
        "## Single digits: linear probe and the per-pixel class of one centred digit",
        "",
        *digits_tables(runs, rows["digits"], baselines),
        "### The two leading rows at twice the budget (128,000 digits)",
        "",
        *long_table(runs, rows["long"], rows["digits"]),
        "## Canvases of 2-4 digits: label-efficient segmentation",
        "",
        *canvases_table(runs, rows["canvases"], baselines),
        "## The l-DAE roadmap (single digits, linear probe)",
        "",
        *roadmap_table(runs, rows["roadmap"]),
    ]
    with open(out, "w") as f:
        f.write("\n".join(page) + "\n" + tail)
    with open(os.path.join(os.path.dirname(out), "results_sweeps.md"), "w") as f:
        f.write("\n".join(study_sweeps.sweep_page(runs, rows)))
