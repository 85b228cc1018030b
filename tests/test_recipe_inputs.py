"""Recipe inputs: prepared once in the workdir, read back bit for bit, missing ones named."""

import json

import jax
import numpy as np
import pytest

from diffssl_jax import methods, recipe_inputs
from diffssl_jax.configs.ddpm.digits import get_config as get_ddpm_config
from diffssl_jax.configs.diti.digits import get_config as get_diti_config
from diffssl_jax.configs.ldae.digits import get_config as get_ldae_config
from diffssl_jax.methods import diti


def _leaves_equal(a, b) -> bool:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in pairs)


def test_ldae_basis_is_saved_once_and_read_back_bit_for_bit(tmp_path, monkeypatch):
    config, workdir = get_ldae_config("tiny"), str(tmp_path / "w")
    fresh = recipe_inputs.compute(config)["pca_basis"]
    prepared = recipe_inputs.prepare(config, workdir)["pca_basis"]
    assert sorted(p.name for p in (tmp_path / "w" / "inputs").iterdir()) == [
        "pca_basis.json",
        "pca_basis.npz",
    ]
    assert _leaves_equal(prepared, fresh)

    def refit(config):
        raise AssertionError("a resumed run must read the saved basis, not refit it")

    monkeypatch.setitem(recipe_inputs._COMPUTE["ldae"], "pca_basis", refit)
    resumed = recipe_inputs.prepare(config, workdir)["pca_basis"]
    loaded = recipe_inputs.load(workdir, config)["pca_basis"]
    for basis in (resumed, loaded):
        assert _leaves_equal(basis, fresh)
        assert (basis.center, basis.whiten) == (fresh.center, fresh.whiten)


def test_diti_prior_round_trips_bit_for_bit(tmp_path, monkeypatch):
    ddpm = get_ddpm_config("tiny")
    params = jax.jit(methods.make_recipe(ddpm).init)(jax.random.key(3))
    prior = diti.Prior(ddpm.model.to_dict(), ddpm.corruption.schedule, jax.device_get(params))
    monkeypatch.setitem(recipe_inputs._COMPUTE["diti"], "prior", lambda config: prior)
    config, workdir = get_diti_config("tiny"), str(tmp_path)
    recipe_inputs.prepare(config, workdir)
    loaded = recipe_inputs.load(workdir, config)["prior"]
    assert _leaves_equal(loaded.params, prior.params)
    as_saved = json.loads(json.dumps(prior.model))  # a config.json's lists, as the prior's
    assert (loaded.model, loaded.schedule) == (as_saved, prior.schedule)
    recipe = methods.make_recipe(config, {"prior": loaded})
    assert set(jax.eval_shape(recipe.init, jax.random.key(0))) == {"encoder", "shift"}


def test_missing_input_names_the_command_that_prepares_it(tmp_path):
    config = get_ldae_config("tiny")
    (tmp_path / "config.json").write_text(config.to_json())
    with pytest.raises(FileNotFoundError, match=r"\['pca_basis'\].*diffssl-train.*prepare"):
        recipe_inputs.load(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="pca_basis"):
        recipe_inputs.load_recipe(str(tmp_path))


def test_methods_without_inputs_prepare_nothing(tmp_path):
    config = get_ddpm_config("tiny")
    assert recipe_inputs.prepare(config, str(tmp_path / "w")) == {}
    assert not (tmp_path / "w").exists()


def test_a_bad_config_writes_no_input(tmp_path):
    config = get_ldae_config("tiny")
    config.corruption.latent_dim = 17
    with pytest.raises(ValueError, match="latent_dim must be in"):
        recipe_inputs.prepare(config, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()
