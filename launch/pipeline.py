r"""The MDM pipeline on the digits, end to end: pretrain, linear probe, segmentation, figures.

    diffssl-pipeline --workdir=runs/mdm_digits
    diffssl-pipeline --config=mdm/digits:tiny --workdir=/tmp/m --config.eval.probe_seeds=1
    .venv/bin/python -m launch.pipeline --workdir=runs/mdm_digits

1. Prepares the recipe's inputs (`diffssl_jax.recipe_inputs.prepare`), then pretrains the
   recipe of `--config` (a shipped config's name or a file path; default `mdm/digits`) with
   the one training loop (`diffssl_jax.training.train`; rerunning resumes, a finished run is
   not redone). `--config.eval.*` overrides change the evaluation only:
   the pretraining is the same, and reused, whatever they are.
2. Evaluates its frozen EMA features with `config.eval`: the linear probe (all labels and k
   per class) and the 20-image digit segmentation of docs/methods.md F
   (`evaluation.representation.evaluate_representation`), written to
   `DIR/eval/results.json`.
3. Draws `DIR/figures/segmentation.png` (test digits, label maps, the first seed's
   predictions) and `DIR/figures/restorations.png`: test digits masked at several t (rows:
   masked, restored, pairs per t) for recipes that restore a corruption
   (`evaluation.figures`).
4. Prints the numbers.

A SIGTERM (a preemption) during the pretraining checkpoints its step in flight; anywhere
else it stops at once (evaluations and figures are redone by a rerun). Either way nothing
after the unfinished stage runs, and the program exits with status 75 (EX_TEMPFAIL,
`training.preemption`) and "preempted, rerun to resume": rerun the same command to continue.
"""

import os
import time

from absl import app, flags
from ml_collections import config_flags

from diffssl_jax import methods, recipe_inputs, training
from diffssl_jax.evaluation import digit_tasks, figures, representation
from diffssl_jax.evaluation.samples import sample_grid_drawer
from diffssl_jax.launch import cli
from diffssl_jax.training import workdir_lock

config_flags.DEFINE_config_file("config", cli.resolve_config("mdm/digits"), "Name or path.")
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics, figures and eval/ go.")
flags.DEFINE_integer("seg_max_epochs", 100, "Epoch cap of the pixel classifiers.")
flags.DEFINE_list("restore_t", ["0.25", "0.5", "0.75"], "Mask ratios of the restoration figure.")
flags.mark_flags_as_required(["workdir"])


def training_config(config_flag):
    """The parsed `--config` without its `eval.*` overrides: what the pretraining uses."""
    config = config_flag.parser.parse(config_flag.config_filename)  # the file, no overrides
    overrides = config_flag.override_values.items()
    config.update_from_flattened_dict({k: v for k, v in overrides if not k.startswith("eval.")})
    return config


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.start()
    f, start = flags.FLAGS, time.perf_counter()
    config, workdir = f.config, f.workdir
    with workdir_lock.hold(workdir):  # one writer per workdir, for every stage
        _pipeline(f, config, workdir, start)


def _pipeline(f, config, workdir: str, start: float) -> None:
    """Pretrains (or reuses the pretraining), evaluates, draws the figures, prints."""
    pretraining = training_config(f["config"])
    recipe = methods.make_recipe(config, recipe_inputs.prepare(pretraining, workdir))
    training.train(pretraining, workdir, recipe, draw_samples=sample_grid_drawer(config.method))
    results = representation.evaluate_representation(
        workdir, config, seg_max_epochs=f.seg_max_epochs, num_seg_examples=figures.NUM_FIGURE_DIGITS
    )
    paths = [results["path"]]
    if "segmentation_examples" in results:
        path = os.path.join(workdir, "figures", "segmentation.png")
        classes = digit_tasks.NUM_SEGMENTATION_CLASSES
        paths.append(figures.save_segmentations(results["segmentation_examples"], classes, path))
    path = os.path.join(workdir, "figures", "restorations.png")
    ts = [float(t) for t in f.restore_t]
    paths.append(figures.save_restorations(recipe, config, workdir, ts, path))
    print(f"\n{config.method} on {config.data.name}: {workdir}")
    print("wrote " + ", ".join(p for p in paths if p))
    print(representation.format_results(results))
    print(f"wall time: {time.perf_counter() - start:.0f} s (a finished pretraining is reused)")


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
