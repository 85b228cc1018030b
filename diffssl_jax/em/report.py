"""What an EM run is compared with (docs/methods.md F): the clean-data ceiling and the curve.

The ceiling (`clean_ceiling`, `baseline_clean.json`) is the same prior trained on the clean
data for `em.num_laps * train.num_steps` steps (`train_clean_prior`, in
`workdir/baseline_clean/`, resumable), scored like a lap by the experiment's `ceiling`. The
floor is the experiment's own (`Experiment.floor`). `save_em_curve` draws the experiment's
metric per lap with the ceiling, the Gaussian lap 0 and the floor dashed
(`figures/em_curve.png`). Files go through `diffssl_jax.storage`; only process 0 writes.
"""

import jax
import numpy as np

from diffssl_jax import plotting, storage, training
from diffssl_jax.data import ArraySource
from diffssl_jax.em.estep import e_step, filter_samples
from diffssl_jax.em.laps import describe_grid
from diffssl_jax.evaluation.samples import sample_grid_drawer
from diffssl_jax.sampling.denoisers import ScaledDenoiser
from diffssl_jax.training import checkpoint

CEILING_STREAM = 10_000  # the ceiling's key: fold_in(key(seed), CEILING_STREAM)


def train_clean_prior(config, workdir: str, x_clean, recipe) -> ScaledDenoiser:
    """The prior trained on the clean data for `em.num_laps * train.num_steps` steps (in
    `workdir/baseline_clean/`, resumable), as a denoiser in EM units."""
    cfg = config.copy_and_resolve_references()
    with cfg.unlocked():
        cfg.train.num_steps = config.train.num_steps * config.em.num_laps
        cfg.train.init_from = ""
    scale = config.em.data_scale
    images = (np.asarray(x_clean) / scale).reshape(len(x_clean), *cfg.data.image_shape)
    train_dir = str(storage.path(workdir) / "baseline_clean")
    source = ArraySource(np.clip(images, -1, 1))
    training.train(
        cfg, train_dir, recipe, source=source, draw_samples=sample_grid_drawer(cfg.method)
    )
    params = checkpoint.load_params(train_dir, which="ema")
    return ScaledDenoiser(recipe.denoiser(params), tuple(cfg.data.image_shape), scale)


def clean_ceiling(config, workdir: str, experiment, x_clean, problem, evaluate, recipe) -> dict:
    """The ceiling of EM (`baseline_clean.json`), in the per-lap units; read back if it exists.

    The experiment's `ceiling` scores the clean-data prior: with prior samples only (the toy)
    or with one MMPS posterior sample per observation under it (the E-step of a lap, chunks
    in `baseline_clean/estep_<steps>/`, resumable). The key is `fold_in(key(seed), 10_000)`.
    The ceiling records its training steps (`train/num_steps`; a run extended to more laps
    trains it further) and its sigma grid (`sampling/sigmas`, EM data units).
    """
    path = storage.path(workdir) / "baseline_clean.json"
    steps = config.em.num_laps * config.train.num_steps
    if path.exists() and storage.read_json(path).get("train/num_steps") == steps:
        return storage.read_json(path)
    prior = train_clean_prior(config, workdir, x_clean, recipe)
    rng = jax.random.fold_in(jax.random.key(config.seed), CEILING_STREAM)

    def posterior_samples(key):
        raw = e_step(
            prior,
            problem,
            rng=key,
            sampling=config.sampling,
            posterior=config.posterior,
            chunk_size=config.em.chunk_size,
            directory=storage.path(workdir) / "baseline_clean" / f"estep_{steps:07d}",
        )
        return filter_samples(raw, config.em.sample_bound or None)

    ceiling = experiment.ceiling(prior, x_clean, evaluate, rng, posterior_samples)
    ceiling["train/num_steps"] = steps
    ceiling["sampling/sigmas"] = describe_grid(config.sampling)
    if storage.is_primary():
        storage.write_json(path, ceiling)
    return ceiling


def save_em_curve(
    experiment, workdir: str, laps: list[dict], baseline: dict | None, floor: dict | None = None
) -> str:
    """`figures/em_curve.png`: the experiment's metric per lap, the clean ceiling (and the
    floor, if given) dashed. Call it from process 0 only."""
    key, label = experiment.curve_key, experiment.curve_label
    xs = [i for i, info in enumerate(laps) if key in info]
    ys = [laps[i][key] for i in xs]
    hlines = {"trained on clean data": baseline[key]} if baseline and key in baseline else {}
    hlines["Gaussian prior (lap 0)"] = laps[0][key] if key in laps[0] else None
    hlines["zero-filled observations"] = floor.get(key) if floor else None
    hlines = {k: v for k, v in hlines.items() if v is not None}
    return plotting.save_curves(
        np.asarray(xs),
        {"EM": np.asarray(ys)},
        storage.path(workdir) / "figures" / "em_curve.png",
        hlines=hlines,
        ylabel=label,
        log_y=experiment.curve_log_y,
        title=f"EM, {experiment.title}: {label} per lap",
    )
