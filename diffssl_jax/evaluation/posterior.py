"""The report runner of inverse problems: observe held-out images, sample, score.

``run_problem`` observes held-out images (``posterior.observe``), samples the posterior of
every observation with one method (``posterior.posterior_method`` and
``posterior.sample_posterior``, on the grid of ``samplers.sigmas_from_config``) and scores
the samples and their mean against the ground truth (PSNR, SSIM). ``write_posterior`` does it
for a workdir and a problem config (``configs/posterior/``) and writes the files
(``launch/sample.py --problem``); ``scripts/compare_posterior.py`` tabulates its rows.
"""

import time

import jax
import numpy as np

from diffssl_jax import plotting, posterior, storage
from diffssl_jax.data import phantoms
from diffssl_jax.data.sources import make_source
from diffssl_jax.evaluation import calibration, image_metrics
from diffssl_jax.evaluation.priors import load_prior
from diffssl_jax.posterior import sampling as posterior_sampling
from diffssl_jax.posterior.operators import PixelMask
from diffssl_jax.sampling import samplers


def scores(images, reference):
    """``{"psnr": [N], "ssim": [N]}`` of ``images`` ``[N, H, W, C]`` in ``[-1, 1]``.

    SSIM uses a 7-pixel window below 32 pixels (as ``skimage.metrics`` for small images), 11
    otherwise (Wang et al. 2004).
    """
    images = np.clip(np.asarray(images, np.float32), -1.0, 1.0)
    filter_size = 7 if min(reference.shape[1:3]) < 32 else 11
    psnr = image_metrics.psnr(images, reference)
    ssim = image_metrics.ssim(images, reference, filter_size=filter_size)
    return {"psnr": np.asarray(psnr), "ssim": np.asarray(ssim)}


def unobserved_region(problem) -> np.ndarray | None:
    """``[N, *shape]`` bool, True where a pixel is not observed (inpainting: ``PixelMask``
    operators), or None for operators that see every pixel through a mixture."""
    if not isinstance(problem.operators, PixelMask):
        return None
    masks = np.asarray(problem.stacked_operators().mask, bool)
    missing = np.broadcast_to(~masks, (problem.num_observations, *problem.shape))
    return missing if missing.reshape(len(missing), -1).any(axis=1).all() else None


def region_psnr(images, reference, region, data_range=2.0) -> np.ndarray:
    """``[N]`` PSNR (dB) over the pixels of ``region`` only (the missing pixels)."""
    w = np.broadcast_to(region, reference.shape).astype(np.float64)
    err = np.square(np.asarray(images, np.float64) - reference)
    mse = (err * w).reshape(len(w), -1).sum(1) / w.reshape(len(w), -1).sum(1)
    return 10.0 * np.log10(data_range**2 / mse)


def summarize(samples, images, observed, region=None):
    """Scores of posterior samples: PSNR/SSIM of the posterior mean, of single samples and of
    the observation view, with 95 % intervals over images, and the calibration measures.

    Args:
      samples: ``[N, K, H, W, C]`` posterior samples (clipped to ``[-1, 1]`` here).
      images: ``[N, H, W, C]`` ground truth.
      observed: ``[N, H, W, C]`` the observation as an image (``posterior.observation_image``:
        zero-filled for MRI).
      region: optional ``[N, H, W, C]`` bool, the unobserved pixels (``unobserved_region``):
        adds the PSNR there (``region_psnr``, the observation's and the samples') and scores
        the calibration there (the whole image otherwise).

    Returns:
      A JSON-ready dict: ``<view>_<metric>`` means (views ``mean``, ``sample``, ``observed``);
      ``sample_<metric>_ci`` half-widths of the Student-t 95 % interval over images of the
      per-image mean over samples (``calibration.mean_interval``); with ``K >= 2``,
      ``spread_skill`` and its bootstrap interval ``spread_skill_interval`` (1 for a correct
      posterior) and ``coverage`` against ``expected_coverage`` (``calibration``); per-image
      lists ``mean_psnr_per_image`` and ``sample_psnr_per_image``.
    """
    samples = np.clip(np.asarray(samples), -1.0, 1.0)
    n, k = samples.shape[:2]
    images = np.asarray(images)
    mean = scores(samples.mean(axis=1), images)
    single = scores(samples.reshape(-1, *samples.shape[2:]), np.repeat(images, k, axis=0))
    base = scores(observed, images)
    out = {}
    for name, values in (("mean", mean), ("sample", single), ("observed", base)):
        for metric in ("psnr", "ssim"):
            out[f"{name}_{metric}"] = float(np.mean(values[metric]))
    for metric in ("psnr", "ssim"):
        per_image = single[metric].reshape(n, k).mean(axis=1)
        out[f"sample_{metric}_ci"] = calibration.mean_interval(per_image)[1]
    if region is not None:
        flat = np.repeat(region, k, axis=0)
        per_image = region_psnr(
            samples.reshape(-1, *images.shape[1:]), np.repeat(images, k, 0), flat
        )
        out["region_psnr"], out["region_psnr_ci"] = calibration.mean_interval(
            per_image.reshape(n, k).mean(axis=1)
        )
        out["observed_region_psnr"] = float(np.mean(region_psnr(observed, images, region)))
    if k >= 2:
        skill, spread = calibration.spread_and_skill(samples, images, region)
        ratio, low, high = calibration.ratio_interval(skill, spread)
        out["spread_skill"], out["spread_skill_interval"] = ratio, [low, high]
        out["coverage"] = float(np.mean(calibration.range_coverage(samples, images, region)))
        out["expected_coverage"] = calibration.expected_coverage(k)
        out["calibration_region"] = "unobserved pixels" if region is not None else "image"
    out["mean_psnr_per_image"] = mean["psnr"].tolist()
    out["sample_psnr_per_image"] = single["psnr"].reshape(n, k).mean(axis=1).tolist()
    out["all_finite"] = bool(np.isfinite(samples).all())
    return out


