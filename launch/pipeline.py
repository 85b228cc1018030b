r"""The MDM pipeline on the digits, end to end: pretrain, linear probe, segmentation, figures.

    .venv/bin/python -m launch.pipeline --workdir=runs/mdm_digits
    .venv/bin/python -m launch.pipeline --config=configs/mdm/digits.py:tiny --workdir=/tmp/m

1. Pretrains the recipe of `--config` (default `configs/mdm/digits.py`) with the one
   training loop (`diffssl_jax.training.train`; rerunning resumes, a finished run is not
   redone).
2. Evaluates its frozen EMA features with the workdir's `config.eval`: the linear probe
   (all labels and k per class) and the 20-image digit segmentation of docs/methods.md F
   (`evaluation.representation.evaluate_representation`), written to
   `DIR/eval/results.json`.
3. Draws `DIR/figures/segmentation.png` (test digits, label maps, the first seed's
   predictions) and `DIR/figures/restorations.png`: test digits masked at several t (rows:
   masked, restored, pairs per t) for recipes that restore a corruption
   (`evaluation.figures`).
4. Prints the numbers.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from diffssl_jax import methods, training  # noqa: E402
from diffssl_jax.evaluation import digit_tasks, figures, representation  # noqa: E402
from diffssl_jax.training import parallel  # noqa: E402

DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "mdm", "digits.py")
config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "Config (path[:variants]).")
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics, figures and eval/ go.")
flags.DEFINE_multi_string("set", [], "Override any config.eval key: --set=probe_seeds=1.")
flags.DEFINE_integer("seg_max_epochs", 100, "Epoch cap of the pixel classifiers.")
flags.DEFINE_list("restore_t", ["0.25", "0.5", "0.75"], "Mask ratios of the restoration figure.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:  # orbax logs every file it touches at INFO
        logging.set_verbosity(logging.ERROR)
    parallel.initialize_distributed()
    f, start = flags.FLAGS, time.perf_counter()
    config, workdir = f.config, f.workdir
    eval_config = representation.apply_eval_overrides(config, f.set)  # fails before training
    recipe = methods.make_recipe(config)
    training.train(config, workdir, recipe)
    results = representation.evaluate_representation(
        workdir,
        eval_config,
        seg_max_epochs=f.seg_max_epochs,
        num_seg_examples=figures.NUM_FIGURE_DIGITS,
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


if __name__ == "__main__":
    app.run(main)
