"""Counterfactual generation with DiTi: DDIM inversion, then generation with a mixed feature.

Yue et al. 2024 (Sec. 4.3; reference `eval/counterfactual_generation.py`, methods.md B.6):
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
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from diffssl_jax import plotting
from diffssl_jax.data import DigitsSource
from diffssl_jax.methods import diti
from diffssl_jax.training.checkpoint import load_params


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


def strips(x1, x2, generated) -> np.ndarray:
    """Rows [x1, generated..., x2], flattened to `[B * (A + 2), H, W, C]` for a grid."""
    rows = np.concatenate(
        [np.asarray(x1)[:, None], np.asarray(generated), np.asarray(x2)[:, None]], 1
    )
    return rows.reshape(-1, *rows.shape[2:])


def save_strips(path: str, groups: dict, x1, x2, title: str) -> str:
    """One figure: for each named group, its strips (rows), groups one after the other."""
    images = np.concatenate([strips(x1, x2, generated) for generated in groups.values()])
    num_cols = next(iter(groups.values())).shape[1] + 2
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return plotting.save_image_grid(images, path, num_cols=num_cols, title=title, scale=1.0)


def pick_pairs(labels, num_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (first, second) of `num_pairs` image pairs of different classes, deterministic.

    Pair j takes the first image of class j % K and the first of class (j % K + K // 2) % K.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    first = {c: int(np.flatnonzero(labels == c)[0]) for c in classes}
    a = [classes[j % len(classes)] for j in range(num_pairs)]
    b = [classes[(j % len(classes) + len(classes) // 2) % len(classes)] for j in range(num_pairs)]
    return np.array([first[c] for c in a]), np.array([first[c] for c in b])


def counterfactual_figure(workdir: str, config, images, labels, out_path: str) -> dict:
    """Strips of `config.eval` for a trained DiTi workdir (EMA parameters); saves one PNG.

    For each group of `config.eval.subset_groups` ("all" when there are none), each of
    `counterfactual_pairs` pairs gives a row [image 1, generations at
    `counterfactual_alphas`, image 2], with `counterfactual_steps` DDIM steps.

    Returns:
        `{"path": out_path, "groups": {name: [first, last]}, "alphas": [...], "pairs": [...]}`.
    """
    ev = config.eval
    model = diti.make_model(config)
    params = jax.device_put(load_params(workdir, which="ema"))
    i1, i2 = pick_pairs(labels, ev.counterfactual_pairs)
    x1, x2 = jnp.asarray(images[i1]), jnp.asarray(images[i2])
    run = make_counterfactual_fn(model, step_grid(model.num_steps, ev.counterfactual_steps))
    alphas = jnp.asarray(ev.counterfactual_alphas, jnp.float32)
    latent_dim = model.encoder.latent_dim
    spans = sorted(dict(ev.subset_groups).items(), key=lambda item: tuple(item[1]))
    groups = {name: tuple(span) for name, span in spans}  # earliest subsets first
    dims = diti.subset_groups_dims(config, groups) if groups else {"all": np.arange(latent_dim)}
    generated = {}
    for name, group_dims in dims.items():
        mask = jnp.zeros((latent_dim,), jnp.float32).at[group_dims].set(1.0)
        generated[name] = np.asarray(run(params, x1, x2, mask, alphas))
    title = "rows: " + ", ".join(f"{n} {list(groups.get(n, []))}" for n in generated)
    save_strips(out_path, generated, x1, x2, title)
    return {
        "path": out_path,
        "groups": {n: [int(d[0]), int(d[-1])] for n, d in dims.items()},
        "alphas": [float(a) for a in ev.counterfactual_alphas],
        "pairs": [[int(a), int(b)] for a, b in zip(i1, i2, strict=True)],
    }


def evaluate_workdir_counterfactuals(workdir: str, config, out_path: str | None = None) -> dict:
    """`counterfactual_figure` on the digits test images; the PNG goes to `out_path` (default
    `workdir/figures/counterfactuals.png`) and its description to `workdir/eval/`."""
    test = DigitsSource(config.eval.split, image_size=config.data.image_size or 16)
    out_path = out_path or os.path.join(workdir, "figures", "counterfactuals.png")
    info = counterfactual_figure(workdir, config, test.images, test.labels, out_path)
    os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
    with open(os.path.join(workdir, "eval", "counterfactuals.json"), "w") as f:
        json.dump(info, f, indent=2)
    return info
