r"""Compares posterior samplers on digit and MRI inverse problems; writes docs/posterior.md.

    nice -n 10 .venv/bin/python scripts/compare_posterior.py \
        --digits=runs/ddpm_digits --phantoms=runs/ddpm_phantoms

A report script: it runs nothing of its own. Each row (a task of `TASKS`: a
`configs/posterior` file and a trained prior; a method of `METHODS`: a posterior method and
its options; a step count; images) is one `evaluation.posterior.run_problem` call, which
draws one posterior sample per held-out observation (DDPM-ancestral steps) and scores it;
the script picks the rows, caches their metrics and tabulates the mean PSNR and SSIM against
the ground truth, with the observation itself (zero-filled for MRI) as a baseline. Step sizes
of DPS and DPS as published (`zeta`), PiGDM (`data_var`), TMPD (`rel_floor`) and DiffPIR
(`lambda_`) are tuned first on a small grid, on validation images disjoint from the test
images (the next images of the same held-out split), once per (task, step count), by PSNR;
Shepp-Logan tasks reuse the values tuned on phantoms at the same step count. Every finished
row is cached in `<runs>/results.json`, so an interrupted run resumes and `--write_only`
rewrites the page from the cache. docs/posterior.md (run of
2026-12-04), after training both priors (`launch.train` with `configs/ddpm/digits.py` and
`configs/ddpm/phantoms.py`):

    P="nice -n 10 .venv/bin/python scripts/compare_posterior.py --num_validation=2"
    $P --tasks=mri4_phantoms,mri8_phantoms,mri4_sl,mri8_sl --steps=10,100 \
        --methods=mmps1,mmps3,dps,pigdm,diffpir
    $P --tasks=mri4_phantoms --long_tasks=mri4_phantoms --steps=1000 --num_images_long=1 \
        --methods=mmps1,mmps3,dps,pigdm,diffpir
    $P --tasks=digits_inpaint,digits_superres --steps=10,100
    $P --tasks=digits_inpaint,digits_superres --long_tasks=digits_inpaint,digits_superres \
        --steps=1000 --num_images_long=1
    $P --write_only

(TMPD is not run on MRI, see the notes.) The ablation of MMPS's CG guard (notes) is a run of
the `mmps*_cap*` / `mmps*_nocap` entries of `METHODS` into its own cache:

    M3=mmps3_nocap,mmps3_cap1,mmps3_cap3,mmps3,mmps3_cap100
    M1=mmps1_nocap,mmps1_cap1,mmps1_cap3,mmps1,mmps1_cap100
    $P --runs=runs/guard_ablation --tasks=mri4_phantoms --steps=10,100,300 --methods=$M3,$M1

Smoke test:

    .venv/bin/python scripts/compare_posterior.py --quick
"""

import importlib
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from diffssl_jax.evaluation import posterior as posterior_eval  # noqa: E402
from diffssl_jax.evaluation.priors import load_denoiser  # noqa: E402

# name -> (label, prior, config module, variants, task whose tuned step sizes it uses)
TASKS = {
    "digits_inpaint": ("Digits, 8x8 centre box missing", "digits", "digits_inpaint", "", None),
    "digits_superres": ("Digits, 2x super-resolution", "digits", "digits_superres", "", None),
    "mri4_phantoms": ("MRI 4x, held-out phantoms", "phantoms", "phantoms_mri", "", None),
    "mri8_phantoms": ("MRI 8x, held-out phantoms", "phantoms", "phantoms_mri", "8x", None),
    "mri4_sl": ("MRI 4x, Shepp-Logan", "phantoms", "phantoms_mri", "shepp_logan", "mri4_phantoms"),
    "mri8_sl": (
        "MRI 8x, Shepp-Logan",
        "phantoms",
        "phantoms_mri",
        "8x,shepp_logan",
        "mri8_phantoms",
    ),
}
# name -> (label, posterior method, its options): the `method` group of the problem config.
METHODS = {
    "mmps1": ("MMPS, 1 CG iteration", "mmps", {"cg_maxiter": 1}),
    "mmps3": ("MMPS, 3 CG iterations", "mmps", {"cg_maxiter": 3}),
    "dps": ("DPS", "dps", {}),
    "pigdm": ("PiGDM", "pigdm", {}),
    "tmpd": ("TMPD", "tmpd", {}),
    "diffpir": ("DiffPIR", "diffpir", {}),
    "dps_published": ("DPS as published", "dps_published", {}),
}
COMPARED = tuple(METHODS)  # the page's rows; the entries below only when asked for
# MMPS's CG guard (notes): the residual growth cap `cg_max_residual_growth` (10 in mmps1 and
# mmps3), `none` for the objective test alone, 1 for the guard of docs/methods.md E.6.
for _iterations in (1, 3):
    for _cap in (None, 1.0, 3.0, 100.0):
        _name = f"mmps{_iterations}_" + ("nocap" if _cap is None else f"cap{_cap:g}")
        METHODS[_name] = (
            f"MMPS, {_iterations} CG, residual cap {'none' if _cap is None else f'{_cap:g}'}",
            "mmps",
            {"cg_maxiter": _iterations, "cg_max_residual_growth": _cap},
        )
