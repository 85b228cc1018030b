r"""MMPS's CG residual cap on the phantoms MRI prior: PSNR per cap, method and step count.

    nice -n 5 .venv/bin/python scripts/mmps_guard_ablation.py --phantoms=runs/ddpm_phantoms

Runs MMPS (1 and 3 CG iterations) on 4x MRI of 4 held-out phantoms through
`scripts/compare_posterior.py`'s runner (same problems, seeds and sampler) for each
`cg_max_residual_growth` in `--caps` (`none`: no cap, the objective test alone; 1: the
guard of docs/methods.md E.6, `||b - M v|| <= ||b||`), and prints one line per row: mean PSNR of
one sample and the per-image PSNRs. Rows are cached in `<runs>/guard_ablation.json`.
Results of 2026-12-04 are in docs/posterior.md (notes).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare_posterior  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_list("caps", ["none", "1", "3", "10", "100"], "Residual caps (`none`: no cap).")
flags.DEFINE_list(
    "rows", ["mmps3:10", "mmps1:10", "mmps3:100", "mmps1:100", "mmps1:300"], "method:steps."
)
flags.DEFINE_string("task", "mri4_phantoms", "A task of compare_posterior.TASKS.")
flags.DEFINE_string("ablation_runs", "runs/compare_posterior", "Directory of the cache file.")


def main(argv):
    del argv
    f = flags.FLAGS
    os.makedirs(f.ablation_runs, exist_ok=True)
    runner = compare_posterior.Runner(
        os.path.join(f.ablation_runs, "guard_ablation.json"),
        {"digits": f.digits, "phantoms": f.phantoms},
    )
    for row in f.rows:
        method, steps = row.split(":")
        for cap in f.caps:
            options = {"cg_max_residual_growth": None if cap == "none" else float(cap)}
            key = f"{f.task}/{method}/{steps}/{f.num_images}/cap={cap}"
            m = runner.run(key, f.task, method, int(steps), f.num_images, 0, options)
            per_image = " ".join(f"{p:.1f}" for p in m["mean_psnr_per_image"])
            print(f"{method} {steps} steps, cap {cap}: {m['sample_psnr']:.2f} dB ({per_image})")


if __name__ == "__main__":
    app.run(main)
