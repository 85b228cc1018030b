"""Counterfactual strips of a recipe that offers them (`Recipe.counterfactuals`: DiTi) and
how much they move measured digit attributes.

The generation itself (DiTi: DDIM inversion, then generation with some feature dims
interpolated towards a second image's; `methods/diti_counterfactuals.py`, docs/methods.md
B.6) belongs to the method; this module picks the image pairs, runs the recipe's
`counterfactuals` on a workdir's EMA parameters for the feature groups of
`config.eval.subset_groups` (`Recipe.feature_groups`) and all dims, draws the strips, and
measures them.

Measure (digits): does swapping a group of subsets move the attributes it should? Each
strip's images are measured (ink mass, slant and width of docs/methods.md F, and the
probability a pixel-space class probe gives image 2's class), and `transfer_fractions`
summarises, over pairs p, how much of the change from image 1 to image 2 a weight achieves:

    f_a(alpha) = sum_p d_p (a(g_p(alpha)) - a(g_p(0))) / sum_p d_p^2,  d_p = a(x2_p) - a(x1_p),

the least-squares slope of the achieved change on the full change (1: the attribute moved
all the way to image 2's value; 0: it did not move; it is scale-free). Baselining at the
weight-0 generation g_p(0), not x1_p, removes the reconstruction error from the numerator.

Reconstruction check (`reconstruction_psnr`): the PSNR of DiTi's guided DDIM round trip
(inversion and generation guided by the image's own z) against the frozen prior's alone
(G = 0). A shift branch trained long enough must beat the prior (docs/diti.md).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from diffssl_jax import plotting, recipe_inputs, storage
from diffssl_jax.data import DigitsSource
from diffssl_jax.evaluation import attributes, digit_tasks, figures, image_metrics, linear_probe
from diffssl_jax.methods import diti, diti_counterfactuals
from diffssl_jax.training.checkpoint import load_params

# Height is left out: the ink spans all 16 rows in 445 of the 450 test digits (nothing to move).
MEASURES = ("ink_mass", "slant", "width", "p_class")


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


def _feature_dim(recipe, params, image) -> int:
    """D of the recipe's pooled default features (DiTi: the length of z)."""
    features = functools.partial(recipe.features, t=0.0)
    shapes = jax.eval_shape(features, params, image[None], jax.random.key(0))
    return int(sum(shape.shape[-1] for shape in shapes.values()))


def group_dims(recipe, config, num_dims: int) -> dict[str, np.ndarray]:
    """`{name: dims}` of `config.eval.subset_groups` (`attributes.feature_group_dims`,
    earliest subsets first), then "all" `num_dims` dims."""
    return {**attributes.feature_group_dims(recipe, config), "all": np.arange(num_dims)}


def generate_counterfactuals(workdir: str, config, x1, x2, dims=None) -> tuple[dict, dict]:
    """`({group: [P, A, H, W, C]}, {group: dims})`: images 1 (`x1 [P, H, W, C]`) generated
    with the dims of each group (`dims`, default `group_dims`) moved towards images 2's
    feature, at `config.eval.counterfactual_alphas` with `counterfactual_steps` DDIM steps
    (the recipe's `counterfactuals`, EMA parameters of the workdir).

    Raises:
        ValueError: the workdir's recipe offers no counterfactuals.
    """
    recipe = recipe_inputs.load_recipe(workdir, config)
    if recipe.counterfactuals is None:
        raise ValueError(
            f"method {config.method!r} offers no counterfactual generation (a recipe with "
            "`counterfactuals`, e.g. diti); drop counterfactuals from --tasks."
        )
    ev = config.eval
    params = jax.device_put(load_params(workdir, which="ema"))
    if dims is None:
        dims = group_dims(recipe, config, _feature_dim(recipe, params, np.asarray(x1)[0]))
    generated = recipe.counterfactuals(
        params, x1, x2, dims, alphas=ev.counterfactual_alphas, num_steps=ev.counterfactual_steps
    )
    return generated, dims


def reconstructions(model, params, images, num_steps: int) -> dict[str, np.ndarray]:
    """`{"prior": [N, H, W, C], "guided": [N, H, W, C]}`: `images` after a DDIM round trip
    with `num_steps` steps each way (`diti_counterfactuals.make_reconstruction_fn`, x0
    estimate clipped as in the strips): "guided" with eps_θ - sqrt(1 - ab_n) G(x, z m(n), n)
    and z = E(x) (`diti.sample_eps`), "prior" with eps_θ alone (G = 0).

    Args:
        model: a `diti.DiTiModel`; params: its `{"encoder", "shift"}` parameters.
        images: in [-1, 1]; num_steps: DDIM steps of each direction.
    """
    steps = diti_counterfactuals.step_grid(model.num_steps, num_steps)

    def encode(p, x):
        return model.encoder.apply({"params": p["encoder"]}, x)

    def prior_eps(p, x, n, z):
        return diti.prior_outputs(model, x, jnp.full((x.shape[0],), n, jnp.int32))[0]

    images = jnp.asarray(images)
    out = {}
    for name, eps_fn in (
        ("prior", prior_eps),
        ("guided", functools.partial(diti.sample_eps, model)),
    ):
        run = diti_counterfactuals.make_reconstruction_fn(encode, eps_fn, model.alpha_bar, steps)
        out[name] = np.asarray(run(params, images))
    return out


def reconstruction_psnrs(model, params, images, num_steps: int) -> dict[str, np.ndarray]:
    """`{"prior": [N], "guided": [N]}` PSNR (dB, data range 2) of each of `images` against its
    `reconstructions` (same arguments)."""
    out = reconstructions(model, params, images, num_steps)
    return {k: np.asarray(image_metrics.psnr(v, images)) for k, v in out.items()}


def reconstruction_psnr(workdir: str, config, images, num_steps: int | None = None) -> dict:
    """`reconstruction_psnrs` of a trained DiTi workdir's EMA parameters (and its saved
    prior), with `num_steps` (default `config.eval.counterfactual_steps`) DDIM steps.

    Raises:
        ValueError: the workdir is not a DiTi run.
    """
    if config.method != "diti":
        raise ValueError(f"reconstruction_psnr needs a DiTi workdir, got method {config.method!r}")
    model = diti.make_model(config, recipe_inputs.load(workdir, config)["prior"])
    params = jax.device_put(load_params(workdir, which="ema"))
    return reconstruction_psnrs(
        model, params, images, num_steps or config.eval.counterfactual_steps
    )


def _save_and_describe(config, generated, x1, x2, pairs, out_path, figure_pairs, dims) -> dict:
    """Saves the strips of the first `figure_pairs` pairs; returns the JSON description."""
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
    generated, dims = generate_counterfactuals(workdir, config, x1, x2)
    return _save_and_describe(config, generated, x1, x2, pairs, out_path, figure_pairs, dims)


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
    generated, dims = generate_counterfactuals(workdir, config, x1, x2, dims)
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
