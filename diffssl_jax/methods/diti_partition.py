"""DiTi's partition of the feature z into k subsets, one per block of diffusion steps.

Yue et al. 2024 (Sec. 3, Eq. 5; docs/methods.md B.3-B.4): the T steps are cut into k blocks;
step n belongs to subset i(n) = floor(n k / T) (continuous time t = n / T: floor(t k)).
Subset i owns the dims [end(i-1), end(i)) of z, with end(-1) = 0, end(k-1) = D. At step n the
decoder is conditioned on the cumulative subsets z_1 ... z_i(n) (mode "base"), i.e. z times
the mask m_i = 1 on [0, end(i)).

Two splits (static tables, built once in NumPy):
  uniform: end(i) = floor(D (i + 1) / k) (the "balanced" configs: 8 dims each for 512 / 64);
  non-uniform: stages of steps [0, s_1), [s_1, s_2), ... each get a number of dims; a
    subset belongs to the stage holding its FIRST step ceil(i T / k); within a stage of n
    subsets each gets floor(dims / n) and the stage's last subset the remainder (reference
    `get_mask_end_dim`). The reference (stages 50, 100, 300, 500, 1000; dims 10, 25, 327,
    100, 50) gives end dims 2, 4, 6, 10, 18, 26, 35, 60, ..., 493, 512.
"""

from typing import NamedTuple

import numpy as np

PARTITIONS = ("uniform", "nonuniform")


class Partition(NamedTuple):
    """The static tables of a partition of D dims into k subsets.

    Attributes:
        end_dims: `[k]` int, end(i) (exclusive) of subset i; end(k - 1) = D.
        masks: `[k, D]` float32, m_i = 1 on [0, end(i)): the cumulative subsets ("base").
        own_masks: `[k, D]` float32, 1 on [end(i - 1), end(i)): subset i alone.
        earlier_masks: `[k, D]` float32, 1 on [0, end(i - 1)): the subsets before i.
    """

    end_dims: np.ndarray
    masks: np.ndarray
    own_masks: np.ndarray
    earlier_masks: np.ndarray


def uniform_end_dims(num_subsets: int, latent_dim: int) -> np.ndarray:
    """end(i) = floor(D (i + 1) / k): `[k]` int."""
    return (latent_dim * np.arange(1, num_subsets + 1)) // num_subsets


def first_steps(num_subsets: int, num_steps: int) -> np.ndarray:
    """The first step of each subset, ceil(i T / k) = the smallest n with floor(n k / T) = i."""
    return -((-np.arange(num_subsets) * num_steps) // num_subsets)


def nonuniform_end_dims(
    num_subsets: int, latent_dim: int, num_steps: int, stages, dims_per_stage
) -> np.ndarray:
    """The reference non-uniform split (module docstring): `[k]` int end dims.

    Args:
        num_subsets: k.
        latent_dim: D = sum(dims_per_stage).
        num_steps: T = the last stage end.
        stages: increasing stage ends in steps, e.g. (50, 100, 300, 500, 1000).
        dims_per_stage: dims of each stage, e.g. (10, 25, 327, 100, 50).

    Raises:
        ValueError: if the stages do not end at T, the dims do not sum to D, or a stage
            holds no subset (its dims would be lost).
    """
    stages, dims = np.asarray(stages, np.int64), np.asarray(dims_per_stage, np.int64)
    if len(stages) != len(dims) or len(stages) == 0 or np.any(np.diff(stages) <= 0):
        raise ValueError(f"need increasing stages, one per dims entry: {stages}, {dims}")
    if stages[-1] != num_steps or dims.sum() != latent_dim:
        raise ValueError(
            f"the stages must end at T = {num_steps} and the dims sum to D = {latent_dim}; got "
            f"stages {tuple(stages)} and dims {tuple(dims)} (sum {dims.sum()})"
        )
    stage_of = np.searchsorted(stages, first_steps(num_subsets, num_steps), side="right")
    sizes = np.zeros(num_subsets, np.int64)
    for s, total in enumerate(dims):
        members = np.flatnonzero(stage_of == s)
        if members.size == 0:
            raise ValueError(f"stage {s} (ending at step {stages[s]}) holds no subset")
        sizes[members] = total // members.size
        sizes[members[-1]] = total - (members.size - 1) * (total // members.size)
    return np.cumsum(sizes)


def make_partition(
    kind: str,
    num_subsets: int,
    latent_dim: int,
    num_steps: int = 1000,
    stages=(),
    dims_per_stage=(),
) -> Partition:
    """The tables of a "uniform" or "nonuniform" partition (see the module docstring)."""
    if kind == "uniform":
        end = uniform_end_dims(num_subsets, latent_dim)
    elif kind == "nonuniform":
        end = nonuniform_end_dims(num_subsets, latent_dim, num_steps, stages, dims_per_stage)
    else:
        raise ValueError(f"partition must be one of {PARTITIONS}, got {kind!r}")
    if np.any(np.diff(np.concatenate([[0], end])) <= 0):
        raise ValueError(f"every subset needs at least one dim; end dims {end.tolist()}")
    dims = np.arange(latent_dim)
    start = np.concatenate([[0], end[:-1]])
    masks = (dims[None] < end[:, None]).astype(np.float32)
    earlier = (dims[None] < start[:, None]).astype(np.float32)
    return Partition(end, masks, masks - earlier, earlier)


def step_subset(step, num_subsets: int, num_steps: int):
    """i(n) = floor(n k / T) for integer steps n in {0..T-1} (exact integer arithmetic)."""
    return (step * num_subsets) // num_steps


def subset_index(t, num_subsets: int):
    """i(t) = min(floor(t k), k - 1) for continuous t in [0, 1] (t = 1 goes to the last)."""
    return np.minimum(np.floor(np.asarray(t) * num_subsets).astype(np.int64), num_subsets - 1)


def subset_dims(partition: Partition, first: int, last: int) -> np.ndarray:
    """The dims of subsets first..last (inclusive): `[end(last) - end(first - 1)]` int."""
    k = len(partition.end_dims)
    if not 0 <= first <= last < k:
        raise ValueError(f"need 0 <= first <= last < k = {k}, got {first}, {last}")
    start = 0 if first == 0 else int(partition.end_dims[first - 1])
    return np.arange(start, int(partition.end_dims[last]))
