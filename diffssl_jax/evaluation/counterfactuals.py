"""Counterfactual generation with DiTi: DDIM inversion, then generation with a mixed feature.

Yue et al. 2024 (Sec. 4.3; reference `eval/counterfactual_generation.py`, docs/methods.md B.6):
invert x0 deterministically to x_T with DDIM (Song et al. 2021, Eq. 12 with sigma = 0),
guided at every step n by the image's own feature masked to the subsets seen at n,
z * m_floor(n k / T); then generate back from x_T with a feature whose chosen subsets are
interpolated towards a second image's, z = z1 + alpha (z2 - z1) on those dims. The guided
noise is eps_θ - sqrt(1 - ab_n) G (`diti.guided_eps(..., coefficient="sample")`) and the
generation clips the x0 estimate to [-1, 1] at every step.

One DDIM update from ab to ab' (both directions): x0_hat = (x - sqrt(1 - ab) eps) / sqrt(ab),
x' = sqrt(ab') x0_hat + sqrt(1 - ab') eps. The reference also slerps x_T between the two
images; here x_T stays image 1's by default (`slerp_xt=False`), so that only the chosen
subsets differ from image 1's reconstruction.

Measure (digits): does swapping a group of subsets move the attributes it should? Each
strip's images are measured (ink mass, slant and width of docs/methods.md F, and the
probability a pixel-space class probe gives image 2's class), and `transfer_fractions`
summarises, over pairs p, how much of the change from image 1 to image 2 a weight achieves:

    f_a(alpha) = sum_p d_p (a(g_p(alpha)) - a(g_p(0))) / sum_p d_p^2,  d_p = a(x2_p) - a(x1_p),

the least-squares slope of the achieved change on the full change (1: the attribute moved
all the way to image 2's value; 0: it did not move; it is scale-free). Baselining at the
weight-0 generation g_p(0), not x1_p, removes the reconstruction error from the numerator.
"""

import jax
import jax.numpy as jnp
import numpy as np

from diffssl_jax import plotting, storage
from diffssl_jax.data import DigitsSource
from diffssl_jax.evaluation import digit_tasks, figures, linear_probe
from diffssl_jax.methods import diti
from diffssl_jax.training.checkpoint import load_params

# Height is left out: the ink spans all 16 rows in 445 of the 450 test digits (nothing to move).
MEASURES = ("ink_mass", "slant", "width", "p_class")


def ddim_update(x, eps, alpha_bar_from, alpha_bar_to, clip: bool = False):
    """One deterministic DDIM step from noise level ab to ab' (module docstring)."""
    x0_hat = (x - jnp.sqrt(1.0 - alpha_bar_from) * eps) / jnp.sqrt(alpha_bar_from)
    x0_hat = jnp.clip(x0_hat, -1.0, 1.0) if clip else x0_hat
    return jnp.sqrt(alpha_bar_to) * x0_hat + jnp.sqrt(1.0 - alpha_bar_to) * eps


def step_grid(num_steps: int, num_ddim: int) -> np.ndarray:
    """`[S]` increasing integer steps from 0 to T - 1, evenly spaced."""
    if not 2 <= num_ddim <= num_steps:
        raise ValueError(f"need 2 <= DDIM steps <= T = {num_steps}, got {num_ddim}")
    return np.unique(np.round(np.linspace(0, num_steps - 1, num_ddim)).astype(np.int32))


def invert(eps_fn, alpha_bar, x0, z, steps):
    """x at n_{S-1} from x0 by guided DDIM up the grid (first step: from ab = 1 to ab_{n_0}).

    `eps_fn(x, n, z)`; `generate` retraces the same levels down to ab = 1.
    """

    def body(x, pair):
        n, n_next = pair
        return ddim_update(x, eps_fn(x, n, z), alpha_bar[n], alpha_bar[n_next]), None

    x = ddim_update(x0, eps_fn(x0, steps[0], z), 1.0, alpha_bar[steps[0]])
    pairs = (jnp.asarray(steps[:-1]), jnp.asarray(steps[1:]))
    return jax.lax.scan(body, x, pairs)[0]


