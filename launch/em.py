"""Learns a diffusion prior from corrupted observations by EM (Rozet et al. 2024).

    .venv/bin/python -m launch.em --config=configs/em/toy.py --workdir=runs/em_toy
    .venv/bin/python -m launch.em --config=configs/em/digits.py:rate50 --workdir=runs/em_digits50
    .venv/bin/python -m launch.em --config=configs/em/mri.py --workdir=runs/em_mri

The logic lives in `diffssl_jax.em_tasks.run_experiment` (importable, for Colab and tests).
The workdir gets `config.json`, `metrics.jsonl` (one line per lap), `em/lap_XXX/` (each
lap's M-step workdir, E-step chunks and kept samples) and `figures/`. Running the same
command again resumes inside the lap where a killed run stopped; a finished run is not redone.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from diffssl_jax import em_tasks  # noqa: E402
from diffssl_jax.training import parallel  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "EM config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (resumed if it exists).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    jax.config.update("jax_threefry_partitionable", True)
    parallel.initialize_distributed()
    result = em_tasks.run_experiment(_CONFIG.value, _WORKDIR.value)
    last = result["laps"][-1]
    summary = {"laps": len(result["laps"]), "last": last, "clean": result["clean"]}
    print(json.dumps({**summary, "zero_filled": result["zero_filled"]}))


if __name__ == "__main__":
    app.run(main)
