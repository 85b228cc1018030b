"""Checks of a training config that run before anything is written to the workdir.

`training.train` calls `check_config` (ranges and cadences), `check_model_fits_data` (an
abstract initialisation of the network for the data's image shape: shapes, GroupNorm groups, the
U-Net's downsampling) and `resume_conflicts` (a resumed run's saved config against the new
one) before it writes `config.json`, so a refused command leaves the workdir as it was and
the corrected command runs in the same workdir. Every error is a `ConfigError` naming the
key, the value and what to set instead.
"""

import copy
import fnmatch
import math
from typing import Any, Callable

import jax
import ml_collections

# (key, lowest allowed value, what the key means): integers, checked when the key exists.
_INTEGERS = (
    ("train.num_steps", 1, "the optimiser steps in total"),
    ("train.batch_size", 1, "the global batch size"),
    ("train.log_every_steps", 1, "the logging period, in steps"),
    ("train.checkpoint_every_steps", 1, "the checkpoint period, in steps"),
    ("train.keep_checkpoints", 1, "how many checkpoints to keep"),
    ("train.sample_every_steps", 0, "the sample-grid period, in steps (0 disables it)"),
    ("optim.warmup_steps", 0, "the warm-up length, in steps"),
    ("mesh.num_devices", 0, "the devices on the data axis (0: all)"),
    ("pipeline.num_workers", 0, "the grain worker processes (0: the main process)"),
)
# (key, lowest, highest, what the key means): real numbers, checked when the key exists.
_REALS = (
    ("optim.weight_decay", 0.0, math.inf, "the decoupled weight decay"),
    ("optim.grad_clip_norm", 0.0, math.inf, "the global-norm clipping (0 disables it)"),
    ("optim.ema_decay", 0.0, 1.0, "the EMA decay per step"),
)
_SEED_LIMIT = 2**32 - 1  # grain takes seeds in [0, 2**32); the sample grids use seed + 1
_DECAYS = ("constant", "cosine", "linear")


class ConfigError(ValueError):
    """A config that cannot train; the message names the key and what to set instead."""