def method_record(method_config) -> dict:
    """``{"name": ..., **options}``: the method of a problem config's ``method`` group, with
    every option it runs with (the group ``method.<name>`` over the method's defaults)."""
    name = method_config.name
    options = dict(method_config.get(name) or {})
    return {"name": name, **posterior.method_options(name), **options}


def observe_images(images, problem_config, rng):
    """``posterior.observe`` of ``images`` with the config's ``operator.kind`` and those keys
    of ``operator`` that kind takes (``posterior.observation_options``)."""
    c = problem_config
    kind = c.operator.kind
    valid = posterior.observation_options(kind)
    options = {key: value for key, value in c.operator.items() if key in valid}
    return posterior.observe(
        kind, rng, np.asarray(images, np.float32), noise_std=c.noise_std, **options
    )


def run_problem(denoiser, images, problem_config, *, seed=None):
    """Observes ``images``, samples each posterior and scores it.

    Every check (the observation options, the operator against ``y``, the noise variance, the
    method's name and options, the sigma grid) runs before any sampling, once (``check_sampling``;
    ``sample_posterior`` is then told not to repeat it).

    Args:
      denoiser: the prior ``D(x, sigma) -> x0_hat`` on one image (data units: images in
        ``[-1, 1]``).
      images: ``[N, H, W, C]`` ground-truth images in ``[-1, 1]``.
      problem_config: a ``configs/posterior`` config (groups ``operator``, ``method``,
        ``sampling``; keys ``noise_std``, ``num_samples``, ``seed``).
      seed: overrides ``problem_config.seed``: ``split(key(seed))`` gives the observation key
        and the sampling key.

    Returns:
      ``(problem, samples [N, K, H, W, C] clipped to [-1, 1], metrics dict)``;
      ``metrics["seconds"]`` is the wall time of the (jitted) sampling, compilation included;
      ``metrics["sigmas"]`` the grid it used (``samplers.describe_sigmas``); with
      ``problem_config.record_solves`` and MMPS, ``metrics["mmps_solves"]``: per sigma, the
      share of calls in which the safeguard fired, CG's curvature and the correction sizes
      (``posterior.summarize_records`` of ``posterior.record_trajectory``, the same samples).
    """
    c = problem_config
    seed = c.seed if seed is None else seed
    rng_problem, rng_sample = jax.random.split(jax.random.key(seed))
    problem = observe_images(images, c, rng_problem)
    record = method_record(c.method)
    options = dict(c.method.get(c.method.name) or {})
    method = posterior.posterior_method(c.method.name, **options)
    sigmas = samplers.sigmas_from_config(c.sampling)
    method, sigmas, _ = posterior_sampling.check_sampling(method, denoiser, problem, sigmas)
    start = time.perf_counter()
    solves = None
    run = {
        "rng": rng_sample,
        "sigmas": sigmas,
        "sampler": c.sampling.sampler,
        "num_per_observation": c.num_samples,
    }
    if c.get("record_solves") and method.name == "mmps":
        samples, records = posterior.record_trajectory(method, denoiser, problem, **run)
        solves = posterior.summarize_records(records)
    else:
        samples = posterior.sample_posterior(method, denoiser, problem, checked=True, **run)
    samples = np.asarray(jax.block_until_ready(samples))
    metrics = summarize(
        samples,
        np.asarray(images),
        posterior.observation_image(problem),
        region=unobserved_region(problem),
    )
    metrics["seconds"] = time.perf_counter() - start
    metrics["method"] = record
    metrics["sigmas"] = samplers.describe_sigmas(c.sampling, unit="data")
    if solves is not None:
        metrics["mmps_solves"] = solves
    return problem, np.clip(samples, -1.0, 1.0), metrics


