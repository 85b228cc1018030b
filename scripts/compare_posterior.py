r"""Compares posterior samplers on digit and MRI inverse problems; writes docs/posterior.md.

    nice -n 10 .venv/bin/python scripts/compare_posterior.py \
        --digits=runs/ddpm_digits --phantoms=runs/ddpm_phantoms

For each task of `TASKS` (a `configs/posterior` file and a trained prior) and each method of
`METHODS`, draws one posterior sample per held-out observation with
`evaluation.posterior.run_problem` at 10, 100 and 1000 DDPM-ancestral steps, and reports the
mean PSNR and SSIM against the ground truth, with the observation itself (zero-filled for
MRI) as a baseline. Step sizes of DPS (`zeta`), PiGDM (`data_var`), TMPD (`rel_floor`) and
DiffPIR (`lambda_`) are tuned first on a small grid, on validation images disjoint from the
test images (the next images of the same held-out split), at 100 steps, by PSNR;
Shepp-Logan tasks reuse the values tuned on phantoms. Every finished row is cached in
`<runs>/results.json`, so an interrupted run resumes and `--write_only` rewrites the page
from the cache. docs/posterior.md (run of 2026-12-04), after training both priors
(`launch.train` with `configs/ddpm/digits.py` and `configs/ddpm/phantoms.py`):

    P="nice -n 10 .venv/bin/python scripts/compare_posterior.py --num_validation=2"
    $P --tasks=mri4_phantoms,mri8_phantoms,mri4_sl,mri8_sl --steps=10,100 \
        --methods=mmps1,mmps3,dps,pigdm,diffpir
    $P --tasks=mri4_phantoms --long_tasks=mri4_phantoms --steps=1000 --num_images_long=1 \
        --methods=mmps1,mmps3,dps,pigdm,diffpir
    $P --tasks=digits_inpaint,digits_superres --steps=10,100
    $P --tasks=digits_inpaint,digits_superres --long_tasks=digits_inpaint,digits_superres \
        --steps=1000 --num_images_long=1
    $P --write_only

(TMPD is not run on MRI, see the notes.)

Smoke test:

    .venv/bin/python scripts/compare_posterior.py --quick
"""

import importlib
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from diffssl_jax.evaluation import inverse_problems as ip  # noqa: E402
from diffssl_jax.evaluation.posterior import summarize  # noqa: E402
from diffssl_jax.sampling import samplers  # noqa: E402

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
METHODS = {
    "mmps1": ("MMPS, 1 CG iteration", {"name": "mmps", "cg_maxiter": 1}),
    "mmps3": ("MMPS, 3 CG iterations", {"name": "mmps", "cg_maxiter": 3}),
    "dps": ("DPS", {"name": "dps"}),
    "pigdm": ("PiGDM", {"name": "pigdm"}),
    "tmpd": ("TMPD", {"name": "tmpd"}),
    "diffpir": ("DiffPIR", {"name": "diffpir"}),
}
# Step-size knobs tuned on validation images. PiGDM's `data_var` (deepinv fixes 1) and TMPD's
# `rel_floor` are not step sizes in their papers, but with a learned (imperfect) Jacobian they
# decide whether the guidance stays bounded: at data_var = 1 / rel_floor = 1e-3 both blow up
# from sigma = 80 (a correction of ~1e3-1e4 in the first step; `docs/posterior.md`, notes).
GRIDS = {
    "dps": ("zeta", (1.0, 3.0, 10.0, 30.0, 100.0, 300.0)),
    "pigdm": ("data_var", (1.0, 10.0, 100.0, 1000.0)),
    "tmpd": ("rel_floor", (0.001, 0.01, 0.1, 1.0)),
    "diffpir": ("lambda_", (0.01, 0.1, 1.0, 10.0, 100.0)),
}