def _get(config: ml_collections.ConfigDict, key: str) -> Any:
    """`config.a.b` for `key="a.b"`, or None when a group or the key is absent."""
    node = config
    for part in key.split("."):
        if not hasattr(node, "keys") or part not in node:
            return None
        node = node[part]
    return node


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def range_errors(config: ml_collections.ConfigDict) -> list[str]:
    """One line per key of `config` outside its range (see `_INTEGERS`, `_REALS`)."""
    errors = []
    seed = _get(config, "seed")
    if seed is not None and not (_is_int(seed) and 0 <= seed < _SEED_LIMIT):
        errors.append(
            f"seed must be an integer in [0, 2**32 - 1), got {seed!r}: set --config.seed=0"
        )
    for key, low, meaning in _INTEGERS:
        value = _get(config, key)
        if value is not None and not (_is_int(value) and value >= low):
            errors.append(
                f"{key} ({meaning}) must be an integer >= {low}, got {value!r}: "
                f"set --config.{key} to at least {low}"
            )
    for key, low, high, meaning in _REALS:
        value = _get(config, key)
        if value is not None and not (_is_real(value) and low <= value <= high):
            errors.append(
                f"{key} ({meaning}) must be a number in [{low:g}, {high:g}], got {value!r}"
            )
    lr = _get(config, "optim.lr_peak")
    if lr is not None and not (_is_real(lr) and 0 < lr < math.inf):
        errors.append(
            f"optim.lr_peak must be a positive finite number, got {lr!r}: e.g. 1e-4 to 1e-3"
        )
    decay = _get(config, "optim.decay")
    if decay is not None and decay not in _DECAYS:
        errors.append(f"optim.decay must be one of {_DECAYS}, got {decay!r}")
    samples = _get(config, "train.num_samples")
    if (_get(config, "train.sample_every_steps") or 0) > 0 and not (
        _is_int(samples) and samples >= 1
    ):
        errors.append(
            f"train.num_samples must be an integer >= 1 when sample grids are drawn, got "
            f"{samples!r}: set it to e.g. 16, or --config.train.sample_every_steps=0"
        )
    shape = _get(config, "data.image_shape")
    if shape is not None and not (
        len(tuple(shape)) == 3 and all(_is_int(d) and d >= 1 for d in shape)
    ):
        errors.append(f"data.image_shape must be (H, W, C) of positive integers, got {shape!r}")
    return errors


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises a `ConfigError` listing every key of `config` outside its range."""
    errors = range_errors(config)
    if errors:
        raise ConfigError("invalid config: " + "; ".join(errors) + ".")


def check_model_fits_data(init: Callable, image_shape: tuple[int, ...], seed: int) -> None:
    """Initialises the network abstractly (`jax.eval_shape`: no compute, no memory), so a
    model that does not fit the data fails before anything is written.

    Args:
        init: the recipe's `init(rng) -> params` (for images of `config.data.image_shape`).
        image_shape: `(H, W, C)` of the data (the first batch's, checked against the config).
        seed: `config.seed`.

    Raises:
        ConfigError: with the network's own message (e.g. GroupNorm groups that do not divide
            a width, or a U-Net whose downsampling does not fit the image size).
    """
    try:
        jax.eval_shape(init, jax.random.key(seed))
    except Exception as error:  # flax and jax raise many types; all mean "does not fit"
        shape = tuple(image_shape)
        lines = str(error).strip().splitlines()
        raise ConfigError(
            f"config.model does not fit images of shape {shape}: {type(error).__name__}: "
            f"{lines[0] if lines else repr(error)} Change --config.model.* (or "
            "--config.data.image_shape) and rerun; nothing was written."
        ) from error


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _clip_switched(old: dict, new: dict) -> bool:
    """Whether gradient clipping is turned on or off (that changes the optimiser state)."""
    key = "optim.grad_clip_norm"
    if key not in old or key not in new:
        return False
    return (old[key] > 0) != (new[key] > 0)


# Keys added to the configs after workdirs were written without them, with the value that
# reproduces what those workdirs ran: a saved config without the key means this value.
ADDED_KEYS = {
    "posterior.safeguard": "residual_cap",  # EM's E-step (2026-12-07)
    "posterior.trust_radius": 3.0,
    "posterior.symmetrise": False,
    "eval.probe_pool_grid": 1,  # the probe pooled globally (2026-12-07)
}


def with_added_keys(saved: dict) -> dict:
    """`saved` (a workdir's `config.json`) with each `ADDED_KEYS` key it lacks set to its
    listed value, where the key's group exists: a workdir written before a key existed loads
    with the behaviour it ran with, and the key can be overridden by name."""
    out = copy.deepcopy(saved)
    for key, value in ADDED_KEYS.items():
        *groups, name = key.split(".")
        node = out
        for group in groups:
            node = node.get(group) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.setdefault(name, value)
    return out


def resume_conflicts(saved: dict, current: dict, resumable: tuple[str, ...]) -> list[str]:
    """The keys that differ between a workdir's saved config and the new one and may not.

    A key of `ADDED_KEYS` missing from the saved config counts as its listed value, so a
    workdir written before the key existed resumes when the new config keeps that behaviour.

    Args:
        saved: the workdir's `config.json`.
        current: the new config (as JSON).
        resumable: patterns (`fnmatch`, e.g. `"optim.*"`) of keys that may change on resume.

    Returns:
        `"key: old -> new"` lines, sorted; empty when the run may resume.
    """
    old, new = _flatten(with_added_keys(saved)), _flatten(current)
    conflicts = [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k) and not any(fnmatch.fnmatch(k, p) for p in resumable)
    ]
    if _clip_switched(old, new):
        conflicts.append(
            f"optim.grad_clip_norm: {old['optim.grad_clip_norm']!r} -> "
            f"{new['optim.grad_clip_norm']!r} (clipping cannot be switched on or off on resume: "
            "it changes the optimiser state; keep it > 0, e.g. 1e9 clips nothing)"
        )
    return conflicts