def load_images(dataset, split, num_images, start, image_size):
    """``[num_images, S, S, C]`` float32 held-out images in ``[-1, 1]``.

    ``dataset``: ``digits``, ``phantoms`` or ``patches`` (``make_source``, images ``start``
    onwards of ``split``; the patches have the splits ``train``, ``validation`` and ``test``,
    by photograph, ``image_size`` their side), or ``shepp_logan`` (scikit-image's phantom
    resized to ``image_size``; one image, repeated ``num_images`` times so that each copy gets
    its own mask and noise).
    """
    if dataset == "shepp_logan":
        return np.repeat(phantoms.shepp_logan(image_size)[None], num_images, axis=0)
    source = make_source(dataset, split, image_size=image_size)
    if start + num_images > len(source):
        raise ValueError(f"{dataset}/{split} has {len(source)} images, not {start + num_images}.")
    return np.stack([source[i]["image"] for i in range(start, start + num_images)])


def held_out_images(data_config, image_shape):
    """The images of a problem config's ``data`` group (``load_images``) for a prior trained
    on ``image_shape``: test images from ``data.start``, validation images after them.

    Raises:
      ValueError: if the images do not have the prior's shape.
    """
    d = data_config
    images = load_images(d.dataset, d.split, d.num_images, d.start, image_shape[0])
    if tuple(images.shape[1:]) != tuple(image_shape):
        raise ValueError(
            f"{d.dataset} images are {images.shape[1:]} but the prior was trained on "
            f"{tuple(image_shape)}."
        )
    return images


MAX_FIGURE_IMAGES = 8  # columns of the posterior figure


def posterior_figure(images, observed, samples, title, psnr=None):
    """Rows: ground truth, observation, up to 4 samples, posterior mean; a column per image.

    Args:
      images, observed: ``[N, H, W, C]`` in ``[-1, 1]``; samples: ``[N, K, H, W, C]``.
      title: the figure's title.
      psnr: ``[N]`` PSNR of each posterior mean (dB), shown under the column numbers.

    Returns:
      The ``Figure`` of the first ``MAX_FIGURE_IMAGES`` images.
    """
    n, k = min(len(images), MAX_FIGURE_IMAGES), min(samples.shape[1], 4)
    rows = [images[:n], observed[:n], *np.moveaxis(samples[:n, :k], 1, 0)]
    rows.append(samples[:n].mean(axis=1))
    labels = ["truth", "observation", *(f"sample {j + 1}" for j in range(k)), "posterior\nmean"]
    cols = [f"#{i + 1}" + ("" if psnr is None else f"\n{psnr[i]:.1f} dB") for i in range(n)]
    return plotting.grid_figure(
        np.clip(np.stack(rows), -1, 1), row_labels=labels, col_labels=cols, title=title
    )


def write_posterior(workdir, problem_config, prior="trained"):
    """Posterior samples for ``problem_config`` under a prior; writes files in ``workdir``.

    ``prior`` (``priors.load_prior``): ``"trained"``, the EMA prior of the training workdir
    ``workdir``; ``"gaussian"``, the Gaussian fitted to the train split of the problem's
    dataset (``priors.gaussian_prior``; ``workdir`` is then only where files go, and their
    stem gets the suffix ``_gaussian``, so both priors' files can share one workdir).

    Writes ``eval/posterior_<stem>.npz`` (``images``, ``observed``, ``samples``, ``mean``),
    ``eval/posterior_<stem>.json`` (PSNR/SSIM of the posterior mean, of single samples and of
    the observation view, against the ground truth; the prior, the method with all its
    options; the sigma grid) and ``figures/posterior_<stem>.png``.

    Returns:
      ``{"samples": npz path, "metrics": json path, "figure": png path, **metrics}``.
    """
    c = problem_config
    denoiser, image_shape, prior_record = load_prior(prior, workdir, c.data.dataset)
    images = held_out_images(c.data, image_shape)
    problem, samples, metrics = run_problem(denoiser, images, c)
    metrics = {"name": c.name, "prior": prior_record, **metrics}
    metrics.update(num_images=len(images), num_samples=c.num_samples, **c.sampling.to_dict())
    stem = c.name if prior == "trained" else f"{c.name}_{prior}"
    out = storage.path(workdir) / "eval"
    npz, path = out / f"posterior_{stem}.npz", out / f"posterior_{stem}.json"
    figure = storage.path(workdir) / "figures" / f"posterior_{stem}.png"
    if storage.is_primary():
        observed = posterior.observation_image(problem)
        storage.save_npz(
            npz, images=images, observed=observed, samples=samples, mean=samples.mean(1)
        )
        storage.write_json(path, metrics)
        title = (
            f"{c.name}: {c.method.name}, {prior} prior, {c.sampling.num_steps} steps "
            "(columns: image, PSNR of the posterior mean)"
        )
        psnr = metrics["mean_psnr_per_image"]
        plotting.save_figure(posterior_figure(images, observed, samples, title, psnr), figure)
    return {"samples": str(npz), "metrics": str(path), "figure": str(figure), **metrics}