flags.DEFINE_string("digits", "runs/ddpm_digits", "Workdir of the digits prior.")
flags.DEFINE_string("phantoms", "runs/ddpm_phantoms", "Workdir of the phantoms prior.")
flags.DEFINE_list("tasks", list(TASKS), "Tasks, in order.")
flags.DEFINE_list("methods", list(METHODS), "Methods, in order.")
flags.DEFINE_list("steps", ["10", "100", "1000"], "Sampler step counts.")
flags.DEFINE_integer("num_images", 4, "Test images per task.")
flags.DEFINE_integer("num_images_long", 4, "Test images for runs of >= 1000 steps.")
flags.DEFINE_integer("num_validation", 4, "Validation images for tuning (after the test ones).")
flags.DEFINE_list(
    "long_tasks",
    ["digits_inpaint", "digits_superres", "mri4_phantoms"],
    "Tasks run at >= 1000 steps.",
)
flags.DEFINE_integer("tune_steps", 100, "Steps of the tuning runs.")
flags.DEFINE_bool("quick", False, "Smoke test: 2 and 4 steps, one image, small grids.")
flags.DEFINE_bool("write_only", False, "Only rewrite the page from the cached results.")
flags.DEFINE_string("runs", None, "Cache dir; default runs/compare_posterior (quick: _quick).")
flags.DEFINE_string("out", None, "Markdown page; default docs/posterior.md (quick: under runs).")


def _problem_config(task, method, steps, num_images, start, options):
    _, _, module, variants, _ = TASKS[task]
    get_config = importlib.import_module(f"diffssl_jax.configs.posterior.{module}").get_config
    c = get_config(variants)
    c.num_samples = 1
    c.data.num_images, c.data.start = num_images, start
    c.sampling.num_steps = steps
    c.method.update({**METHODS[method][1], **options})
    return c


def make_step(make_posterior):
    """One jitted DDPM-ancestral step ``sigma_t -> sigma_s`` for a batch of observations.

    ``samplers.ddpm_ancestral`` over the two-level grid ``[sigma_t, sigma_s]``: the same
    update as the scanned sampler, but one compiled program serves every step count (a
    scanned sampler compiles once per length, which dominated the cost on a shared CPU).
    """

    def step(denoiser, operators, ys, noise_var, keys, x, sigma_pair):
        def one(A, y, key, xi):
            posterior_denoiser = make_posterior(denoiser, A, y, noise_var)
            return samplers.ddpm_ancestral(posterior_denoiser, key, xi, sigma_pair)

        return jax.vmap(one)(operators, ys, keys, x)

    return jax.jit(step)


def sample_stepwise(step, denoiser, problem, rng, shape, sigmas):
    """``[N, 1, *shape]`` samples: ``x_T = sigmas[0] z``, then ``step`` per pair of levels."""
    n = problem.ys.shape[0]
    rng_init, rng_steps = jax.random.split(rng)
    x = sigmas[0] * jax.random.normal(rng_init, (n, *shape), sigmas.dtype)
    noise_var = jnp.asarray(problem.noise_var, jnp.float32)
    for i in range(len(sigmas) - 1):
        keys = jax.random.split(jax.random.fold_in(rng_steps, i), n)
        x = step(denoiser, problem.operators, problem.ys, noise_var, keys, x, sigmas[i : i + 2])
    return np.asarray(x)[:, None]


class Runner:
    """Runs rows once, caching their metrics in a JSON file and compiled steps in memory."""

    def __init__(self, path, workdirs):
        self.path, self.workdirs, self.priors, self.steps = path, workdirs, {}, {}
        self.cache = json.load(open(path)) if os.path.exists(path) else {}

    def prior(self, name):
        if name not in self.priors:
            self.priors[name] = ip.load_denoiser(self.workdirs[name])
        return self.priors[name]

    def run(self, key, task, method, steps, num_images, start, options=()):
        if key in self.cache:
            return self.cache[key]
        c = _problem_config(task, method, steps, num_images, start, dict(options))
        denoiser, prior_config = self.prior(TASKS[task][1])
        size = prior_config.data.image_shape[0]
        images = ip.load_images(c.data.dataset, c.data.split, num_images, start, size)
        rng_problem, rng_sample = jax.random.split(jax.random.key(c.seed))
        problem = ip.make_problem(rng_problem, images, noise_std=c.noise_std, **c.operator)
        opts = dict(c.method)
        make_posterior = ip.make_posterior_factory(opts.pop("name"), **opts)
        ip.check_problem(make_posterior, denoiser, problem, images.shape[1:])
        program = (TASKS[task][1], c.operator.kind, json.dumps(c.method.to_dict(), sort_keys=True))
        if program not in self.steps:
            self.steps[program] = make_step(make_posterior)
        sigmas = samplers.sigma_grid(
            c.sampling.grid, steps, c.sampling.sigma_min, c.sampling.sigma_max
        )
        start_time = time.perf_counter()
        samples = sample_stepwise(
            self.steps[program], denoiser, problem, rng_sample, images.shape[1:], sigmas
        )
        metrics = summarize(samples, images, problem.observed)
        metrics.update(seconds=time.perf_counter() - start_time, num_images=num_images)
        metrics["options"] = dict(options)
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


