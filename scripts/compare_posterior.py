r"""Compares posterior samplers on natural patches, MRI phantoms and digits; writes
docs/posterior.md.

    P="nice -n 5 .venv/bin/python scripts/compare_posterior.py --patches=runs/ddpm_patches \
        --phantoms=runs/ddpm_phantoms --digits=runs/ddpm_digits"
    $P --tasks=patches_box,patches_pixels,patches_superres --steps=10,100
    $P --tasks=mri4_phantoms,mri8_phantoms --steps=10,100 \
        --methods=mmps,mmps_gaussian,dps_published,dps,pigdm,diffpir
    $P --write_only

(run of 2026-12-07, after training the three priors with `launch.train` and
`configs/ddpm/{patches,phantoms,digits}.py`; TMPD is not run on MRI, see the page's notes;
the tasks ran as separate processes sharing one cache, and the whole took about 90 min on
2 CPU cores shared with other jobs).

A report script: it runs nothing of its own. Each row (a task of `TASKS`: a
`configs/posterior` file and a trained prior; a method of `METHODS`: a posterior method, its
prior and options; a step count; images) is one `evaluation.posterior.run_problem` call,
which draws `--num_samples` posterior samples per observation (DDPM-ancestral steps) and
scores them (`evaluation.posterior.summarize`: PSNR and SSIM with 95 % intervals over
images, the PSNR of the missing pixels for inpainting, and the calibration of the samples'
spread, `evaluation.calibration`). Every method's free settings (`GRIDS`: MMPS's CG
iteration count and safeguard, the baselines' step sizes) are chosen on validation images
only, once per (task, step count), by the mean PSNR of single samples; then the test row
runs with the chosen setting. Validation images: the validation photographs for the
patches (the test photographs are never used for a choice), the images after every test
image of the held-out split for phantoms and digits. Every finished row is cached in
`<runs>/results.json`, so an interrupted run resumes and `--write_only` rewrites the page.

Smoke test:

    .venv/bin/python scripts/compare_posterior.py --quick
"""

import dataclasses
import importlib
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from diffssl_jax.evaluation import calibration  # noqa: E402
from diffssl_jax.evaluation import posterior as posterior_eval  # noqa: E402
from diffssl_jax.evaluation.priors import load_prior  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Task:
    """A `configs/posterior` module with variants, the prior's workdir flag, and where its
    validation images come from: `photos` (the config's validation split; `test` variant for
    the test rows) or `after_test` (the held-out split's images after the test images)."""

    label: str
    prior: str
    module: str
    variants: str
    validation: str = "after_test"


_PATCHES = ("patches", "patches")  # the prior's workdir flag and the config module
TASKS = {
    "patches_box": Task("Natural patches, 8x8 centre box missing", *_PATCHES, "box", "photos"),
    "patches_pixels": Task("Natural patches, 50% of pixels missing", *_PATCHES, "pixels", "photos"),
    "patches_superres": Task(
        "Natural patches, 2x super-resolution with blur", *_PATCHES, "superres", "photos"
    ),
    "mri4_phantoms": Task("MRI 4x, held-out phantoms", "phantoms", "phantoms_mri", ""),
    "mri8_phantoms": Task("MRI 8x, held-out phantoms", "phantoms", "phantoms_mri", "8x"),
    "digits_inpaint": Task("Digits, 8x8 centre box missing", "digits", "digits_inpaint", ""),
    "digits_superres": Task("Digits, 2x super-resolution", "digits", "digits_superres", ""),
}  # fmt: skip
# name -> (label, posterior method, prior: `trained` (the task's workdir) or `gaussian`
# (`evaluation.priors.gaussian_prior`, fitted to the task's training data)).
METHODS = {
    "mmps": ("MMPS", "mmps", "trained"),
    "dps": ("DPS (step scaled by sigma_t^2 - sigma_s^2)", "dps", "trained"),
    "dps_published": ("DPS as published", "dps_published", "trained"),
    "pigdm": ("PiGDM", "pigdm", "trained"),
    "tmpd": ("TMPD", "tmpd", "trained"),
    "diffpir": ("DiffPIR", "diffpir", "trained"),
    "mmps_gaussian": ("MMPS, fitted Gaussian prior", "mmps", "gaussian"),
}
# MMPS's safeguards (docs/posterior_study.md, where `none` is measured too): the residual
# cap of 10, the symmetrised Jacobian with a trust region of radius 3 on the correction.
SAFEGUARDS = (
    {"safeguard": "residual_cap", "cg_max_residual_growth": 10.0},
    {"safeguard": "trust_region", "trust_radius": 3.0, "symmetrise": True},
)


