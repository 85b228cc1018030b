"""The EM experiments of docs/methods.md F: the toy manifold, masked digits and MRI phantoms.

`run_experiment(config, workdir)` builds the task's observations (`data.observations`),
its lap-0 Gaussian prior (`em_gaussian.fit_gaussian`) and its per-lap metric and figure, and
runs `em.run`; then (optionally) trains the same prior on the clean data (the ceiling) and
draws the final EM curve `figures/em_curve.png`. Per lap: the toy logs E.4's Sinkhorn
divergence of prior samples (`eval/divergence`) and the sliced W2; digits and MRI log the
PSNR of the posterior samples against the clean images (`eval/psnr_posterior`) and, for
digits, the Fréchet distance of prior samples to the test digits in the features of
`evaluation.digit_classifier` (`eval/frechet`). The ceiling is the same prior trained on the
clean data (`clean_ceiling`); for digits and MRI the floor is the zero-filled observations
(`zero_filled_floor`). Files go through `diffssl_jax.storage` (the workdir may be `gs://...`);
only process 0 writes them.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from diffssl_jax import em, em_gaussian, em_options, em_recipe, plotting, storage, training
from diffssl_jax.data import manifold, observations
from diffssl_jax.evaluation import metrics
from diffssl_jax.training import workdir_lock

_CURVE_KEY = {"toy": "eval/divergence", "digits": "eval/frechet", "mri": "eval/psnr_posterior"}
_CURVE_LABEL = {
    "eval/divergence": "Sinkhorn divergence to the truth",
    "eval/frechet": "Fréchet distance to the test digits",
    "eval/psnr_posterior": "PSNR of posterior samples (dB)",
}


def clean_data(config) -> np.ndarray:
    """The clean examples behind the observations, `[N, *shape]` in EM units."""
    task, n = config.em.task, config.em.num_observations
    if task == "toy":
        return np.asarray(manifold.randman(config.em.data_seed, n))
    if task == "digits":
        from diffssl_jax.data.sources import DigitsSource

        images = DigitsSource("train").images
    elif task == "mri":
        from diffssl_jax.data.phantoms import PhantomSource

        images = PhantomSource("train", size=config.data.image_shape[0]).images
    else:
        raise ValueError(f"em.task must be toy, digits or mri, got {task!r}.")
    if n > len(images):
        raise ValueError(
            f"em.num_observations={n} asks for more observations than the {len(images)} "
            f"{task} training images; lower it."
        )
    return images[:n]


def make_observations(config, x) -> em.Observations:
    """Observations of the clean `x` for `config.em.task` (docs/methods.md F; E.4)."""
    c, seed = config.em, config.em.data_seed + 1
    if c.task == "toy":
        y, ops = observations.linear_projections(
            seed, jnp.asarray(x), obs_dim=c.obs_dim, noise_std=c.noise_std
        )
        shape = x.shape[1:]
    elif c.task == "digits":
        y, ops = observations.masked_digits(seed, jnp.asarray(x), c.mask_rate, c.noise_std)
        shape = x.shape[1:]
    else:
        y, ops = observations.kspace_measurements(
            seed, jnp.asarray(x), c.acceleration, c.center_fraction, c.noise_std
        )
        shape = x.shape[1:]
    return em.Observations(y=y, operators=ops, noise_var=c.noise_std**2, shape=tuple(shape))


def make_evaluate(config, workdir: str, x_clean: np.ndarray):
    """The per-lap metric and figure `(lap, prior, samples, rng) -> {name: float}`."""
    task, num = config.em.task, config.em.num_eval_samples
    figures = storage.path(workdir) / "figures"
    if task == "toy":
        # The same manifold (same seed) as the observed latents; the points after the first
        # num_observations are independent of them.
        n = config.em.num_observations
        truth = np.asarray(manifold.randman(config.em.data_seed, n + 2 * num))[n:]
        # E.4's offset: the divergence between two independent samples of the truth.
        offset = metrics.sinkhorn_divergence(truth[:num], truth[num:])
    feature_fn = test_features = None
    if task == "digits":
        feature_fn, test_features = digit_features(config)

    def evaluate(lap, prior, samples, rng):
        shape = tuple(x_clean.shape[1:])
        label = lap if isinstance(lap, str) else f"lap_{lap:03d}"
        prior_x = em.prior_samples(prior, shape, num, rng=rng, config=config)
        out = {}
        if task == "toy":
            finite = prior_x[np.all(np.isfinite(prior_x), axis=1)]
            out["eval/divergence"] = metrics.sinkhorn_divergence(truth[:num], finite) - offset
            out["eval/sliced_w2"] = metrics.sliced_wasserstein(truth[:num], finite, rng=rng)
            if storage.is_primary():
                plotting.save_corner_plot(
                    samples[:num],
                    figures / f"corner_{label}.png",
                    truth[:num],
                    title=f"EM, toy manifold, {label.replace('_', ' ')}",
                )
            return out
        if len(samples) == len(x_clean):
            out["eval/psnr_posterior"] = float(jnp.mean(metrics.psnr(samples, x_clean)))
        if feature_fn is not None:
            out["eval/frechet"] = metrics.frechet_distance(
                feature_fn(np.clip(prior_x, -1, 1)), test_features
            )
        if storage.is_primary():
            plotting.save_image_grid(
                {
                    "posterior\nsamples": samples[:32],
                    "prior\nsamples": np.clip(prior_x[:32], -1, 1),
                },
                figures / f"samples_{label}.png",
                num_cols=16,
                title=f"EM, {_task_name(config)}, {label.replace('_', ' ')}: one posterior "
                "sample per observation, then samples of the prior",
            )
        return out

    return evaluate


def digit_features(config):
    """`(feature_fn, test_features [450, F])` of the digits' Fréchet distance (docs/methods.md F).

    `feature_fn` maps `[N, 16, 16, 1]` images to the penultimate features of the classifier
    in `config.em.classifier_workdir` (FileNotFoundError with the command that trains it).
    Loaded once per classifier directory (the per-lap metric and the floor share it).
    """
    return _digit_features(str(storage.path(config.em.classifier_workdir)))


@functools.lru_cache(maxsize=4)
def _digit_features(workdir: str):
    from diffssl_jax.evaluation import digit_classifier

    feature_fn = digit_classifier.load_feature_fn(workdir)
    return feature_fn, feature_fn(digit_classifier.test_images())


def train_clean_prior(config, workdir: str, x_clean, recipe) -> em.ReshapedDenoiser:
    """The prior trained on the clean data for `em.num_laps * train.num_steps` steps (in
    `workdir/baseline_clean/`, resumable), as a denoiser in EM units."""
    cfg = config.copy_and_resolve_references()
    with cfg.unlocked():
        cfg.train.num_steps = config.train.num_steps * config.em.num_laps
        cfg.train.init_from = ""
    scale = config.em.data_scale
    images = (np.asarray(x_clean) / scale).reshape(len(x_clean), *cfg.data.image_shape)
    train_dir = str(storage.path(workdir) / "baseline_clean")
    from diffssl_jax.data import ArraySource
    from diffssl_jax.training import checkpoint

    training.train(cfg, train_dir, recipe, source=ArraySource(np.clip(images, -1, 1)))
    params = checkpoint.load_params(train_dir, which="ema")
    return em.ReshapedDenoiser(
        em_recipe.make_denoiser(cfg, params), tuple(cfg.data.image_shape), scale
    )


def zero_filled_floor(config, workdir: str, x_clean, obs) -> dict:
    """The floor of EM on images (`baseline_zero_filled.json`), in the per-lap units.

    The zero-filled reconstruction `A^T y` (`observations.zero_filled`: the observation with
    the missing pixels at 0 for digits, `Re(F^H y)` for MRI) against the clean images:
    `eval/psnr_posterior` = PSNR(A^T y, x) and, for digits, `eval/frechet` of its features.
    Also draws `figures/observations.png` (clean images above their zero-filled observations).
    """
    zero_filled = np.asarray(observations.zero_filled(obs.y, obs.operators))
    zero_filled = zero_filled.reshape(x_clean.shape)
    floor = {"eval/psnr_posterior": float(jnp.mean(metrics.psnr(zero_filled, x_clean)))}
    if config.em.task == "digits":
        feature_fn, test_features = digit_features(config)
        features = feature_fn(np.clip(zero_filled, -1, 1))
        floor["eval/frechet"] = metrics.frechet_distance(features, test_features)
    if storage.is_primary():
        storage.write_json(storage.path(workdir) / "baseline_zero_filled.json", floor)
        plotting.save_image_grid(
            {"clean": x_clean[:16], "zero-filled\nobservation": np.clip(zero_filled[:16], -1, 1)},
            storage.path(workdir) / "figures" / "observations.png",
            num_cols=16,
            title=f"EM, {_task_name(config)}: clean images and their zero-filled observations",
        )
    return floor


def clean_ceiling(config, workdir: str, x_clean, obs, evaluate, recipe) -> dict:
    """The ceiling of EM (`baseline_clean.json`), in the per-lap units; read back if it exists.

    The same prior trained on the clean data for `em.num_laps * train.num_steps` steps. For
    the image tasks, whose per-lap metric includes `eval/psnr_posterior`, the samples scored
    are one MMPS posterior sample per observation under it (the E-step of a lap, key
    `fold_in(key(seed), 10_000)`, chunks in `baseline_clean/estep_<steps>/`, resumable); the
    toy's metric reads only prior samples, so it is given the clean data. The ceiling records
    its training steps (`train/num_steps`): a run extended to more laps trains it further.
    """
    path = storage.path(workdir) / "baseline_clean.json"
    steps = config.em.num_laps * config.train.num_steps
    if path.exists() and storage.read_json(path).get("train/num_steps") == steps:
        return storage.read_json(path)
    prior = train_clean_prior(config, workdir, x_clean, recipe)
    rng = jax.random.fold_in(jax.random.key(config.seed), 10_000)
    if config.em.task == "toy":
        ceiling = evaluate("clean", prior, np.asarray(x_clean), rng)
    else:
        estep = storage.path(workdir) / "baseline_clean" / f"estep_{steps:07d}"
        raw = em.e_step(prior, obs, rng=jax.random.fold_in(rng, 0), config=config, directory=estep)
        kept, counts = em.filter_samples(raw, config.em.sample_bound or None)
        ceiling = {**counts, **evaluate("clean", prior, kept, jax.random.fold_in(rng, 1))}
    ceiling["train/num_steps"] = steps
    if storage.is_primary():
        storage.write_json(path, ceiling)
    return ceiling


def _task_name(config) -> str:
    """The task as a figure title names it (its masking rate or MRI acceleration)."""
    if config.em.task == "digits":
        return f"digits with {config.em.mask_rate:.0%} of pixels masked"
    if config.em.task == "mri":
        return f"MRI at {config.em.acceleration:g}x acceleration"
    return "toy manifold"


def save_em_curve(
    config, workdir: str, laps: list[dict], baseline: dict | None, floor: dict | None = None
) -> str:
    """`figures/em_curve.png`: the task's metric per lap, the clean ceiling (and the floor,
    if given) dashed. Call it from process 0 only."""
    key = _CURVE_KEY[config.em.task]
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
        ylabel=_CURVE_LABEL[key],
        log_y=config.em.task in ("toy", "digits"),  # divergences span decades
        title=f"EM, {_task_name(config)}: {_CURVE_LABEL[key]} per lap",
    )


def run_experiment(config, workdir: str) -> dict:
    """Runs (or resumes) the EM experiment of `config.em.task` into `workdir`.

    Raises:
      ValueError: a bad option (before anything is written; see `em_options`).
      training.Preempted: after a SIGTERM (rerun to resume; nothing unfinished is marked done).
    """
    em_options.check_em_options(config)
    with workdir_lock.hold(workdir):  # the laps, the baselines and the figures: one writer
        return _run_experiment(config, workdir)


def _run_experiment(config, workdir: str) -> dict:
    """`run_experiment` under the workdir's lock: the laps, the floor and ceiling, the curve."""
    x_clean = clean_data(config)
    obs = make_observations(config, x_clean)
    recipe = em_recipe.make_recipe(config)
    evaluate = make_evaluate(config, workdir, x_clean)

    def gaussian_prior():
        return em_gaussian.fit_gaussian(
            obs.operators,
            obs.y,
            obs.noise_var,
            shape=obs.shape,
            num_iterations=config.em.gaussian_iterations,
        )

    laps = em.run(
        config,
        workdir,
        obs,
        recipe=recipe,
        make_denoiser=lambda params: em_recipe.make_denoiser(config, params),
        gaussian_prior=gaussian_prior,
        evaluate=evaluate,
    )
    baseline = floor = None
    if config.em.task in ("digits", "mri"):
        floor = zero_filled_floor(config, workdir, x_clean, obs)
    if config.em.clean_baseline:
        baseline = clean_ceiling(config, workdir, x_clean, obs, evaluate, recipe)
    if storage.is_primary():
        save_em_curve(config, workdir, laps, baseline, floor)
    return {"laps": laps, "clean": baseline, "zero_filled": floor}
