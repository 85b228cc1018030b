"""Posterior sampling of an inverse problem from a trained workdir (`launch/sample.py --problem`).

``run_problem`` observes held-out images (``inverse_problems.make_problem``), samples the
posterior of every observation with one method (``posterior.sample_posterior``) and scores
the samples and their mean against the ground truth (PSNR, SSIM); ``write_posterior`` does
it for a workdir and a problem config (``configs/posterior/``) and writes the files.
"""

import time

import jax
import numpy as np

from diffssl_jax import plotting, posterior, storage
from diffssl_jax.evaluation import image_metrics
from diffssl_jax.evaluation import inverse_problems as ip
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


def summarize(samples, images, observed):
    """Mean PSNR/SSIM of the posterior mean, of single samples, and of the observation view.

    Args:
      samples: ``[N, K, H, W, C]`` posterior samples (clipped to ``[-1, 1]`` here).
      images: ``[N, H, W, C]`` ground truth.
      observed: ``[N, H, W, C]`` the observation as an image (zero-filled for MRI).

    Returns:
      A JSON-ready dict of floats and per-image lists.
    """
    samples = np.clip(np.asarray(samples), -1.0, 1.0)
    k = samples.shape[1]
    mean = scores(samples.mean(axis=1), images)
    single = scores(samples.reshape(-1, *samples.shape[2:]), np.repeat(images, k, axis=0))
    base = scores(observed, images)
    out = {}
    for name, values in (("mean", mean), ("sample", single), ("observed", base)):
        for metric in ("psnr", "ssim"):
            out[f"{name}_{metric}"] = float(np.mean(values[metric]))
    out["mean_psnr_per_image"] = mean["psnr"].tolist()
    out["all_finite"] = bool(np.isfinite(samples).all())
    return out


def run_problem(denoiser, images, problem_config, *, seed=None):
    """Observes ``images``, samples each posterior and scores it.

    Every check (operator against ``y``, noise variance, method name and options) runs
    before any sampling.

    Args:
      denoiser: the prior ``D(x, sigma) -> x0_hat`` on one image.
      images: ``[N, H, W, C]`` ground-truth images in ``[-1, 1]``.
      problem_config: a ``configs/posterior`` config (groups ``operator``, ``method``,
        ``sampling``; keys ``noise_std``, ``num_samples``, ``seed``).
      seed: overrides ``problem_config.seed``.

    Returns:
      ``(problem, samples [N, K, H, W, C], metrics dict)``; ``metrics["seconds"]`` is the
      wall time of the (jitted) sampling, compilation included.
    """
    c = problem_config
    seed = c.seed if seed is None else seed
    rng_problem, rng_sample = jax.random.split(jax.random.key(seed))
    problem = ip.make_problem(rng_problem, images, noise_std=c.noise_std, **c.operator)
    method = dict(c.method)
    make_posterior = ip.make_posterior_factory(method.pop("name"), **method)
    shape = images.shape[1:]
    ip.check_problem(make_posterior, denoiser, problem, shape)
    sigmas = samplers.sigma_grid(
        c.sampling.grid, c.sampling.num_steps, c.sampling.sigma_min, c.sampling.sigma_max
    )
    start = time.perf_counter()
    samples = posterior.sample_posterior(
        make_posterior,
        denoiser,
        problem.operators,
        problem.ys,
        problem.noise_var,
        rng=rng_sample,
        shape=shape,
        sigmas=sigmas,
        sampler=c.sampling.sampler,
        num_per_observation=c.num_samples,
    )
    samples = np.asarray(jax.block_until_ready(samples))
    metrics = summarize(samples, np.asarray(images), problem.observed)
    metrics["seconds"] = time.perf_counter() - start
    return problem, np.clip(samples, -1.0, 1.0), metrics


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


def _figure(path, images, observed, samples, title, psnr=None):
    return plotting.save_figure(posterior_figure(images, observed, samples, title, psnr), path)


def write_posterior(workdir, problem_config):
    """Posterior samples for ``problem_config`` under the prior of ``workdir``; writes files.

    Writes ``eval/posterior_<name>.npz`` (``images``, ``observed``, ``samples``, ``mean``),
    ``eval/posterior_<name>.json`` (PSNR/SSIM of the posterior mean, of single samples and of
    the observation view, against the ground truth) and ``figures/posterior_<name>.png``.

    Returns:
      ``{"samples": npz path, "metrics": json path, "figure": png path, **metrics}``.
    """
    c = problem_config
    denoiser, prior_config = ip.load_denoiser(workdir)
    size = prior_config.data.image_shape[0]
    images = ip.load_images(c.data.dataset, c.data.split, c.data.num_images, c.data.start, size)
    if tuple(images.shape[1:]) != tuple(prior_config.data.image_shape):
        raise ValueError(
            f"{c.data.dataset} images are {images.shape[1:]} but the prior was trained on "
            f"{tuple(prior_config.data.image_shape)}."
        )
    problem, samples, metrics = run_problem(denoiser, images, c)
    metrics = {"name": c.name, "method": c.method.to_dict(), **metrics}
    metrics.update(num_images=len(images), num_samples=c.num_samples, **c.sampling.to_dict())
    out = storage.path(workdir) / "eval"
    npz, path = out / f"posterior_{c.name}.npz", out / f"posterior_{c.name}.json"
    figure = storage.path(workdir) / "figures" / f"posterior_{c.name}.png"
    if storage.is_primary():
        storage.save_npz(
            npz, images=images, observed=problem.observed, samples=samples, mean=samples.mean(1)
        )
        storage.write_json(path, metrics)
        title = (
            f"{c.name}: {c.method.name}, {c.sampling.num_steps} steps "
            "(columns: image, PSNR of the posterior mean)"
        )
        psnr = metrics["mean_psnr_per_image"]
        _figure(figure, images, problem.observed, samples, title, psnr)
    return {"samples": str(npz), "metrics": str(path), "figure": str(figure), **metrics}