def _grid(key, values):
    return tuple({key: v} for v in values)


# The settings chosen on validation images, per method. PiGDM's `data_var` and TMPD's
# `rel_floor` are not step sizes in their papers, but with a learned Jacobian they decide
# whether the guidance stays bounded, so they are tuned like one. DPS as published takes a
# step of <= ~2 zeta per step; the grid spans 10 to 1000 steps. The Gaussian prior's
# Jacobian is exact and symmetric positive definite: only its CG iteration count is chosen,
# under the residual cap, which never fires on such systems (the trust region could cut an
# exact correction). The grids are
# small for CPU time (each value is one compiled sampler): they span the values chosen on
# validation images in docs/posterior_2026-12-04.md and docs/posterior_study.md.
GRIDS = {
    "mmps": tuple({"cg_maxiter": k, **s} for k in (1, 3) for s in SAFEGUARDS),
    "mmps_gaussian": tuple({"cg_maxiter": k, "safeguard": "residual_cap"} for k in (1, 3)),
    "dps": _grid("zeta", (3.0, 10.0, 30.0, 100.0)),
    "dps_published": _grid("zeta", (0.1, 0.3, 1.0, 3.0)),
    "pigdm": _grid("data_var", (100.0, 1000.0)),
    "tmpd": _grid("rel_floor", (0.1, 1.0)),
    "diffpir": _grid("lambda_", (0.01, 0.1, 1.0)),
}

flags.DEFINE_string("patches", "runs/ddpm_patches", "Workdir of the natural-patch prior.")
flags.DEFINE_string("phantoms", "runs/ddpm_phantoms", "Workdir of the phantoms prior.")
flags.DEFINE_string("digits", "runs/ddpm_digits", "Workdir of the digits prior.")
flags.DEFINE_list("tasks", ["patches_box"], f"Tasks, of {list(TASKS)}.")
flags.DEFINE_list("methods", list(METHODS), f"Methods, of {list(METHODS)}.")
flags.DEFINE_list("steps", ["10", "100"], "Sampler step counts.")
flags.DEFINE_integer("num_images", 32, "Test images per task (steps < 1000).")
flags.DEFINE_integer("num_images_long", 8, "Test images at >= 1000 steps.")
flags.DEFINE_integer("num_samples", 2, "Posterior samples per test observation.")
flags.DEFINE_integer("num_validation", 16, "Validation images for the choices (1 sample each).")
flags.DEFINE_bool("quick", False, "Smoke test: 2 and 4 steps, 2 images, 2 grid values.")
flags.DEFINE_bool("write_only", False, "Only rewrite the page from the cached results.")
flags.DEFINE_string("runs", None, "Cache dir; default runs/compare_posterior (quick: _quick).")
flags.DEFINE_string("out", None, "Markdown page; default docs/posterior.md (quick: under runs).")


def describe(options: dict) -> str:
    """A setting as the page names it: MMPS's as ``CG 3, residual cap 10`` or ``CG 1,
    symmetrised J, trust region 3``; others as ``zeta=10.0``."""
    if "cg_maxiter" not in options:
        return canonical(options)
    parts = [f"CG {options['cg_maxiter']}"]
    parts += ["symmetrised J"] * bool(options.get("symmetrise"))
    safeguard = options.get("safeguard")
    if safeguard == "residual_cap":
        cap = options.get("cg_max_residual_growth", 10.0)  # posterior.mmps's default
        parts.append(f"residual cap {cap:g}" if cap is not None else "no residual cap")
    elif safeguard == "trust_region":
        parts.append(f"trust region {options['trust_radius']:g}")
    elif safeguard is not None:
        parts.append(f"safeguard {safeguard}")
    return ", ".join(parts)


def canonical(options: dict) -> str:
    """``k=v,...`` sorted by key: a cache-key form of a setting (no ``/``)."""
    return ",".join(f"{k}={options[k]}" for k in sorted(options)) or "default"


def problem_config(task, method, steps, images, options, *, validation=False):
    """The task's `configs/posterior` config for one row.

    ``images = (num_images, start, num_samples)``; ``options`` the method's setting. Test rows
    of `photos` tasks read the `test` split; their validation rows the config's default
    (validation) split.
    """
    t = TASKS[task]
    variants = t.variants
    if t.validation == "photos" and not validation:
        variants = ",".join(v for v in (variants, "test") if v)
    get_config = importlib.import_module(f"diffssl_jax.configs.posterior.{t.module}").get_config
    c = get_config(variants)
    c.data.num_images, c.data.start, c.num_samples = images
    c.sampling.num_steps = steps
    name = METHODS[method][1]
    c.method.name = name
    c.method[name].update(options)
    return c


