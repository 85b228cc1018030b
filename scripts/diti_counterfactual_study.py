r"""DiTi's counterfactual study on the digits (docs/diti.md): the reconstruction check and the
attribute transfer with slerp of x_T, over training seeds.

    nice -n 10 .venv/bin/python scripts/diti_counterfactual_study.py \
        --workdirs=runs/study/diti/diti_s0,runs/study/diti/diti_s1,runs/study/diti/diti_s2 \
        --all_checkpoints=runs/study/diti/diti_s0 --figure=docs/figures/diti_reconstructions.png \
        --controls=runs/study/diti/pdae_s0,runs/study/diti/pdae_s1,runs/study/diti/pdae_s2

For each workdir (one per training seed):

* reconstruction check (`evaluation.counterfactuals.reconstruction_psnrs`): PSNR of the
  guided DDIM round trip (inversion and generation guided by the image's own z) and of the
  frozen prior alone (G = 0), on the first `--images` test digits, `--ddim_steps` steps, at
  the latest checkpoint (and at every saved checkpoint of the workdirs in
  `--all_checkpoints`); mean and 95 % Student-t interval over images
  (`calibration.mean_interval`), also of the paired difference guided - prior;
* attribute transfer (`evaluate_workdir_counterfactuals`: x_T = slerp(x_T1, x_T2, alpha),
  `--pairs` test pairs, weights `config.eval.counterfactual_alphas`) of the subset groups
  of `config.eval.subset_groups` and all of z, at the latest checkpoint: the fraction f of
  each measured attribute's change at the last weight;
* controls (`--controls`, e.g. PDAE workdirs, k = 1): the same transfer, swapping the dims
  of the first DiTi workdir's groups (which mean nothing special there);
* with `--figure=PATH`, the first 8 test digits with their prior-alone and guided round
  trips (first workdir, latest checkpoint; `figures.reconstruction_figure`).

Results are cached in each workdir (`eval/study_reconstruction_step{S}_{N}x{K}.json`,
`eval/study_transfer_step{S}_{P}x{K}.json`, keyed by checkpoint step and settings), so a
rerun redoes nothing finished. Prints markdown tables: reconstruction per workdir and
checkpoint; transfer f at the last weight, mean ± sample std (ddof 1) over the workdirs,
then per workdir.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from diffssl_jax import load_config, plotting, recipe_inputs, storage  # noqa: E402
from diffssl_jax.data import DigitsSource  # noqa: E402
from diffssl_jax.evaluation import counterfactuals as cf  # noqa: E402
from diffssl_jax.evaluation import figures, image_metrics  # noqa: E402
from diffssl_jax.evaluation.calibration import mean_interval  # noqa: E402
from diffssl_jax.methods import diti  # noqa: E402
from diffssl_jax.training.checkpoint import load_params  # noqa: E402

flags.DEFINE_list("workdirs", [], "DiTi workdirs, one per training seed.")
flags.DEFINE_list("all_checkpoints", [], "Workdirs whose every saved checkpoint is checked.")
flags.DEFINE_list("controls", [], "Workdirs (PDAE) whose transfer swaps the first DiTi's dims.")
flags.DEFINE_integer("images", 64, "Test digits of the reconstruction check (the first N).")
flags.DEFINE_integer("pairs", 40, "Test pairs of the attribute transfer (`pick_pairs`).")
flags.DEFINE_integer("ddim_steps", 50, "DDIM steps of each direction.")
flags.DEFINE_string("results_json", "", "Optional JSON of every number printed.")
flags.DEFINE_string("figure", "", "Optional PNG: the first 8 test digits' round trips (workdir 1).")


def checkpoint_steps(workdir: str) -> list[int]:
    """The finalised checkpoint steps of a workdir, increasing (orbax names them by step)."""
    directory = storage.path(workdir) / "checkpoints"
    steps = sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())
    if not steps:
        raise ValueError(f"no finalised checkpoint in {directory}: train {workdir} first")
    return steps


def _cached(path, compute) -> dict:
    """The JSON at `path`, or `compute()` written there first (atomic rename)."""
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    result = compute()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(f"{path}.tmp", "w") as f:
        json.dump(result, f, indent=2)
    os.replace(f"{path}.tmp", path)
    return result


def _model_params_and_digits(workdir: str, step: int | None, num_images: int):
    """A DiTi workdir's model, its EMA parameters at `step` (None: latest) and the first
    `num_images` test digits."""
    config = load_config(workdir)
    if config.method != "diti":
        raise ValueError(f"{workdir} is not a DiTi workdir (method {config.method!r})")
    images = DigitsSource("test", image_size=config.data.image_size or 16).images
    if num_images > len(images):
        raise ValueError(f"--images={num_images} > {len(images)} test digits")
    model = diti.make_model(config, recipe_inputs.load(workdir, config)["prior"])
    params = jax.device_put(load_params(workdir, step=step, which="ema"))
    return model, params, images[:num_images]


def reconstruction(workdir: str, step: int, num_images: int, ddim_steps: int) -> dict:
    """Per-image guided and prior-alone PSNRs at checkpoint `step` (cached in the workdir)."""
    path = os.path.join(
        workdir, "eval", f"study_reconstruction_step{step}_{num_images}x{ddim_steps}.json"
    )

    def compute():
        model, params, images = _model_params_and_digits(workdir, step, num_images)
        psnrs = cf.reconstruction_psnrs(model, params, images, ddim_steps)
        return {"step": step, **{k: [float(v) for v in p] for k, p in psnrs.items()}}

    return _cached(path, compute)


def draw_reconstructions(workdir: str, path: str, ddim_steps: int, num_images: int = 8) -> str:
    """`figures.reconstruction_figure` of the first `num_images` test digits: prior alone and
    guided round trips at the latest checkpoint, written to `path`."""
    model, params, images = _model_params_and_digits(workdir, None, num_images)
    recon = cf.reconstructions(model, params, images, ddim_steps)
    psnrs = {k: np.asarray(image_metrics.psnr(v, images)) for k, v in recon.items()}
    return plotting.save_figure(figures.reconstruction_figure(images, recon, psnrs), path)


def diti_group_dims(workdir: str) -> dict[str, np.ndarray]:
    """`{group: dims}` of a DiTi workdir's `config.eval.subset_groups` (its partition), then
    "all" of z: the dims a control workdir swaps."""
    config = load_config(workdir)
    recipe = recipe_inputs.load_recipe(workdir, config)
    return cf.group_dims(recipe, config, config.model.latent_dim)


def transfer(workdir: str, num_pairs: int, ddim_steps: int, dims_of: str = "") -> dict:
    """`evaluate_workdir_counterfactuals` (slerp of x_T) at the latest checkpoint (cached);
    with `dims_of` (a DiTi workdir) the groups swapped are its (`diti_group_dims`), e.g. in
    a PDAE workdir as a control."""
    step = checkpoint_steps(workdir)[-1]
    tag = f"_dims_of_{os.path.basename(os.path.normpath(dims_of))}" if dims_of else ""
    name = f"study_transfer_step{step}_{num_pairs}x{ddim_steps}{tag}"
    path = os.path.join(workdir, "eval", f"{name}.json")

    def compute():
        config = load_config(workdir)
        config.eval.counterfactual_pairs = num_pairs
        config.eval.counterfactual_steps = ddim_steps
        dims = diti_group_dims(dims_of) if dims_of else None
        figure = os.path.join(workdir, "figures", f"{name}.png")
        info = cf.evaluate_workdir_counterfactuals(workdir, config, out_path=figure, dims=dims)
        return {"step": step, "x_T": "slerp", **info}

    return _cached(path, compute)


def interval(values) -> str:
    mean, half = mean_interval(values)
    return f"{mean:.2f} ± {half:.2f}"


def reconstruction_table(rows: list[tuple[str, dict]]) -> str:
    """Markdown: guided, prior-alone and paired guided - prior PSNR (mean ± 95 % CI)."""
    lines = [
        "| workdir | step | images | guided PSNR (dB) | prior alone (dB) | guided − prior (dB) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        guided, prior = np.asarray(r["guided"]), np.asarray(r["prior"])
        cells = [name, str(r["step"]), str(len(guided)), interval(guided), interval(prior)]
        lines.append("| " + " | ".join([*cells, interval(guided - prior)]) + " |")
    return "\n".join(lines)


def final_fractions(info: dict) -> dict[str, dict[str, float]]:
    """`{group: {attribute: f at the last weight}}` of one transfer result."""
    return {g: {a: f[-1] for a, f in by.items()} for g, by in info["transfer"]["fractions"].items()}


def transfer_tables(runs: list[tuple[str, dict]]) -> str:
    """Markdown: f at the last weight, mean ± sample std over runs; then one row per run."""
    first = runs[0][1]
    head = "| swapped dims of z | dims | " + " | ".join(cf.MEASURES) + " |"
    rule = "|---" * (2 + len(cf.MEASURES)) + "|"
    fractions = [final_fractions(info) for _, info in runs]
    lines = [
        f"f at weight {first['alphas'][-1]:g}, mean ± std over {len(runs)} runs",
        "",
        head,
        rule,
    ]
    for group, (lo, hi) in first["groups"].items():
        cells = [group, f"{lo}–{hi} ({hi - lo + 1})"]
        for a in cf.MEASURES:
            values = np.array([f[group][a] for f in fractions])
            std = values.std(ddof=1) if len(values) > 1 else float("nan")
            cells.append(f"{values.mean():.2f} ± {std:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Per run:", "", "| swapped dims of z | run | " + " | ".join(cf.MEASURES) + " |",
              rule]  # fmt: skip
    for group in first["groups"]:
        for (name, _), f in zip(runs, fractions, strict=True):
            cells = [group, name, *(f"{f[group][a]:.2f}" for a in cf.MEASURES)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    logging.set_verbosity(logging.ERROR)
    f = flags.FLAGS
    if not f.workdirs:
        raise app.UsageError("give --workdirs (DiTi workdirs, one per seed)")
    unknown = set(f.all_checkpoints) - set(f.workdirs)
    if unknown:
        raise app.UsageError(f"--all_checkpoints must be among --workdirs; not: {sorted(unknown)}")
    rec_rows, runs = [], []
    for workdir in f.workdirs:
        steps = checkpoint_steps(workdir)
        name = os.path.basename(os.path.normpath(workdir))
        for step in steps if workdir in f.all_checkpoints else steps[-1:]:
            rec_rows.append((name, reconstruction(workdir, step, f.images, f.ddim_steps)))
        runs.append((name, transfer(workdir, f.pairs, f.ddim_steps)))
    print(f"Reconstruction, {f.ddim_steps} DDIM steps each way, mean ± 95 % CI over images:\n")
    print(reconstruction_table(rec_rows))
    print(f"\nAttribute transfer, x_T slerped, {f.pairs} pairs, {f.ddim_steps} DDIM steps:\n")
    print(transfer_tables(runs))
    controls = [
        (os.path.basename(os.path.normpath(w)), transfer(w, f.pairs, f.ddim_steps, f.workdirs[0]))
        for w in f.controls
    ]
    if controls:
        print(f"\nControls, swapping the dims of {f.workdirs[0]}'s groups:\n")
        print(transfer_tables(controls))
    if f.figure:
        print(f"\nwrote {draw_reconstructions(f.workdirs[0], f.figure, f.ddim_steps)}")
    if f.results_json:
        with open(f.results_json, "w") as fh:
            json.dump(
                {"reconstruction": rec_rows, "transfer": runs, "controls": controls}, fh, indent=2
            )


if __name__ == "__main__":
    app.run(main)
