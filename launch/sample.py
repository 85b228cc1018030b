"""Samples from a trained workdir: `python -m launch.sample --workdir=DIR --num_samples=64`.

Writes `DIR/eval/samples.npz` and `DIR/figures/samples_final.png`. The logic lives in
`diffssl_jax.evaluation.samples.write_samples`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from diffssl_jax.evaluation.samples import write_samples  # noqa: E402

flags.DEFINE_string("workdir", None, "A trained workdir.")
flags.DEFINE_integer("num_samples", 64, "How many images.")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_string("sampler", None, "Override config.sampling.sampler.")
flags.DEFINE_integer("num_steps", None, "Override config.sampling.num_steps.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    paths = write_samples(
        f.workdir, num_samples=f.num_samples, seed=f.seed, sampler=f.sampler, num_steps=f.num_steps
    )
    print(f"wrote {paths['samples']} and {paths['figure']}")


if __name__ == "__main__":
    app.run(main)
