"""What a recipe needs beyond its config, prepared once per workdir: `prepare` and `load`.

`methods.make_recipe(config, inputs)` does no I/O. The two methods that need more than their
config get it here, computed exactly as the recipes used to compute it themselves:

- DiTi, `"prior"` (`methods.diti.Prior`): the EMA parameters and architecture of the
  ε-prediction DDPM workdir `config.diti.prior_workdir` (its latest checkpoint);
- l-DAE, `"pca_basis"` (`corruptions.pca_latent.PCABasis`): the patch PCA fitted on
  `corruption.pca_num_patches` random patches of the training images (`config.data`, drawn
  with `config.seed`; `methods.ldae.sample_patches`, `basis_from_patches`).

`prepare(config, workdir)` (called by `diffssl-train` and `diffssl-pipeline` before training)
computes the missing inputs, checks them with the config (the recipe builds and its network
initialises abstractly) and only then saves them in `workdir/inputs/<name>.npz` (the arrays,
keyed by their `/`-joined path) and `<name>.json` (the rest, written last: its presence marks a
complete input), through `storage` (atomic, local or `gs://`), holding the workdir's lock.
On a rerun or a resume it reads them back instead: a run keeps the prior it started with
even if the prior workdir trains on, and the bits are the same. `load(workdir)` is the
readers' side (features, denoisers, evaluations): a missing input is an error naming the
command that prepares it. Methods without inputs get `{}` from both.
"""

import jax.numpy as jnp
import numpy as np

from diffssl_jax import data, methods, storage
from diffssl_jax.corruptions.pca_latent import PCABasis
from diffssl_jax.methods import diti, ldae
from diffssl_jax.training import validation, workdir_lock
from diffssl_jax.training.checkpoint import load_config, load_params

INPUTS_DIR = "inputs"


def _diti_prior(config) -> diti.Prior:
    """The frozen prior of a DiTi config: `config.diti.prior_workdir`'s EMA parameters."""
    workdir = config.diti.prior_workdir
    if not workdir:
        raise ValueError("config.diti.prior_workdir is empty: pass a trained DDPM workdir")
    prior = load_config(workdir)
    if prior.method != "ddpm" or prior.objective.prediction != "eps":
        raise ValueError(
            f"the DiTi prior must be an eps-prediction DDPM; {workdir} is method "
            f"{prior.method!r} predicting {prior.objective.get('prediction')!r}"
        )
    params = load_params(workdir, which="ema")
    return diti.Prior(prior.model.to_dict(), prior.corruption.schedule, params)


def _pca_basis(config) -> PCABasis:
    """l-DAE's basis: `basis_from_patches` of `sample_patches` of the training data, or the
    identity (`ldae.pixel_basis`) for the pixel tokenizer; the config is checked first."""
    ldae.check_config(config)
    c = config.corruption
    if c.tokenizer == "pixel":
        return ldae.pixel_basis(config)
    source = data.source_for(config.data)
    patches = ldae.sample_patches(source, c.patch_size, c.pca_num_patches, config.seed)
    return ldae.basis_from_patches(config, patches)


# method -> {input name: config -> value}.
_COMPUTE = {"diti": {"prior": _diti_prior}, "ldae": {"pca_basis": _pca_basis}}


def _flatten(tree, prefix: str = "") -> dict[str, np.ndarray]:
    if isinstance(tree, dict):
        return {
            k: v for key, sub in tree.items() for k, v in _flatten(sub, f"{prefix}{key}/").items()
        }
    return {prefix.rstrip("/"): np.asarray(tree)}


def _unflatten(arrays: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for key in sorted(arrays):
        *parents, leaf = key.split("/")
        node = tree
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = arrays[key]
    return tree


def _encode(name: str, value) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, JSON metadata) of an input."""
    if name == "prior":
        return _flatten(value.params), {"model": value.model, "schedule": value.schedule}
    arrays = {k: np.asarray(getattr(value, k)) for k in ("components", "eigenvalues", "mean")}
    return arrays, {"center": bool(value.center), "whiten": bool(value.whiten)}


def _decode(name: str, arrays: dict[str, np.ndarray], meta: dict):
    if name == "prior":
        return diti.Prior(meta["model"], meta["schedule"], _unflatten(arrays))
    arrays = {key: jnp.asarray(value) for key, value in arrays.items()}  # as fitted
    return PCABasis(**arrays, center=meta["center"], whiten=meta["whiten"])


def _paths(workdir: str, name: str):
    root = storage.path(workdir) / INPUTS_DIR
    return root / f"{name}.npz", root / f"{name}.json"


def _read(workdir: str, name: str):
    arrays_path, meta_path = _paths(workdir, name)
    meta = storage.read_json(meta_path)
    with arrays_path.open("rb") as f, np.load(f, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    return _decode(name, arrays, meta)


def _write(workdir: str, name: str, value) -> None:
    arrays, meta = _encode(name, value)
    arrays_path, meta_path = _paths(workdir, name)
    storage.save_npz(arrays_path, **arrays)
    storage.write_json(meta_path, meta, indent=2)  # last: marks the input complete


def compute(config) -> dict:
    """Every input of `config.method`, computed now (no workdir: nothing is read or saved)."""
    return {name: fn(config) for name, fn in _COMPUTE.get(config.method, {}).items()}


def prepare(config, workdir: str) -> dict:
    """The inputs of `config`'s recipe: read back from `workdir`, or computed and saved there.

    Computed inputs are checked (the config's ranges, the recipe built with them, its network
    initialised abstractly) before anything is written.

    Raises:
        validation.ConfigError: a bad config (nothing was written).
        ValueError: an input cannot be computed (e.g. DiTi's prior is not an ε-DDPM).
    """
    needed = _COMPUTE.get(config.method, {})
    if not needed:
        return {}
    validation.check_config(config)
    saved = [name for name in needed if _paths(workdir, name)[1].exists()]
    inputs = {
        name: _read(workdir, name) if name in saved else fn(config) for name, fn in needed.items()
    }
    if len(saved) == len(needed):
        return inputs
    recipe = methods.make_recipe(config, inputs)
    validation.check_model_fits_data(recipe.init, tuple(config.data.image_shape), config.seed)
    with workdir_lock.hold(workdir):
        if storage.is_primary():
            for name in needed:
                if name not in saved:
                    _write(workdir, name, inputs[name])
    return inputs


def load(workdir: str, config=None) -> dict:
    """The saved inputs of a workdir's recipe (`{}` for a method without inputs).

    Args:
        workdir: a training workdir.
        config: its config; None to read `workdir/config.json`.

    Raises:
        FileNotFoundError: an input was never prepared (the message names the command).
    """
    config = load_config(workdir) if config is None else config
    needed = _COMPUTE.get(config.method, {})
    missing = [name for name in needed if not _paths(workdir, name)[1].exists()]
    if missing:
        where = storage.path(workdir) / INPUTS_DIR
        raise FileNotFoundError(
            f"{where} lacks the recipe input(s) {missing} of method {config.method!r}. Prepare "
            f"them by rerunning its training command (`diffssl-train --config=<its config> "
            f"--workdir={workdir}`: a finished run is not redone) or, in Python, "
            f"`diffssl_jax.recipe_inputs.prepare(diffssl_jax.load_config({workdir!r}), "
            f"{workdir!r})`."
        )
    return {name: _read(workdir, name) for name in needed}


def load_recipe(workdir: str, config=None) -> methods.Recipe:
    """`methods.make_recipe(config, load(workdir, config))`; config None: the workdir's own."""
    config = load_config(workdir) if config is None else config
    return methods.make_recipe(config, load(workdir, config))