def tune(runner, task, method, grid, steps, num_validation, start):
    """``(best value, {value: validation PSNR})`` over ``grid`` by mean sample PSNR."""
    tuned_on = TASKS[task][4] or task
    if method not in grid:
        return None, {}
    key_name, values = grid[method]
    psnr = {}
    for value in values:
        key = f"tune/{tuned_on}/{method}/{key_name}={value}/{steps}"
        metrics = runner.run(key, tuned_on, method, steps, num_validation, start, {key_name: value})
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


NOTES = """## Notes

- Compute: 2 CPU cores shared with one or two other jobs. Rows of 100 steps took 1-80 s
  of wall time (table below), one MMPS row of 1000 steps a few minutes per image, so the
  1000-step column was run on one image and only where listed; image counts are in the
  column headers. Treat differences of a dB or two on 2-4 images as noise.
- The 16x16 digits are bilinear upsamplings of scikit-learn's 8x8 originals, so 2x
  super-resolution is almost a well-posed problem here: a method that enforces the data
  exactly (DiffPIR's proximal step) can score far above what it would on natural images.
- DPS moves a VE step by ``zeta (sigma_t^2 - sigma_s^2)`` times the normalised gradient
  (`posterior.DPSDenoiser`): with 10 steps the first steps are huge and the samples
  saturate (about 4 dB); its step size was tuned at 100 steps.
- PiGDM with deepinv's data variance 1 diverges on digit inpainting (NaN) and on MRI (tuned
  there: 100; on 2x super-resolution 1 is best): with a learned Jacobian its first-step
  correction at sigma = 80 is about 1.9e3 on the digits U-Net (about 2 at data_var = 1000);
  its `data_var` is tuned like a step size.
- TMPD replaces A J A^T by its row sums (docs/methods.md E.3). A floor of 1e-3 on them gives a
  correction of about 1e4 and 11-13 dB on digit inpainting; 0.01-1 work. On MRI it fails
  at every floor: for real images under the realified Fourier operator, 88% of the
  imaginary row sums of A A^T are exactly 0 (checked with J = I), so the approximation
  is degenerate there; TMPD is not run on MRI (cells `–`).
- Shepp-Logan tasks reuse the step sizes tuned on the held-out phantoms at the same
  acceleration (one image observed with different masks and noise).
- A tuned value at the edge of its grid (listed below) means the optimum may lie beyond.
- MMPS's CG guard (`posterior/cg.py`), changed 2026-12-04. The guard of docs/methods.md E.6
  fell back to `v = 0` whenever CG's residual ended above `||b||`; CG minimises the error
  in the M-norm, and its residual 2-norm may grow even on an SPD system, so on the
  phantoms prior every correction for sigma in [0.2, 10) was zeroed at 300 steps and MMPS
  got worse with more steps (4x, test image 0, MMPS-1: 32.6 dB at 100 steps, 20.6 at 300,
  18.5 at 1000). Now CG keeps its last iterate if it did not break down, lowers CG's
  objective `phi(v) = v^T M v / 2 - b^T v` below `phi(0)`, and its residual is at most 10
  `||b||` (`cg_max_residual_growth`); else the smallest-residual iterate. Without the cap
  one 10-step MMPS-3 sample exploded (5 dB). Ablation on 4x phantoms (4 test images, PSNR
  of one sample; `scripts/mmps_guard_ablation.py`):

  | residual growth cap | MMPS-3, 10 | MMPS-1, 10 | MMPS-3, 100 | MMPS-1, 100 | MMPS-1, 300 |
  |---|---|---|---|---|---|
  | none (objective test only) | 20.33 | 25.84 | 30.85 | 29.69 | 30.60 |
  | 1 (docs/methods.md E.6) | 26.49 | 23.44 | 28.34 | 27.20 | 24.80 |
  | 3 | 24.37 | 25.97 | 30.59 | 29.69 | 30.60 |
  | 10 (default) | 25.23 | 25.84 | 31.04 | 29.69 | 30.59 |
  | 100 | 20.33 | 25.84 | 30.85 | 29.69 | 30.60 |

  With an untrained MLP or an indefinite linear denoiser, samples stay at the unguided
  scale with any cap and with none (tests/posterior/test_mmps.py); keeping CG's last
  iterate without the objective test gave 2e2-3e99 times that scale at maxiter 5 and 20.
  The digits EM of docs/em.md, re-run under the cap of 10 (2026-12-04), gains 0.07-0.26 dB
  of posterior PSNR per lap over the old guard's runs.
  The cap is a compromise, not a solution: on 8x phantoms at 1000 steps (the one test
  image of that column) MMPS-3 gives 25.51 dB without a cap, 16.15 with 10, 15.29 with 3
  and 14.12 with 1 (`scripts/mmps_guard_ablation.py --task=mri8_phantoms
  --rows=mmps3:1000 --caps=none,1,3,10 --num_images=1`), while without a cap a 10-step
  sample at 4x exploded. Valid steps of large residual growth matter at many small steps;
  a rule that tells them from harmful ones (e.g. from the Rayleigh quotients CG already
  computes) is open.
"""


