"""Recipes: corruption + network + objective + which features to read, one method each.

`make_recipe(config)` picks the recipe named by `config.method`; the training loop, the
feature extractor and the samplers only ever see the `Recipe` it returns.
"""

from diffssl_jax.methods import ddpm, diti, ldae, mae, mdm
from diffssl_jax.methods.recipe import Recipe

_RECIPES = {
    "ddpm": ddpm.make_recipe,
    "mdm": mdm.make_recipe,
    "mae": mae.make_recipe,
    "ldae": ldae.make_recipe,
    "diti": diti.make_recipe,
}


def make_recipe(config) -> Recipe:
    """The recipe of `config.method`."""
    if config.method not in _RECIPES:
        raise ValueError(f"unknown method {config.method!r}; available: {sorted(_RECIPES)}")
    return _RECIPES[config.method](config)


__all__ = ["Recipe", "make_recipe"]
