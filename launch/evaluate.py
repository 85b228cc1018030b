r"""Evaluates a trained workdir's representation: `python -m launch.evaluate --workdir=DIR`.

`--tasks` (default `representation`) picks the evaluations, all with the workdir's
`config.eval`: `representation`: linear probe and digit segmentation (docs/methods.md F), to
`DIR/eval/results.json` (`evaluation.representation`); `attributes`: attribute probes
(digits: class mAP, Pearson r, MSE; CelebA: mean AP of its 40), per DiTi subset group, to
`DIR/eval/attributes.json` (`evaluation.attributes`); `counterfactuals`: DiTi's strips
(DDIM inversion + generation with interpolated subsets), to `DIR/figures/counterfactuals.png`,
and how much of each measured digit attribute they move (over `--set=counterfactual_pairs=N`
pairs), to `DIR/eval/counterfactuals.json` (`evaluation.counterfactuals`). A table of the
numbers is printed at the end. Example (fast):

    .venv/bin/python -m launch.evaluate --workdir=/tmp/ddpm --t=0.1 \
        --set=probe_seeds=1 --set=seg_seeds=1 --set=seg_num_models=2 --seg_max_epochs=2
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

from diffssl_jax import load_config  # noqa: E402
from diffssl_jax.evaluation import attributes, counterfactuals, representation  # noqa: E402
from diffssl_jax.training import parallel  # noqa: E402

flags.DEFINE_string("workdir", None, "A trained workdir.")
flags.DEFINE_float("t", None, "Override config.eval.feature_t (diffusion time in [0, 1]).")
flags.DEFINE_list("blocks", None, "Override config.eval.feature_blocks, e.g. dec_2,dec_3.")
flags.DEFINE_bool("segmentation", None, "Override config.eval.segmentation.")
flags.DEFINE_multi_string("set", [], "Override any config.eval key: --set=probe_seeds=1.")
flags.DEFINE_integer("seg_max_epochs", 100, "Epoch cap of the pixel classifiers.")
flags.DEFINE_string("out", None, "Results JSON; default DIR/eval/results.json.")
flags.DEFINE_list("tasks", ["representation"], "representation, attributes, counterfactuals.")
flags.mark_flags_as_required(["workdir"])


def _overrides(f) -> list[str]:
    items = list(f.set)
    if f.t is not None:
        items.append(f"feature_t={f.t!r}")
    if f.blocks is not None:
        items.append(f"feature_blocks={tuple(f.blocks)!r}")
    if f.segmentation is not None:
        items.append(f"segmentation={f.segmentation}")
    return items


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:  # orbax logs every file it reads at INFO
        logging.set_verbosity(logging.ERROR)
    parallel.initialize_distributed()
    f = flags.FLAGS
    if not os.path.isdir(f.workdir):
        raise app.UsageError(f"--workdir={f.workdir} does not exist: train it first")
    unknown = set(f.tasks) - {"representation", "attributes", "counterfactuals"}
    if unknown:
        raise app.UsageError(f"unknown --tasks {sorted(unknown)}")
    config = representation.apply_eval_overrides(load_config(f.workdir), _overrides(f))
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


if __name__ == "__main__":
    app.run(main)
