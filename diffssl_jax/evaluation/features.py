"""Frozen features of a trained (or randomly initialised) network, read in bounded chunks.

`load_features(workdir)` returns a `FeatureExtractor`: calling it on images `[N, H, W, C]`
gives `{block_name: [N, h, w, c]}` from `recipe.features` at time `t` (Baranchuk et al.
2022; MDM, docs/methods.md A.4: decoder-block outputs, bilinearly upsampled and concatenated),
optionally resized, concatenated (key "features") or global-average-pooled to `[N, sum c]`.

Memory (ddpm-segmentation #11, docs/methods.md D): images go through the network in jitted chunks
of `batch_size`; pooled extraction keeps only the pooled vectors, so a dataset's pooled
features cost `N * sum c` floats. The dense per-pixel path returns arrays for ALL the images
passed: callers that need many pixels stream by calling the extractor on a few images at a
time (`evaluation.segmentation` does).

Randomness: the corruption at time `t` (Gaussian noise, MDM masks) of the image at position
`i` of the array passed uses the key `fold_in(key(seed), i)`, and each image goes through the
network on its own (`vmap` over images). Features therefore do not depend on `batch_size`
(up to float rounding), but they do depend on the image's position in the call: two calls
on different chunks reuse the same keys for their first images.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffssl_jax import methods, recipe_inputs, storage
from diffssl_jax.training.checkpoint import load_config, load_params

WHICH = ("ema", "params", "random_init")
POOLINGS = ("mean", "flatten")
_READ = ("t", "blocks", "resize_to", "concat", "pooled", "pooling", "pool_grid")
_SETTINGS = (*_READ, "batch_size", "seed")


def _recipe_blocks(features_fn, params, images, rng, t, blocks) -> tuple[list, tuple]:
    """([block names in the recipe's order], (per-image feature maps,)) for `vmap`."""
    names = []  # captured while tracing: jit and vmap outputs would sort dict keys

    def one(x, key):
        feats = features_fn(params, x[None], key, t=t, blocks=blocks)
        names[:] = list(feats)
        return tuple(value[0] for value in feats.values())

    return names, jax.vmap(one)(images, rng)


def grid_pool(maps, grid: int):
    """Average-pools `[N, h, w, c]` maps over a `grid x grid` partition, flattened in (row,
    column, channel) order: `[N, grid^2 c]`. `grid = 1` is the global average pool; the grid
    must divide h and w. Works on NumPy and JAX arrays."""
    n, h, w, c = maps.shape
    if grid < 1 or h % grid or w % grid:
        raise ValueError(f"pool grid {grid} must be >= 1 and divide the map size {h}x{w}")
    cells = maps.reshape(n, grid, h // grid, grid, w // grid, c).mean((2, 4))
    return cells.reshape(n, grid * grid * c)


def _postprocess(feats: dict, *, resize_to, concat: bool, pooled: bool, pooling: str, pool_grid):
    """Resizes (bilinear, half-pixel centres), then concatenates or pools the block maps."""
    for name, value in feats.items():
        if value.ndim != 4:
            raise ValueError(f"feature {name!r} has shape {value.shape}; need [b, h, w, c] maps")
    if resize_to is not None:
        new_shape = lambda v: (v.shape[0], *resize_to, v.shape[-1])  # noqa: E731
        feats = {k: jax.image.resize(v, new_shape(v), "bilinear") for k, v in feats.items()}
    if pooled and pooling == "flatten":
        return jnp.concatenate([v.reshape(len(v), -1) for v in feats.values()], -1).astype("f4")
    if pooled:
        return jnp.concatenate([grid_pool(v, pool_grid) for v in feats.values()], -1).astype("f4")
    if concat:
        sizes = {name: v.shape[1:3] for name, v in feats.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"concat needs equal sizes; pass resize_to. Block sizes: {sizes}")
        return {"features": jnp.concatenate(list(feats.values()), axis=-1).astype(jnp.float32)}
    return feats


@functools.partial(jax.jit, static_argnames=("features_fn", *_READ))
def _extract_chunk(params, images, indices, rng, *, features_fn, t, blocks, **postprocess):
    """Features of one chunk `[b, H, W, C]`; image `j` uses the key `fold_in(rng, indices[j])`."""
    keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(indices)
    names, maps = _recipe_blocks(features_fn, params, images, keys, t, blocks)
    feats = dict(zip(names, maps, strict=True))
    return _postprocess(feats, **postprocess)


def _check_images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0 or not np.issubdtype(images.dtype, np.floating):
        raise ValueError(
            f"images must be non-empty float [N, H, W, C], got {images.dtype} {images.shape}"
        )
    return images.astype(np.float32, copy=False)


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureExtractor:
    """`images [N, H, W, C] -> features`, computed in jitted chunks (module docstring).

    Attributes:
        features_fn: `recipe.features(params, images, rng, *, t, blocks) -> {name: map}`.
        params: the network parameters it reads.
        t: diffusion time in [0, 1] at which features are read.
        blocks: feature names, or None for the recipe's default.
        resize_to: `(H, W)` to bilinearly resize every map to, or None.
        concat: return `{"features": [N, H, W, sum c]}` (needs equal sizes or `resize_to`).
        pooled: return one `[N, D]` array: the blocks, each pooled, concatenated.
        pooling: "mean" (average pool over `pool_grid`, `D = sum pool_grid^2 c`) or
            "flatten" (`D = sum h w c`).
        pool_grid: cells per side of the "mean" pooling (`grid_pool`); 1 = global average.
        batch_size: images per jitted call (bounds memory).
        seed: root of the per-image corruption keys.
        info: provenance written with results (workdir, which, step).
    """

    features_fn: Callable
    params: Any
    t: float
    blocks: tuple[str, ...] | None = None
    resize_to: tuple[int, int] | None = None
    concat: bool = False
    pooled: bool = False
    pooling: str = "mean"
    pool_grid: int = 1
    batch_size: int = 64
    seed: int = 0
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not 0.0 <= self.t <= 1.0:
            raise ValueError(f"t must lie in [0, 1] (continuous time), got {self.t}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if int(self.pool_grid) < 1:
            raise ValueError(f"pool_grid must be >= 1, got {self.pool_grid}")
        if self.resize_to is not None and (len(self.resize_to) != 2 or min(self.resize_to) < 1):
            raise ValueError(f"resize_to must be (H, W) with H, W >= 1, got {self.resize_to}")
        if self.pooled and (self.concat or self.resize_to is not None):
            raise ValueError("pooled features are already one vector: drop concat and resize_to")

    def replace(self, **changes) -> "FeatureExtractor":
        """A copy with other settings (for example `pooled=True`), sharing the parameters."""
        return dataclasses.replace(self, **changes)

    def __call__(self, images):
        """Features of `images [N, H, W, C]` in [-1, 1].

        Returns:
            `{name: [N, h, w, c]}`, `{"features": [N, H', W', D]}` with `concat`, or `[N, D]`
            with `pooled`; NumPy float arrays on the host.
        """
        images = _check_images(images)
        num = len(images)
        # Chunks of `batch_size`; fewer images are padded to a power of two, which bounds the
        # number of compiled shapes when callers pass chunks of varying sizes.
        size = min(self.batch_size, 1 << (num - 1).bit_length())
        chunks = []
        for start in range(0, num, size):
            chunk = images[start : start + size]
            count = len(chunk)
            if count < size:  # pad to one compiled shape; padded rows are dropped below
                chunk = np.concatenate([chunk, np.zeros((size - count, *chunk.shape[1:]), "f4")])
            out = _extract_chunk(
                self.params,
                chunk,
                jnp.arange(start, start + size, dtype=jnp.int32),
                jax.random.key(self.seed),
                features_fn=self.features_fn,
                t=float(self.t),
                blocks=self.blocks,
                resize_to=None if self.resize_to is None else tuple(self.resize_to),
                concat=self.concat,
                pooled=self.pooled,
                pooling=self.pooling,
                pool_grid=int(self.pool_grid),
            )
            chunks.append(jax.tree.map(lambda a, c=count: np.asarray(a[:c]), out))
        return jax.tree.map(lambda *parts: np.concatenate(parts), *chunks)

    def block_shapes(self, image_shape) -> dict[str, tuple[int, ...]]:
        """`{name: (h, w, c)}` of the blocks read for one image of `image_shape` (H, W, C)."""
        names = []

        def trace(params, x, rng):
            found, maps = _recipe_blocks(self.features_fn, params, x, rng, self.t, self.blocks)
            names.extend(found)
            return maps

        image = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
        maps = jax.eval_shape(trace, self.params, image, jax.random.key(0)[None])
        return {n: tuple(m.shape[1:]) for n, m in zip(names, maps, strict=True)}

    def settings(self) -> dict:
        """The JSON-able settings and provenance of this extractor."""
        return {**{k: getattr(self, k) for k in _SETTINGS}, **self.info}


def random_init_params(config, recipe):
    """The parameters training `recipe` with `config` starts from (its step-0
    `TrainState.params`): the same key split as `training.state.create_train_state`."""
    rng_init, _ = jax.random.split(jax.random.key(config.seed))
    return jax.jit(recipe.init)(rng_init)


def _extractor(config, params, recipe, *, t, blocks, batch_size, info, **settings):
    """A `FeatureExtractor` whose unset t, blocks and batch_size come from `config.eval`."""
    blocks = tuple(config.eval.feature_blocks) if blocks is None else tuple(blocks)
    return FeatureExtractor(
        features_fn=recipe.features,
        params=jax.device_put(params),
        t=float(config.eval.feature_t if t is None else t),
        blocks=blocks or None,
        batch_size=int(config.eval.feature_batch_size if batch_size is None else batch_size),
        info=info,
        **settings,
    )


def load_features(
    workdir: str,
    *,
    t: float | None = None,
    blocks=None,
    which: str = "ema",
    step: int | None = None,
    resize_to: tuple[int, int] | None = None,
    concat: bool = False,
    pooled: bool = False,
    batch_size: int | None = None,
    seed: int = 0,
) -> FeatureExtractor:
    """The feature extractor of a training workdir.

    Args:
        workdir: a training workdir (`config.json` and `checkpoints/`).
        t: diffusion time in [0, 1]; None for the workdir's `config.eval.feature_t`.
        blocks: feature names; None for `config.eval.feature_blocks`, where () means the
            recipe's default (DDPM: every decoder block `dec_i`).
        which: "ema" or "params" of a checkpoint, or "random_init": the same network at its
            training initialisation (a baseline; no checkpoint needed).
        step: the checkpoint step; None for the latest.
        resize_to, concat, pooled: see `FeatureExtractor`.
        batch_size: images per jitted call; None for `config.eval.feature_batch_size`.
        seed: root of the per-image corruption keys.

    Returns:
        A `FeatureExtractor`.
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    if not storage.path(workdir).is_dir():
        raise FileNotFoundError(f"workdir {workdir!r} does not exist: train it first")
    config = load_config(workdir)
    recipe = recipe_inputs.load_recipe(workdir, config)
    if which == "random_init":
        params = random_init_params(config, recipe)
    else:
        params = load_params(workdir, step=step, which=which)
    info = {"workdir": str(storage.path(workdir)), "which": which, "step": step}
    settings = {"resize_to": resize_to, "concat": concat, "pooled": pooled, "seed": seed}
    return _extractor(
        config, params, recipe, t=t, blocks=blocks, batch_size=batch_size, info=info, **settings
    )


def random_init_features(config, *, t=None, blocks=None, batch_size=None, **settings):
    """`load_features(..., which="random_init")` from a config alone (no workdir; the recipe's
    inputs are computed, `recipe_inputs.compute`)."""
    recipe = methods.make_recipe(config, recipe_inputs.compute(config))
    params = random_init_params(config, recipe)
    info = {"which": "random_init", "method": config.method}
    return _extractor(
        config, params, recipe, t=t, blocks=blocks, batch_size=batch_size, info=info, **settings
    )


def _raw_pixels(params, images, rng, *, t, blocks):
    """The identity "network": the image itself is its one feature map."""
    del params, rng, t, blocks
    return {"pixels": images}


def raw_pixel_features(*, batch_size: int = 256, **settings):
    """The raw-pixel baseline with the `FeatureExtractor` interface.

    Dense: `{"pixels": images}` (one feature per pixel and channel). Pooled: the flattened
    image `[N, H W C]` (averaging pixels would leave only the ink mass), the usual raw-pixel
    linear-probe baseline (docs/methods.md F).
    """
    return FeatureExtractor(
        features_fn=_raw_pixels,
        params={},
        t=0.0,
        pooling="flatten",
        batch_size=batch_size,
        info={"which": "raw_pixels"},
        **settings,
    )
