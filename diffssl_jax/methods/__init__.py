"""Recipes: corruption + network + objective + which features to read, one method each.

`make_recipe(config, inputs)` picks the recipe named by `config.method`; the training loop,
the feature extractor and the samplers only ever see the `Recipe` it returns. Building a
recipe does no I/O: what a method needs beyond its config comes in `inputs`
(`diffssl_jax.recipe_inputs`: DiTi's frozen prior, l-DAE's PCA basis; None for the others).
No module here imports `training`, `data` or `evaluation`.
"""

from diffssl_jax.methods import ddpm, diti, edm, ldae, mae, mdm
from diffssl_jax.methods.recipe import Recipe

_RECIPES = {
    "ddpm": ddpm.make_recipe,
    "mdm": mdm.make_recipe,
    "mae": mae.make_recipe,
    "ldae": ldae.make_recipe,
    "diti": diti.make_recipe,
    "edm": edm.make_recipe,
}


def make_recipe(config, inputs: dict | None = None) -> Recipe:
    """The recipe of `config.method`, with its `inputs` (`recipe_inputs.load`) if it has any."""
    if config.method not in _RECIPES:
        raise ValueError(f"unknown method {config.method!r}; available: {sorted(_RECIPES)}")
    return _RECIPES[config.method](config, inputs)


__all__ = ["Recipe", "make_recipe"]