def _label(results, task, method):
    """The method's name with the step size its rows used, e.g. ``DPS (zeta=10.0)``."""
    options = next(
        (r["options"] for (t, m, _), r in results.items() if (t, m) == (task, method)), {}
    )
    extra = ", ".join(f"{k}={v}" for k, v in options.items())
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
    lines += [NOTES]
    lines += ["## Step sizes (tuned on validation images, 100 steps, by PSNR)", ""]
    for (task, method), (best, psnr) in tuning.items():
        grid = ", ".join(f"{v}: {p:.2f}" for v, p in psnr.items())
        lines.append(
            f"- {TASKS[task][0]}, {METHODS[method][0]} `{GRIDS[method][0]}` -> {best} ({grid} dB)"
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
        return [2, 4], 1, 1, 1, 4, grids
    steps = [int(s) for s in f.steps]
    return steps, f.num_images, f.num_images_long, f.num_validation, f.tune_steps, GRIDS


def _row(runner, task, method, steps, num_images, opts):
    key = f"{task}/{method}/{steps}/{num_images}/" + json.dumps(opts, sort_keys=True)
    return runner.run(key, task, method, steps, num_images, 0, opts)


def run_all(runner, f, settings):
    """Task by task: tuning, then the short runs; the long (>= 1000 steps) runs last."""
    steps_list, n, n_long, n_val, tune_steps, grids = settings
    options = {}
    for task in f.tasks:
        for method in f.methods:
            if method in grids:
                best, _ = tune(runner, task, method, grids, tune_steps, n_val, n)
                options[(task, method)] = {grids[method][0]: best}
        for steps in (s for s in steps_list if s < 1000):
            for method in f.methods:
                _row(runner, task, method, steps, n, options.get((task, method), {}))
    for steps in (s for s in steps_list if s >= 1000):
        for task in (t for t in f.tasks if t in f.long_tasks):
            for method in f.methods:
                _row(runner, task, method, steps, n_long, options.get((task, method), {}))


def collect(cache, grids=GRIDS, tune_steps=100):
    """Rows, tuning grids, image counts and 100-step times from the cache's keys.

    Only tuning runs on the current grid at `tune_steps` count, and a tuned method's rows
    count only with its best value (the cache may hold rows of older grids). Several runs of a row
    (different image counts) keep the one with the most images.
    """
    results, tuning, counts, seconds = {}, {}, {}, {}
    for key, m in cache.items():
        parts = key.split("/")
        if parts[0] == "tune":
            _, task, method, setting, steps = parts
            value = float(setting.split("=")[1])
            if int(steps) == tune_steps and method in grids and value in grids[method][1]:
                grid = tuning.setdefault((task, method), {})
                grid[value] = m["sample_psnr"] if m["all_finite"] else -np.inf
    tuning = {k: (max(g, key=g.get), dict(sorted(g.items()))) for k, g in tuning.items()}
    for key, m in cache.items():
        parts = key.split("/")
        if parts[0] == "tune":
            continue
        task, method, steps, num = parts[0], parts[1], int(parts[2]), int(parts[3])
        tuned_on = TASKS[task][4] or task
        if method in grids and (tuned_on, method) in tuning:
            if m["options"] != {grids[method][0]: tuning[(tuned_on, method)][0]}:
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
    runner = Runner(os.path.join(runs, "results.json"), workdirs)
    if not f.write_only:
        run_all(runner, f, settings)
    results, tuning, counts, seconds = collect(runner.cache, settings[5], settings[4])
    write_page(out, results, tuning, list(TASKS), list(METHODS), settings[0], counts, seconds)
    print(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)
