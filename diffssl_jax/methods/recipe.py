"""The `Recipe` interface every method implements, and the check of a recipe's inputs."""

from typing import Callable, NamedTuple


class Recipe(NamedTuple):
    """What the shared training and evaluation stack needs from a method.

    A recipe is built by `make_recipe(config, inputs=None)` without any I/O: what a method
    needs beyond its config (DiTi's frozen prior, l-DAE's PCA basis) arrives in `inputs`,
    prepared once per workdir by `diffssl_jax.recipe_inputs`. Callers never test the method's
    name: they use the optional fields below (None when the method does not offer them).

    Attributes:
        init: `(rng) -> params`, the network's parameters (shapes from `config.data`).
        loss: `(params, batch, rng) -> (scalar loss, {name: scalar})` on the global batch.
        features: `(params, images [B, H, W, C], rng, **at) -> {name: [B, h, w, c]}`.
        sample: `(params, rng, num) -> images [num, H, W, C]` in [-1, 1], or None for methods
            that are not generative.
        restore: `(params, images, rng, *, t) -> (corrupted, restored)` images in [-1, 1] for
            methods that restore a corruption (figures), or None.
        denoiser: `params -> denoiser(x, sigma) -> x0_hat`, the VE denoiser contract of
            `sampling.denoisers` (one example, x = x0 + sigma eps), for methods whose network
            is a Gaussian denoiser (samplers, posterior methods, EM), or None.
        feature_groups: `(spans {name: (first, last)}) -> {name: dims [k]}`, the feature
            dims of named ranges of a partitioned feature (DiTi's subsets), or None.
        counterfactuals: `(params, x1, x2, groups {name: dims}, *, alphas, num_steps) ->
            {name: [P, A, H, W, C]}`: images `x1 [P, H, W, C]` regenerated with each group's
            feature dims moved towards `x2`'s by each weight of `alphas` (DiTi), or None.
    """

    init: Callable
    loss: Callable
    features: Callable
    sample: Callable | None
    restore: Callable | None = None
    denoiser: Callable | None = None
    feature_groups: Callable | None = None
    counterfactuals: Callable | None = None


PREPARE_HINT = (
    "prepare them once with `diffssl_jax.recipe_inputs.prepare(config, workdir)` (diffssl-train "
    "and diffssl-pipeline do this before training) and pass `recipe_inputs.load(workdir)`"
)


def require_inputs(inputs: dict | None, names: tuple[str, ...], method: str) -> dict:
    """`inputs` if it holds every one of `names`; a ValueError naming what is missing.

    Args:
        inputs: the `inputs` argument of a `make_recipe`.
        names: the inputs the method needs.
        method: its `config.method` (for the message).
    """
    missing = [name for name in names if name not in (inputs or {})]
    if missing:
        raise ValueError(
            f"method {method!r} needs the recipe input(s) {missing}, computed from its config "
            f"and data outside the recipe: {PREPARE_HINT}."
        )
    return inputs