class Rows:
    """Rows of `evaluation.posterior.run_problem`, each run once: their metrics are cached in
    a JSON file (keyed by row), the priors in memory."""

    def __init__(self, path, workdirs):
        self.path, self.workdirs, self.priors = path, workdirs, {}
        self.cache = json.load(open(path)) if os.path.exists(path) else {}

    def prior(self, task, method, dataset):
        key = (TASKS[task].prior, METHODS[method][2])
        if key not in self.priors:
            self.priors[key] = load_prior(key[1], self.workdirs[key[0]], dataset)
        return self.priors[key]

    def run(self, key, task, method, steps, images, options, *, validation=False):
        if key in self.cache:
            return self.cache[key]
        c = problem_config(task, method, steps, images, options, validation=validation)
        denoiser, image_shape, record = self.prior(task, method, c.data.dataset)
        held_out = posterior_eval.held_out_images(c.data, image_shape)
        _, _, metrics = posterior_eval.run_problem(denoiser, held_out, c)
        metrics.update(num_images=images[0], options=options, prior=record, split=c.data.split)
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


def choose(rows, task, method, steps, settings):
    """The setting of ``GRIDS[method]`` with the best validation PSNR (non-finite: -inf)."""
    grid, (n_val, start) = settings["grids"][method], settings["validation"][task]
    psnr = {}
    for options in grid:
        key = f"tune/{task}/{method}/{canonical(options)}/{steps}/{n_val}"
        m = rows.run(key, task, method, steps, (n_val, start, 1), options, validation=True)
        psnr[canonical(options)] = m["sample_psnr"] if m["all_finite"] else -np.inf
    best = max(psnr, key=psnr.get)
    return next(o for o in grid if canonical(o) == best)


def run_all(rows, f, settings):
    """Per task and step count: each method's choice on validation images, then its test row."""
    for task in f.tasks:
        for steps in settings["steps"]:
            n = settings["num_images"] if steps < 1000 else settings["num_images_long"]
            for method in f.methods:
                options = choose(rows, task, method, steps, settings)
                key = f"{task}/{method}/{steps}/{n}x{settings['num_samples']}/{canonical(options)}"
                rows.run(key, task, method, steps, (n, 0, settings["num_samples"]), options)


def collect(cache, grids=GRIDS):
    """``(results, choices)`` from the cache: per (task, method, steps) the test row run with
    the setting of best validation PSNR (the most images if several), and per (task, method,
    steps) ``(best, {setting: validation PSNR})`` over the settings of ``grids`` (rows of
    settings no longer on a grid are ignored), so a rerun chooses as a fresh run would."""
    choices, results = {}, {}
    for key, m in cache.items():
        parts = key.split("/")
        if parts[0] == "tune":
            _, task, method, setting, steps, _ = parts
            if setting not in {canonical(o) for o in grids.get(method, ())}:
                continue
            grid = choices.setdefault((task, method, int(steps)), {})
            grid[setting] = m["sample_psnr"] if m["all_finite"] else -np.inf
    choices = {k: (max(g, key=g.get), g) for k, g in choices.items()}
    for key, m in cache.items():
        parts = key.split("/")
        if parts[0] == "tune":
            continue
        task, method, steps, size, setting = parts[0], parts[1], int(parts[2]), parts[3], parts[4]
        chosen = choices.get((task, method, steps))
        if chosen is None or chosen[0] != setting:
            continue
        old = results.get((task, method, steps))
        if old is None or m["num_images"] > old["num_images"]:
            results[(task, method, steps)] = {**m, "size": size}
    return results, choices


def _pm(metrics, key, digits=2):
    return f"{metrics[key]:.{digits}f} ± {metrics[key + '_ci']:.{digits}f}"


def _row(name, m, inpainting):
    cells = [name, _pm(m, "sample_psnr"), _pm(m, "sample_ssim", 3)]
    if inpainting:
        cells.append(_pm(m, "region_psnr") if "region_psnr" in m else "–")
    if "spread_skill" in m:
        low, high = m["spread_skill_interval"]
        cells += [f"{m['spread_skill']:.2f} [{low:.2f}, {high:.2f}]", f"{m['coverage']:.2f}"]
    else:
        cells += ["–", "–"]
    return "| " + " | ".join(cells) + " |"


def _paired(ours, other):
    """Mean and 95 % half-width of the per-image PSNR difference (same test images)."""
    diff = np.subtract(ours["sample_psnr_per_image"], other["sample_psnr_per_image"])
    return calibration.mean_interval(diff)


