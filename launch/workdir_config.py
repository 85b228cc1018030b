"""The config file of a trained workdir: `--config=<this file>:DIR` is `DIR/config.json`.

`diffssl-evaluate` (`launch/evaluate.py`) uses it when `--config` is not given
(`launch/cli.py`), so `--config.eval.probe_seeds=1` overrides the config the run was trained
with, key by key, and a misspelt key fails by name (the loaded config is locked).
"""

import ml_collections

from diffssl_jax.training import load_config


def _tuples(value):
    """JSON's lists back to the tuples the config files use (so they stay overridable)."""
    if isinstance(value, dict):
        return {key: _tuples(item) for key, item in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value


def get_config(workdir: str) -> ml_collections.ConfigDict:
    """The config `workdir` was trained with (a local path or a `gs://` URI)."""
    return ml_collections.ConfigDict(_tuples(load_config(workdir).to_dict()))