# Step-size knobs tuned on validation images. PiGDM's `data_var` (deepinv fixes 1) and TMPD's
# `rel_floor` are not step sizes in their papers, but with a learned (imperfect) Jacobian they
# decide whether the guidance stays bounded: at data_var = 1 / rel_floor = 1e-3 both blow up
# from sigma = 80 (a correction of ~1e3-1e4 in the first step; `docs/posterior.md`, notes).
# DPS as published: a step of <= ~2 zeta per step; the grid spans 10 to 1000 steps.
GRIDS = {
    "dps": ("zeta", (1.0, 3.0, 10.0, 30.0, 100.0, 300.0)),
    "dps_published": ("zeta", (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)),
    "pigdm": ("data_var", (1.0, 10.0, 100.0, 1000.0)),
    "tmpd": ("rel_floor", (0.001, 0.01, 0.1, 1.0)),
    "diffpir": ("lambda_", (0.01, 0.1, 1.0, 10.0, 100.0)),
}

flags.DEFINE_string("digits", "runs/ddpm_digits", "Workdir of the digits prior.")
flags.DEFINE_string("phantoms", "runs/ddpm_phantoms", "Workdir of the phantoms prior.")
flags.DEFINE_list("tasks", list(TASKS), "Tasks, in order.")
flags.DEFINE_list("methods", list(COMPARED), f"Methods, in order, of {list(METHODS)}.")
flags.DEFINE_list("steps", ["10", "100", "1000"], "Sampler step counts.")
flags.DEFINE_integer("num_images", 4, "Test images per task.")
flags.DEFINE_integer("num_images_long", 4, "Test images for runs of >= 1000 steps.")
flags.DEFINE_integer("num_validation", 4, "Validation images for tuning (after the test ones).")
flags.DEFINE_list(
    "long_tasks",
    ["digits_inpaint", "digits_superres", "mri4_phantoms"],
    "Tasks run at >= 1000 steps.",
)
flags.DEFINE_bool("quick", False, "Smoke test: 2 and 4 steps, one image, small grids.")
flags.DEFINE_bool("write_only", False, "Only rewrite the page from the cached results.")
flags.DEFINE_string("runs", None, "Cache dir; default runs/compare_posterior (quick: _quick).")
flags.DEFINE_string("out", None, "Markdown page; default docs/posterior.md (quick: under runs).")


def problem_config(task, method, steps, num_images, start, options):
    """The task's `configs/posterior` config for one row: one sample per observation,
    `num_images` images from `start` of the held-out split, `steps` sampler steps, the
    method's `METHODS` options overridden by `options` (a tuned step size)."""
    _, _, module, variants, _ = TASKS[task]
    get_config = importlib.import_module(f"diffssl_jax.configs.posterior.{module}").get_config
    c = get_config(variants)
    c.num_samples = 1
    c.data.num_images, c.data.start = num_images, start
    c.sampling.num_steps = steps
    _, name, method_options = METHODS[method]
    c.method.name = name
    c.method[name].update({**method_options, **options})
    return c


class Rows:
    """Rows of `evaluation.posterior.run_problem`, each run once: their metrics are cached in
    a JSON file (keyed by row), the priors in memory."""

    def __init__(self, path, workdirs):
        self.path, self.workdirs, self.priors = path, workdirs, {}
        self.cache = json.load(open(path)) if os.path.exists(path) else {}

    def prior(self, name):
        if name not in self.priors:
            self.priors[name] = load_denoiser(self.workdirs[name])
        return self.priors[name]

    def run(self, key, task, method, steps, num_images, start, options=()):
        if key in self.cache:
            return self.cache[key]
        c = problem_config(task, method, steps, num_images, start, dict(options))
        denoiser, prior_config = self.prior(TASKS[task][1])
        images = posterior_eval.held_out_images(c.data, prior_config.data.image_shape)
        _, _, metrics = posterior_eval.run_problem(denoiser, images, c)
        metrics.update(num_images=num_images, options=dict(options))
        logging.warning("%s: PSNR %.2f, %.1f s", key, metrics["sample_psnr"], metrics["seconds"])
        self.cache[key] = metrics
        # Merge with what other runs (e.g. a concurrent one on other tasks) wrote meanwhile.
        on_disk = json.load(open(self.path)) if os.path.exists(self.path) else {}
        self.cache = {**on_disk, **self.cache}
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.cache, f, indent=1)
        os.replace(tmp, self.path)
        return metrics


