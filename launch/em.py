"""Learns a diffusion prior from corrupted observations by EM (Rozet et al. 2024).

    diffssl-em --config=em/toy --workdir=runs/em_toy
    diffssl-em --config=em/digits:rate50 --workdir=runs/em_digits50
    .venv/bin/python -m launch.em --config=configs/em/mri.py --workdir=runs/em_mri

`--config` is a shipped config's name or a file path (`launch/cli.py`); override keys as
`--config.em.num_laps=2`. The logic lives in `diffssl_jax.em.run_experiment`
(importable, for Colab and tests). The workdir gets `config.json`, `metrics.jsonl` (one line
per lap), `em/lap_XXX/` (each lap's M-step workdir, E-step chunks and kept samples) and
`figures/`. Running the same command again resumes inside the lap where a killed run
stopped; a finished run is not redone, and `--config.em.num_laps` may be raised to extend
it. Every option is checked before the workdir is written. A SIGTERM (a preemption)
checkpoints the M-step's step in flight or finishes the E-step's chunk in flight, marks
nothing unfinished as done and exits with status 75 (EX_TEMPFAIL, `training.preemption`)
and "preempted, rerun to resume": rerun the same command to continue.
"""

import json

from absl import app, flags
from ml_collections import config_flags

from diffssl_jax import em
from diffssl_jax.launch import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "EM config: name or path[:variants].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (resumed if it exists).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.start()
    result = em.run_experiment(_CONFIG.value, _WORKDIR.value)
    last = result["laps"][-1]
    summary = {"laps": len(result["laps"]), "last": last, "clean": result["clean"]}
    print(json.dumps({**summary, "zero_filled": result["zero_filled"]}))


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