def generate(eps_fn, alpha_bar, xt, z, steps, clip: bool = True):
    """x0 from x at n_{S-1} by guided DDIM down the grid, then the x0 estimate at n_0."""

    def body(x, pair):
        n, n_prev = pair
        return ddim_update(x, eps_fn(x, n, z), alpha_bar[n], alpha_bar[n_prev], clip), None

    pairs = (jnp.asarray(steps[1:][::-1]), jnp.asarray(steps[:-1][::-1]))
    x = jax.lax.scan(body, xt, pairs)[0]
    return ddim_update(x, eps_fn(x, steps[0], z), alpha_bar[steps[0]], 1.0, clip)


def slerp(a, b, alpha):
    """Spherical interpolation between noise maps, per example over all other axes."""
    flat_a, flat_b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    cos = jnp.sum(flat_a * flat_b, 1) / (
        jnp.linalg.norm(flat_a, axis=1) * jnp.linalg.norm(flat_b, axis=1)
    )
    theta = jnp.arccos(jnp.clip(cos, -1.0, 1.0))[:, None]
    mix = (jnp.sin((1 - alpha) * theta) * flat_a + jnp.sin(alpha * theta) * flat_b) / jnp.sin(theta)
    return mix.reshape(a.shape)


def mix_features(z1, z2, dims_mask, alpha):
    """z1 with the dims where `dims_mask` is 1 moved to z1 + alpha (z2 - z1): `[B, D]`."""
    return z1 + alpha * dims_mask * (z2 - z1)


def make_eps_fn(model: diti.DiTiModel, params):
    """eps_fn(x [B, ...], n scalar int, z [B, D]) of the reference's guided sampler."""

    def eps_fn(x, n, z):
        step = jnp.full((x.shape[0],), n, jnp.int32)
        return diti.guided_eps(model, params, x, step, z, coefficient="sample")

    return eps_fn


def make_counterfactual_fn(model: diti.DiTiModel, steps, slerp_xt: bool = False):
    """A jitted `(params, x1, x2, dims_mask, alphas) -> [B, A, H, W, C]` counterfactual map.

    Images 1 are generated with the dims of z where `dims_mask` (`[D]`) is 1 interpolated
    towards image 2's feature, for each weight of `alphas` (`[A]`); `x1`, `x2` are
    `[B, H, W, C]` pairs in [-1, 1] and `params` the trained `{"encoder", "shift"}`.

    Args:
        model: the DiTi model (its frozen prior is closed over).
        steps: increasing DDIM steps (`step_grid`).
        slerp_xt: also slerp the inverted noise maps (the reference's strips).
    """
    steps = np.asarray(steps)

    def run(params, x1, x2, dims_mask, alphas):
        eps_fn = make_eps_fn(model, params)
        encode = lambda x: model.encoder.apply({"params": params["encoder"]}, x)  # noqa: E731
        z1, z2 = encode(x1), encode(x2)
        xt1 = invert(eps_fn, model.alpha_bar, x1, z1, steps)
        xt2 = invert(eps_fn, model.alpha_bar, x2, z2, steps) if slerp_xt else xt1

        def one(alpha):
            xt = slerp(xt1, xt2, alpha) if slerp_xt else xt1
            z = mix_features(z1, z2, dims_mask, alpha)
            return generate(eps_fn, model.alpha_bar, xt, z, steps)

        return jnp.moveaxis(jax.lax.map(one, alphas), 0, 1)

    return jax.jit(run)


def save_strips(path: str, groups: dict, x1, x2, alphas, dims: dict) -> str:
    """Writes `figures.strips_figure(groups, x1, x2, alphas, dims)` as a PNG; returns `path`."""
    return plotting.save_figure(figures.strips_figure(groups, x1, x2, alphas, dims), path)


