"""Trains any recipe: `diffssl-train --config=<method>/<data>[:variants] --workdir=DIR`.

`--config` is a shipped config's name (`ddpm/digits:tiny`) or a file path; override any key
as `--config.train.num_steps=100`. From a checkout, `python -m launch.train` is the same
command. The logic lives in the library (`diffssl_jax.recipe_inputs.prepare`, then
`diffssl_jax.training.train` with the sample grids of `evaluation.samples.sample_grid_drawer`),
so Colab and tests call the same functions. The recipe's inputs (DiTi's frozen prior, l-DAE's
PCA basis) are prepared once in `DIR/inputs/` and read back on every rerun. Running the
command again on the same workdir resumes; a finished run is not redone. A SIGTERM (a
preemption) checkpoints the step in flight and exits with status 75 (EX_TEMPFAIL,
`training.preemption`) and "preempted, rerun to resume", so that a scheduler does not record
success; rerun the same command to continue. Example:

    diffssl-train --config=ddpm/digits:tiny --workdir=/tmp/ddpm
    .venv/bin/python -m launch.train --config=configs/ddpm/digits.py:tiny --workdir=/tmp/ddpm
"""

from absl import app, flags
from ml_collections import config_flags

from diffssl_jax import methods, recipe_inputs, training
from diffssl_jax.evaluation.samples import sample_grid_drawer
from diffssl_jax.launch import cli

config_flags.DEFINE_config_file("config", None, "Config: name or path[:variants].")
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and figures go (or gs://).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.start()
    config, workdir = flags.FLAGS.config, flags.FLAGS.workdir
    recipe = methods.make_recipe(config, recipe_inputs.prepare(config, workdir))
    training.train(config, workdir, recipe, draw_samples=sample_grid_drawer(config.method))


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