def tune(rows, task, method, grid, steps, num_validation, start):
    """``(best value, {value: validation PSNR})`` over ``grid`` by mean sample PSNR."""
    tuned_on = TASKS[task][4] or task
    if method not in grid:
        return None, {}
    key_name, values = grid[method]
    psnr = {}
    for value in values:
        key = f"tune/{tuned_on}/{method}/{key_name}={value}/{steps}"
        metrics = rows.run(key, tuned_on, method, steps, num_validation, start, {key_name: value})
        psnr[value] = metrics["sample_psnr"] if metrics["all_finite"] else -np.inf
    return max(psnr, key=psnr.get), psnr


def _cell(metrics):
    if metrics is None:
        return "–"
    return f"{metrics['sample_psnr']:.2f} / {metrics['sample_ssim']:.3f}"


def _task_table(task, rows, steps_list, counts):
    label = TASKS[task][0]
    head = " | ".join(
        f"{s} steps ({counts[(task, s)]} img)" if (task, s) in counts else f"{s} steps"
        for s in steps_list
    )
    lines = [f"### {label}", "", f"| method | {head} |", "|---" * (len(steps_list) + 1) + "|"]
    for name, cells in rows:
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def _best_lines(results, tasks, steps_list):
    """Per task and step count: the best MMPS row against the best other method (PSNR)."""
    out = []
    for task in tasks:
        parts = []
        for s in steps_list:
            scored = {
                m: r["sample_psnr"]
                for (t, m, st), r in results.items()
                if (t, st) == (task, s) and m != "observed"
            }
            ours = {m: v for m, v in scored.items() if m.startswith("mmps")}
            others = {m: v for m, v in scored.items() if not m.startswith("mmps")}
            if ours and others:
                m, o = max(ours, key=ours.get), max(others, key=others.get)
                verdict = "wins" if ours[m] > others[o] else "loses"
                parts.append(
                    f"{s} steps: MMPS {verdict}, {METHODS[m][0]} {ours[m]:.2f} dB against "
                    f"{METHODS[o][0]} {others[o]:.2f} dB"
                )
        if parts:
            out.append(f"- {TASKS[task][0]}: " + "; ".join(parts) + ".")
    return out


# The page's notes (hand-written, with the ablation of MMPS's CG guard).
NOTES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compare_posterior_notes.md")


def _label(results, task, method):
    """The method's name with the step size its rows used, e.g. ``DPS (zeta=10.0)``, or
    ``(tuned per step count)`` when the step counts used different values."""
    used = {
        json.dumps(r["options"]) for (t, m, _), r in results.items() if (t, m) == (task, method)
    }
    extra = ", ".join(f"{k}={v}" for k, v in json.loads(min(used, default="{}")).items())
    extra = "tuned per step count" if len(used) > 1 else extra
    return f"{METHODS[method][0]} ({extra})" if extra else METHODS[method][0]


def write_page(path, results, tuning, tasks, methods, steps_list, counts, seconds):
    lines = [
        "# Posterior sampling: MMPS against DPS, PiGDM, TMPD and DiffPIR",
        "",
        "Written by `scripts/compare_posterior.py` (see its docstring for the command).",
        "Each cell: mean over test images of PSNR (dB) / SSIM of ONE posterior sample per",
        "observation against the ground truth (images in [-1, 1], data range 2; SSIM window 7",
        "on 16x16 digits, 11 on 32x32 phantoms). DDPM ancestral sampler, Karras grid",
        "sigma 80 -> 0.002. Observation noise std 0.01 (per real and imaginary part for MRI).",
        "The observation row is `y` itself for inpainting (missing pixels at 0), its nearest",
        "upsampling for super-resolution and the zero-filled inverse FFT for MRI.",
        "Test images are the first images of the held-out split (digits: `test`, never seen by",
        "the prior; phantoms: the `test` split, seed 1; Shepp-Logan: one image observed with",
        "different masks and noise); validation images for tuning are the next ones.",
        "A cell `–` was not run (compute budget; the script resumes from its cache).",
        "",
    ]
    for task in tasks:
        rows = [
            (
                "observation / zero-filled",
                [_cell(results.get((task, "observed", s))) for s in steps_list],
            )
        ]
        rows += [
            (_label(results, task, m), [_cell(results.get((task, m, s))) for s in steps_list])
            for m in methods
        ]
        lines += _task_table(task, rows, steps_list, counts)
    lines += [
        "## MMPS against the best other method (PSNR of one sample)",
        "",
        *_best_lines(results, tasks, steps_list),
        "",
    ]
    with open(NOTES) as f:
        lines += [f.read()]
    lines += ["## Step sizes (tuned on validation images per task and step count, by PSNR)", ""]
    for (task, method, steps), (best, psnr) in sorted(tuning.items()):
        grid = ", ".join(f"{v}: {p:.2f}" for v, p in psnr.items())
        lines.append(
            f"- {TASKS[task][0]}, {METHODS[method][0]}, {steps} steps: `{GRIDS[method][0]}` -> "
            f"{best} ({grid} dB)"
        )
    lines += ["", "## Wall time of one row at 100 steps (s, compilation included, shared CPU)", ""]
    for task in tasks:
        lines.append(
            f"- {TASKS[task][0]}: "
            + ", ".join(
                f"{METHODS[m][0]} {seconds[(task, m)]:.0f}" for m in methods if (task, m) in seconds
            )
        )
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _settings(f):
    if f.quick:
        grids = {m: (k, v[:2]) for m, (k, v) in GRIDS.items()}
        return [2, 4], 1, 1, 1, grids
    steps = [int(s) for s in f.steps]
    return steps, f.num_images, f.num_images_long, f.num_validation, GRIDS