def task_tables(results, choices, task, steps_list, methods):
    lines = [f"### {TASKS[task].label}", ""]
    for steps in steps_list:
        rows = [(m, results[(task, m, steps)]) for m in methods if (task, m, steps) in results]
        if not rows:
            continue
        first = rows[0][1]
        inpainting = "region_psnr" in first
        n, k = first["size"].split("x")
        head = ["method (setting chosen on validation)", "PSNR (dB)", "SSIM"]
        head += ["PSNR, missing pixels"] * inpainting
        head += [
            "spread-skill [95 %]",
            f"coverage (ideal {calibration.expected_coverage(int(k)):.2f})",
        ]
        lines += [f"{steps} steps, {n} test images x {k} samples ({first['split']} split):", ""]
        lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        observed = {
            "sample_psnr": first["observed_psnr"], "sample_psnr_ci": float("nan"),
            "sample_ssim": first["observed_ssim"], "sample_ssim_ci": float("nan"),
        }  # fmt: skip
        if inpainting:
            observed.update(region_psnr=first["observed_region_psnr"], region_psnr_ci=float("nan"))
        lines.append(_row("observation / zero-filled", observed, inpainting).replace(" ± nan", ""))
        for method, m in rows:
            setting = describe(m["options"])
            lines.append(_row(f"{METHODS[method][0]} ({setting})", m, inpainting))
        lines.append("")
        if (task, "mmps", steps) in results:
            ours = results[(task, "mmps", steps)]
            for method, m in rows:
                if method != "mmps":
                    mean, half = _paired(ours, m)
                    lines.append(f"- MMPS − {METHODS[method][0]}: {mean:+.2f} ± {half:.2f} dB")
            lines.append("")
    return lines


def choice_lines(choices):
    lines = ["## Settings chosen on validation images (mean PSNR of one sample, dB)", ""]
    for (task, method, steps), (best, grid) in sorted(choices.items()):
        order = [canonical(o) for o in GRIDS[method]]
        grid = {s: grid[s] for s in order if s in grid}
        named = {canonical(o): describe(o) for o in GRIDS[method]}
        values = ", ".join(f"{named[s]}: {p:.2f}" for s, p in grid.items())
        one_knob = len({k for o in GRIDS[method] for k in o}) == 1
        distinct = len({round(v, 2) for v in grid.values()}) > 1
        if one_knob and len(order) > 2 and best in (order[0], order[-1]) and distinct:
            values += "; at the edge of its grid"
        lines.append(
            f"- {TASKS[task].label}, {METHODS[method][0]}, {steps} steps: **{named[best]}** "
            f"({values})"
        )
    return lines + [""]


HEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compare_posterior_notes.md")


def write_page(path, results, choices, methods):
    steps_list = sorted({steps for _, _, steps in results})
    with open(HEADER) as f:
        lines = [f.read()]
    for task in TASKS:
        if any(t == task for t, _, _ in results):
            lines += task_tables(results, choices, task, steps_list, methods)
    lines += choice_lines(choices)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _settings(f):
    steps = [2, 4] if f.quick else [int(s) for s in f.steps]
    n, n_long = (2, 2) if f.quick else (f.num_images, f.num_images_long)
    n_val = 2 if f.quick else f.num_validation
    grids = {m: g[:2] for m, g in GRIDS.items()} if f.quick else GRIDS
    validation = {
        task: (n_val, 0 if t.validation == "photos" else max(n, n_long))
        for task, t in TASKS.items()
    }
    return {
        "steps": steps, "num_images": n, "num_images_long": n_long, "grids": grids,
        "num_samples": f.num_samples, "validation": validation,
    }  # fmt: skip


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    f = flags.FLAGS
    for name, valid in (("tasks", TASKS), ("methods", METHODS)):
        unknown = sorted(set(getattr(f, name)) - set(valid))
        if unknown:
            raise app.UsageError(f"unknown {name} {unknown}; valid: {list(valid)}")
    runs = f.runs or ("runs/compare_posterior_quick" if f.quick else "runs/compare_posterior")
    out = f.out or (os.path.join(runs, "posterior.md") if f.quick else "docs/posterior.md")
    settings = _settings(f)
    os.makedirs(runs, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", os.path.join(runs, "jax_cache"))
    workdirs = {"patches": f.patches, "phantoms": f.phantoms, "digits": f.digits}
    rows = Rows(os.path.join(runs, "results.json"), workdirs)
    if not f.write_only:
        run_all(rows, f, settings)
    results, choices = collect(rows.cache)
    write_page(out, results, choices, list(METHODS))
    print(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)
