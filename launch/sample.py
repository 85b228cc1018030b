"""Samples from a trained workdir: `diffssl-sample --workdir=DIR --num_samples=64`.

Unconditional: writes `DIR/eval/samples.npz` and `DIR/figures/samples_final.png`
(`diffssl_jax.evaluation.samples.write_samples`); `--sampler` and `--num_steps` override
the workdir's `config.sampling`.

Inverse problems: `--problem=posterior/digits_inpaint` (a shipped problem config's name, see
`configs/posterior/`, or a file path; overridable as `--problem.method.name=dps`) samples
the posterior of held-out images' observations under the workdir's prior and writes
`DIR/eval/posterior_<name>.{npz,json}` (samples, mean, PSNR/SSIM against the ground truth)
and `DIR/figures/posterior_<name>.png` (`diffssl_jax.evaluation.posterior.write_posterior`).
`--prior=gaussian` replaces the trained prior by the Gaussian fitted to the train split of the
problem's dataset (`diffssl_jax.evaluation.priors.gaussian_prior`): DIR is then only where the
files go (`posterior_<name>_gaussian.*`), no checkpoint is read.
From a checkout, `python -m launch.sample` is the same command.

An EM workdir (`launch/em.py`) has no sampler of its own: the command says what it holds
and how to sample a lap's prior in Python. A SIGTERM stops it with exit status 75
(`training.preemption`); rerun to redo it.
"""

from absl import app, flags
from ml_collections import config_flags

from diffssl_jax import storage
from diffssl_jax.evaluation.posterior import write_posterior
from diffssl_jax.evaluation.priors import PRIORS
from diffssl_jax.evaluation.samples import write_samples
from diffssl_jax.launch import cli

flags.DEFINE_string("workdir", None, "A trained workdir (--prior=gaussian: where files go).")
flags.DEFINE_integer("num_samples", 64, "How many images (unconditional sampling).")
flags.DEFINE_integer("seed", 0, "Sampling seed (unconditional sampling).")
flags.DEFINE_string("sampler", None, "Override the sampler.")
flags.DEFINE_integer("num_steps", None, "Override the number of sampler steps.")
config_flags.DEFINE_config_file("problem", None, "Inverse problem config: name or path.")
flags.DEFINE_enum(
    "prior",
    "trained",
    PRIORS,
    "--problem's prior: the workdir's, or a Gaussian fitted to the data.",
)
flags.mark_flags_as_required(["workdir"])


def em_workdir_message(workdir: str) -> str | None:
    """What an EM workdir (or an EM lap's M-step workdir: an `edm` config with an `em` group)
    holds and how to sample its prior; None for any other workdir."""
    path = storage.path(workdir) / "config.json"
    config = storage.read_json(path) if path.exists() else {}
    if config.get("method") != "edm" or "em" not in config:  # EM's prior: methods/edm.py
        return None
    sample_prior = (
        "To sample a lap's prior, in Python: config = diffssl_jax.load_config(TRAIN); "
        "x = diffssl_jax.methods.make_recipe(config).sample(diffssl_jax.load_params(TRAIN), "
        "jax.random.key(0), 64), in network units (times config.em.data_scale for EM units)"
    )
    if (storage.path(workdir) / "em").is_dir():
        return (
            f"{workdir} is an EM workdir (launch.em), not a trained prior: em/lap_XXX/ holds "
            "each lap's posterior samples (samples.npy; diffssl_jax.em.load_lap(workdir, lap)) "
            "and its M-step's training workdir (train/), and figures/ the samples drawn at "
            f"every lap. {sample_prior}, with TRAIN = {workdir}/em/lap_XXX/train (the last lap: "
            "the learned prior)."
        )
    return (
        f"{workdir} is the M-step workdir of an EM lap (launch.em); launch.sample does not "
        f"build EM's prior. {sample_prior}, with TRAIN = {workdir}."
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.start()
    f = flags.FLAGS
    if f.prior != "trained" and f.problem is None:
        raise app.UsageError(f"--prior={f.prior} is a posterior prior: give --problem as well.")
    message = em_workdir_message(f.workdir) if f.prior == "trained" else None
    if message:
        raise app.UsageError(message)
    if f.problem is not None:
        if f.sampler:
            f.problem.sampling.sampler = f.sampler
        if f.num_steps:
            f.problem.sampling.num_steps = f.num_steps
        out = write_posterior(f.workdir, f.problem, prior=f.prior)
        print(f"posterior mean PSNR {out['mean_psnr']:.2f} dB, SSIM {out['mean_ssim']:.3f}")
        print(f"wrote {out['samples']}, {out['metrics']} and {out['figure']}")
        return
    paths = write_samples(
        f.workdir, num_samples=f.num_samples, seed=f.seed, sampler=f.sampler, num_steps=f.num_steps
    )
    print(f"wrote {paths['samples']} and {paths['figure']}")


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