def _row(rows, task, method, steps, num_images, opts):
    key = f"{task}/{method}/{steps}/{num_images}/" + json.dumps(opts, sort_keys=True)
    return rows.run(key, task, method, steps, num_images, 0, opts)


def run_all(rows, f, settings):
    """Per task and step count: tuning on validation images (the images after every test
    image), then the test row; the long (>= 1000 steps) runs last."""
    steps_list, n, n_long, n_val, grids = settings
    short = [(t, s, n) for t in f.tasks for s in steps_list if s < 1000]
    long = [(t, s, n_long) for s in steps_list if s >= 1000 for t in f.tasks if t in f.long_tasks]
    for task, steps, num_images in short + long:
        for method in f.methods:
            options = {}
            if method in grids:
                best, _ = tune(rows, task, method, grids, steps, n_val, max(n, n_long))
                options = {grids[method][0]: best}
            _row(rows, task, method, steps, num_images, options)


def collect(cache, grids=GRIDS):
    """Rows, tuning grids, image counts and 100-step times from the cache's keys.

    Tuning is per (task, method, step count), on the current grid only, and a tuned method's
    row at a step count counts only with the best value at that step count (the cache may
    hold rows of older grids, or tuned at another step count). Several runs of a row
    (different image counts) keep the one with the most images.
    """
    results, tuning, counts, seconds = {}, {}, {}, {}
    for key, m in cache.items():
        parts = key.split("/")
        if parts[0] == "tune":
            _, task, method, setting, steps = parts
            value = float(setting.split("=")[1])
            if method in grids and value in grids[method][1]:
                grid = tuning.setdefault((task, method, int(steps)), {})
                grid[value] = m["sample_psnr"] if m["all_finite"] else -np.inf
    tuning = {k: (max(g, key=g.get), dict(sorted(g.items()))) for k, g in tuning.items()}
    for key, m in cache.items():
        parts = key.split("/")
        if parts[0] == "tune":
            continue
        task, method, steps, num = parts[0], parts[1], int(parts[2]), int(parts[3])
        tuned = tuning.get((TASKS[task][4] or task, method, steps))
        if method in grids and (tuned is None or m["options"] != {grids[method][0]: tuned[0]}):
            continue
        if num < counts.get((task, steps, method), 0):
            continue
        counts[(task, steps, method)] = counts[(task, steps)] = num
        results[(task, method, steps)] = m
        results[(task, "observed", steps)] = {
            "sample_psnr": m["observed_psnr"],
            "sample_ssim": m["observed_ssim"],
        }
        if steps == 100:
            seconds[(task, method)] = m["seconds"]
    return results, tuning, counts, seconds


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    f = flags.FLAGS
    runs = f.runs or ("runs/compare_posterior_quick" if f.quick else "runs/compare_posterior")
    out = f.out or (os.path.join(runs, "posterior.md") if f.quick else "docs/posterior.md")
    settings = _settings(f)
    os.makedirs(runs, exist_ok=True)
    # Identical programs (Shepp-Logan and phantoms rows) compile once across runs.
    jax.config.update("jax_compilation_cache_dir", os.path.join(runs, "jax_cache"))
    workdirs = {"digits": f.digits, "phantoms": f.phantoms}
    unknown = sorted(set(f.methods) - set(METHODS))
    if unknown:
        raise app.UsageError(f"unknown methods {unknown}; valid: {list(METHODS)}")
    rows = Rows(os.path.join(runs, "results.json"), workdirs)
    if not f.write_only:
        run_all(rows, f, settings)
    results, tuning, counts, seconds = collect(rows.cache, settings[-1])
    page_methods = [*COMPARED, *(m for m in f.methods if m not in COMPARED)]
    write_page(out, results, tuning, list(TASKS), page_methods, settings[0], counts, seconds)
    print(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)
