"""Trains any recipe: `python -m launch.train --config=configs/<method>/<data>.py --workdir=DIR`.

The logic lives in the library (`diffssl_jax.training.train`), so Colab and tests call the
same function. Running the command again on the same workdir resumes; a finished run is
not redone. Example:

    .venv/bin/python -m launch.train --config=configs/ddpm/digits.py:tiny --workdir=/tmp/ddpm
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from diffssl_jax import methods, training  # noqa: E402
from diffssl_jax.training import parallel  # noqa: E402

config_flags.DEFINE_config_file("config", None, "Config file (path[:variants]).", lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and figures go.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:  # orbax logs every file it writes at INFO
        logging.set_verbosity(logging.WARNING)
    parallel.initialize_distributed()
    config = flags.FLAGS.config
    training.train(config, flags.FLAGS.workdir, methods.make_recipe(config))


if __name__ == "__main__":
    app.run(main)
