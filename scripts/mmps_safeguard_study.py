r"""MMPS's CG safeguard on a trained prior: per sigma, how often each safeguard fires, the
Jacobian's asymmetry and indefiniteness, and each safeguard's PSNR (docs/methods.md E.6).

    .venv/bin/python scripts/mmps_safeguard_study.py --workdir=runs/ddpm_digits \
        --problem=configs/posterior/digits_inpaint.py --num_images=8 --start=400 \
        --steps=10,100 --cg_maxiter=1,3 --out=runs/safeguard_study/digits_box.json

A report script: the images are the problem config's held-out split from ``--start`` (the
validation images: ``scripts/compare_posterior.py`` tests on the first ones), observed and
seeded as ``evaluation.posterior.run_problem`` does; each (steps, CG iterations, safeguard)
is one ``posterior.record_trajectory`` (the normal sampler's run, replayed with its MMPS
calls recorded) scored by ``evaluation.posterior.summarize``. The Jacobian estimates
(``posterior.jacobian_stats``, ``--num_probes`` Rademacher probes at every call) are taken
along the first safeguard's trajectory. Prints one table per (steps, CG iterations), with
sigma binned by decade, and writes every per-sigma row to ``--out``.
"""

import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from diffssl_jax import posterior  # noqa: E402
from diffssl_jax.evaluation import posterior as posterior_eval  # noqa: E402
from diffssl_jax.evaluation.priors import load_denoiser  # noqa: E402
from diffssl_jax.posterior.jacobian_diagnostics import rademacher  # noqa: E402
from diffssl_jax.sampling import samplers  # noqa: E402

# name -> MMPS options over the problem config's `method.mmps` group.
SAFEGUARDS = {
    "cap10": {"safeguard": "residual_cap", "cg_max_residual_growth": 10.0},
    "nocap": {"safeguard": "residual_cap", "cg_max_residual_growth": None},
    "tr1": {"safeguard": "trust_region", "trust_radius": 1.0},
    "tr3": {"safeguard": "trust_region", "trust_radius": 3.0},
    "tr10": {"safeguard": "trust_region", "trust_radius": 10.0},
    "sym_cap10": {"symmetrise": True, "cg_max_residual_growth": 10.0},
    "sym_tr3": {"symmetrise": True, "safeguard": "trust_region", "trust_radius": 3.0},
    "none": {"safeguard": "none"},
}

flags.DEFINE_string("workdir", None, "Workdir of the trained prior.")
config_flags.DEFINE_config_file("problem", None, "A configs/posterior problem file.")
flags.DEFINE_integer("num_images", 8, "Validation images.")
flags.DEFINE_integer(
    "start", 400, "First validation image (digits test split: 450 images; phantoms: 256)."
)
flags.DEFINE_list("steps", ["10", "100"], "Sampler step counts.")
flags.DEFINE_list("cg_maxiter", ["1", "3"], "CG iterations.")
flags.DEFINE_list("safeguards", list(SAFEGUARDS), f"Of {list(SAFEGUARDS)}; the first is probed.")
flags.DEFINE_integer("num_probes", 8, "Rademacher probes per MMPS call (0: no Jacobian stats).")
flags.DEFINE_string("out", None, "JSON file for every per-sigma row.")
flags.mark_flags_as_required(["workdir", "problem"])

DECADES = (np.inf, 10.0, 1.0, 0.1, 0.01, 0.0)


def _binned(rows):
    """Call-weighted means of the rows per sigma decade (``min_rayleigh``: the minimum)."""
    out = []
    for hi, lo in zip(DECADES[:-1], DECADES[1:], strict=True):
        inside = [r for r in rows if lo <= r["sigma"] < hi]
        if not inside:
            continue
        weights = np.array([r["calls"] for r in inside], float)
        mean = {k: float(np.average([r[k] for r in inside], weights=weights)) for k in inside[0]}
        if "min_rayleigh" in mean:
            mean["min_rayleigh"] = min(r["min_rayleigh"] for r in inside)
        mean["band"] = f"[{lo:g}, {hi:g})"
        out.append(mean)
    return out


def _table(results, probed):
    names = list(results)
    keys = ["asymmetry", "negative_fraction", "min_rayleigh"]
    head = ["sigma", *(f"fire {n}" for n in names), "pMp<=0", "growth", "corr", *keys]
    lines = [" | ".join(head)]
    binned = {n: _binned(results[n]["rows"]) for n in names}
    for i, band in enumerate(binned[probed]):
        cells = [band["band"], *(f"{binned[n][i]['fire_rate']:.2f}" for n in names)]
        cells += [f"{band['negative_curvature_rate']:.2f}", f"{band['growth_median']:.3g}"]
        cells += [f"{band['correction_median']:.3g}"]
        cells += [f"{band[k]:.3g}" for k in keys if k in band]
        lines.append(" | ".join(cells))
    psnr = ", ".join(f"{n} {results[n]['sample_psnr']:.2f}" for n in names)
    return "\n".join(lines) + f"\nvalidation PSNR of one sample (dB): {psnr}"


def main(argv):
    del argv
    f = flags.FLAGS
    c = f.problem
    c.data.num_images, c.data.start, c.method.name = f.num_images, f.start, "mmps"
    denoiser, prior_config = load_denoiser(f.workdir)
    images = posterior_eval.held_out_images(c.data, prior_config.data.image_shape)
    rng_problem, rng_sample = jax.random.split(jax.random.key(c.seed))  # as run_problem
    problem = posterior_eval.observe_images(images, c, rng_problem)
    observed = posterior.observation_image(problem)
    probes = None
    if f.num_probes:
        probes = rademacher(jax.random.key(c.seed + 1), f.num_probes, tuple(problem.shape))
    report = {}
    for steps in (int(s) for s in f.steps):
        c.sampling.num_steps = steps
        sigmas = samplers.sigmas_from_config(c.sampling)
        for k in (int(i) for i in f.cg_maxiter):
            results = {}
            for j, name in enumerate(f.safeguards):
                options = {**c.method.mmps.to_dict(), **SAFEGUARDS[name], "cg_maxiter": k}
                samples, records = posterior.record_trajectory(
                    posterior.posterior_method("mmps", **options),
                    denoiser,
                    problem,
                    rng=rng_sample,
                    sigmas=sigmas,
                    sampler=c.sampling.sampler,
                    num_per_observation=c.num_samples,
                    probes=probes if j == 0 else None,
                )
                metrics = posterior_eval.summarize(np.asarray(samples), images, observed)
                rows = posterior.summarize_records(records)
                results[name] = {"rows": rows, "sample_psnr": metrics["sample_psnr"]}
                results[name]["all_finite"] = metrics["all_finite"]
            print(f"\n{c.name}: {steps} steps, MMPS-{k}, {len(images)} images from {f.start}")
            print(_table(results, f.safeguards[0]))
            report[f"{steps}/{k}"] = results
    if f.out:
        os.makedirs(os.path.dirname(f.out) or ".", exist_ok=True)
        with open(f.out, "w") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    app.run(main)
