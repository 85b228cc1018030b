r"""Evaluates a trained workdir's representation: `diffssl-evaluate --workdir=DIR`.

The evaluations run with the config the workdir was trained with (`DIR/config.json`, loaded
as `--config` through `launch/workdir_config.py` when `--config` is not given); override
any key of it as `--config.eval.probe_seeds=1` (tuples: `--config.eval.feature_blocks=dec_2
--config.eval.feature_blocks=dec_3`). A misspelt key fails before anything runs. An explicit
`--config=<name or path>` evaluates with that config instead.

`--tasks` (default `representation`) picks the evaluations: `representation`: linear probe
and digit segmentation (docs/methods.md F), to `DIR/eval/results.json`
(`evaluation.representation`); `attributes`: attribute probes (digits: class mAP, Pearson r,
MSE; CelebA: mean AP of its 40), per DiTi subset group, to `DIR/eval/attributes.json`
(`evaluation.attributes`); `counterfactuals`: DiTi's strips (DDIM inversion + generation
with interpolated subsets), to `DIR/figures/counterfactuals.png`, and how much of each
measured digit attribute they move (over `--config.eval.counterfactual_pairs` pairs), to
`DIR/eval/counterfactuals.json` (`evaluation.counterfactuals`). A table of the numbers is
printed at the end. From a checkout, `python -m launch.evaluate` is the same command. A
SIGTERM stops it at once with exit status 75 (`training.preemption`); rerun to redo it.
Example (fast):

    diffssl-evaluate --workdir=/tmp/ddpm --config.eval.feature_t=0.1 \
        --config.eval.probe_seeds=1 --config.eval.seg_seeds=1 \
        --config.eval.seg_num_models=2 --seg_max_epochs=2
"""

from absl import app, flags
from ml_collections import config_flags

from diffssl_jax import storage
from diffssl_jax.evaluation import attributes, counterfactuals, representation
from diffssl_jax.launch import cli

TASKS = ("representation", "attributes", "counterfactuals")
flags.DEFINE_string("workdir", None, "A trained workdir (a local path or gs://).")
config_flags.DEFINE_config_file("config", None, "Config; default: the workdir's config.json.")
flags.DEFINE_integer("seg_max_epochs", 100, "Epoch cap of the pixel classifiers.")
flags.DEFINE_string("out", None, "Results JSON; default DIR/eval/results.json.")
flags.DEFINE_list("tasks", ["representation"], ", ".join(TASKS) + ".")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.start()
    f = flags.FLAGS
    if not storage.path(f.workdir).exists():
        raise app.UsageError(f"--workdir={f.workdir} does not exist: train it first")
    unknown = set(f.tasks) - set(TASKS)
    if unknown:
        raise app.UsageError(f"unknown --tasks {sorted(unknown)}")
    config = f.config
    if "representation" in f.tasks:
        results = representation.evaluate_representation(
            f.workdir, config, out_path=f.out, seg_max_epochs=f.seg_max_epochs
        )
        print(f"wrote {results['path']}")
        print(representation.format_results(results))
    if "attributes" in f.tasks:
        results = attributes.evaluate_workdir_attributes(f.workdir, config)
        print(f"wrote {results['path']}")
        print(attributes.format_attribute_results(results["scores"]))
    if "counterfactuals" in f.tasks:
        info = counterfactuals.evaluate_workdir_counterfactuals(f.workdir, config)
        print(f"wrote {info['path']}")
        print(counterfactuals.format_transfer(info["transfer"]["fractions"], info["alphas"]))


def run():
    cli.run(main, config_from_workdir=True)


if __name__ == "__main__":
    run()