def pick_pairs(labels, num_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (first, second) of `num_pairs` image pairs of different classes, deterministic.

    With K classes, pair j takes the r-th image (r = j // K) of class j % K and the r-th of
    class (j % K + K // 2) % K, so pairs 0..K-1 use the first image of each class.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    k = len(classes)
    members = {c: np.flatnonzero(labels == c) for c in classes}
    most = min(len(m) for m in members.values()) * k
    if num_pairs > most:
        raise ValueError(f"at most {most} distinct pairs here; got num_pairs={num_pairs}")
    first = [members[classes[j % k]][j // k] for j in range(num_pairs)]
    second = [members[classes[(j % k + k // 2) % k]][j // k] for j in range(num_pairs)]
    return np.array(first), np.array(second)


def transfer_fractions(a1, a2, generated) -> np.ndarray:
    """`f(alpha)` of the module docstring for one attribute: `[A]` (NaN if all d_p = 0).

    Args:
        a1, a2: `[P]` the attribute of images 1 and 2.
        generated: `[P, A]` the attribute of each strip's generations, weight 0 first.
    """
    d = np.asarray(a2, np.float64) - np.asarray(a1, np.float64)
    achieved = np.asarray(generated, np.float64) - np.asarray(generated, np.float64)[:, :1]
    denominator = np.sum(d**2)
    return (d @ achieved) / denominator if denominator > 0 else np.full(achieved.shape[1], np.nan)


def fit_class_probe(images, labels) -> linear_probe.LinearProbe:
    """A multinomial logistic probe on raw pixels (about 0.96 test accuracy on the digits)."""
    images = np.asarray(images)
    return linear_probe.fit_linear_probe(
        images.reshape(len(images), -1), labels, num_classes=digit_tasks.NUM_DIGIT_CLASSES
    )


def digit_measures(images, classes, probe) -> dict[str, np.ndarray]:
    """Measured attributes of digits `[N, H, W, 1]` (clipped to [-1, 1]): ink mass, slant,
    width (`digit_tasks.digit_attributes`) and `p_class`, the probe's probability of
    `classes [N]` (each image's image-2 class)."""
    images = np.clip(np.asarray(images, np.float32), -1.0, 1.0)
    classes = np.asarray(classes)
    measured = digit_tasks.digit_attributes(images, classes)
    probs = jax.nn.softmax(linear_probe.predict(probe, images.reshape(len(images), -1)))
    measured["p_class"] = np.asarray(probs)[np.arange(len(images)), classes]
    return {name: measured[name] for name in MEASURES}


def attribute_transfer(x1, x2, generated: dict, labels2, probe) -> dict:
    """`{group: {attribute: [A] transfer_fractions}}` of strips `{group: [P, A, H, W, 1]}`
    between `x1`, `x2` (`[P, H, W, 1]`; `labels2 [P]`: image 2's classes)."""
    ends = [digit_measures(x, labels2, probe) for x in (x1, x2)]
    out = {}
    for name, images in generated.items():
        num_pairs, num_alphas = images.shape[:2]
        flat = images.reshape(num_pairs * num_alphas, *images.shape[2:])
        strips_measured = digit_measures(flat, np.repeat(labels2, num_alphas), probe)
        out[name] = {
            a: transfer_fractions(ends[0][a], ends[1][a], v.reshape(num_pairs, num_alphas))
            for a, v in strips_measured.items()
        }
    return out


def format_transfer(fractions: dict, alphas) -> str:
    """A text table: one row per group, f(alpha) at the last weight for each attribute."""
    lines = [" ".join(f"{h:>9}" for h in ("group", *MEASURES))]
    for name, by_attribute in fractions.items():
        values = [f"{by_attribute[a][-1]:>9.3f}" for a in MEASURES]
        lines.append(" ".join([f"{name:>9}", *values]))
    return f"fraction of the image-1 -> image-2 change at weight {alphas[-1]:g}:\n" + "\n".join(
        lines
    )


def group_dims(config, latent_dim: int) -> dict[str, np.ndarray]:
    """`{name: dims}` of `config.eval.subset_groups`, earliest subsets first, then "all"."""
    spans = sorted(dict(config.eval.subset_groups).items(), key=lambda item: tuple(item[1]))
    groups = {name: tuple(span) for name, span in spans}
    dims = diti.subset_groups_dims(config, groups) if groups else {}
    return {**dims, "all": np.arange(latent_dim)}


def generate_counterfactuals(workdir: str, config, x1, x2, dims=None) -> dict[str, np.ndarray]:
    """`{group: [P, A, H, W, C]}`: images 1 (`x1 [P, H, W, C]`) generated with the dims of each
    group (`dims`, default `group_dims(config)`) moved towards images 2's feature, at
    `config.eval.counterfactual_alphas` with `counterfactual_steps` DDIM steps (EMA parameters
    of a trained DiTi workdir)."""
    ev = config.eval
    model = diti.make_model(config)
    params = jax.device_put(load_params(workdir, which="ema"))
    run = make_counterfactual_fn(model, step_grid(model.num_steps, ev.counterfactual_steps))
    alphas = jnp.asarray(ev.counterfactual_alphas, jnp.float32)
    latent_dim = model.encoder.latent_dim
    generated = {}
    for name, group in (dims or group_dims(config, latent_dim)).items():
        mask = jnp.zeros((latent_dim,), jnp.float32).at[np.asarray(group)].set(1.0)
        generated[name] = np.asarray(run(params, jnp.asarray(x1), jnp.asarray(x2), mask, alphas))
    return generated


def _save_and_describe(config, generated, x1, x2, pairs, out_path, figure_pairs, dims) -> dict:
    """Saves the strips of the first `figure_pairs` pairs; returns the JSON description."""
    dims = dims or group_dims(config, config.model.latent_dim)
    shown = {name: images[:figure_pairs] for name, images in generated.items()}
    alphas = config.eval.counterfactual_alphas
    if storage.is_primary():
        save_strips(out_path, shown, x1[:figure_pairs], x2[:figure_pairs], alphas, dims)
    return {
        "path": str(out_path),
        "groups": {n: [int(d[0]), int(d[-1])] for n, d in dims.items()},
        "alphas": [float(a) for a in config.eval.counterfactual_alphas],
        "pairs": [[int(a), int(b)] for a, b in zip(*pairs, strict=True)],
    }


def counterfactual_figure(
    workdir: str, config, images, labels, out_path: str, figure_pairs: int = 4
) -> dict:
    """Strips of `config.eval` for a trained DiTi workdir (EMA parameters); saves one PNG.

    For each group of `group_dims` (the subset groups, then "all" dims), each of the first
    `figure_pairs` of `counterfactual_pairs` pairs (`pick_pairs`) gives a row [image 1,
    generations at `counterfactual_alphas`, image 2].

    Returns:
        `{"path": out_path, "groups": {name: [first dim, last dim]}, "alphas": [...],
        "pairs": [...]}`.
    """
    pairs = pick_pairs(labels, config.eval.counterfactual_pairs)
    x1, x2 = np.asarray(images)[pairs[0]], np.asarray(images)[pairs[1]]
    generated = generate_counterfactuals(workdir, config, x1, x2)
    return _save_and_describe(config, generated, x1, x2, pairs, out_path, figure_pairs, None)


def evaluate_workdir_counterfactuals(
    workdir: str, config, out_path: str | None = None, dims: dict | None = None
) -> dict:
    """`counterfactual_figure` on the digits test images, and its measure.

    The PNG (first 4 pairs) goes to `out_path` (default `workdir/figures/counterfactuals.png`);
    the description and `"transfer"`: `{"fractions": {group: {attribute: [A]}},
    "num_pairs"}` (`attribute_transfer` over all `counterfactual_pairs` pairs, class probe
    fitted on the digits train split) to `workdir/eval/counterfactuals.json`. `dims`
    (`{name: dims}`, default `group_dims(config)`) picks other dims to swap, e.g. DiTi's
    groups in a PDAE workdir, as a control.
    """
    if config.data.name != "digits":
        raise ValueError(
            f"counterfactual strips and their measure run on the digits (whose attributes are "
            f"measured), not on {config.data.name!r}; drop counterfactuals from --tasks."
        )
    size = config.data.image_size or 16
    test, train = DigitsSource(config.eval.split, image_size=size), DigitsSource("train", size)
    pairs = pick_pairs(test.labels, config.eval.counterfactual_pairs)
    x1, x2 = test.images[pairs[0]], test.images[pairs[1]]
    generated = generate_counterfactuals(workdir, config, x1, x2, dims)
    out_path = out_path or storage.path(workdir) / "figures" / "counterfactuals.png"
    info = _save_and_describe(config, generated, x1, x2, pairs, out_path, 4, dims)
    probe = fit_class_probe(train.images, train.labels)
    fractions = attribute_transfer(x1, x2, generated, test.labels[pairs[1]], probe)
    info["transfer"] = {
        "fractions": {
            g: {a: [float(v) for v in f] for a, f in by.items()} for g, by in fractions.items()
        },
        "num_pairs": len(x1),
    }
    if storage.is_primary():
        storage.write_json(storage.path(workdir) / "eval" / "counterfactuals.json", info, indent=2)
    return info
