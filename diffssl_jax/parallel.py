"""Devices, mesh and shardings: one `data` axis, the same code from 1 CPU to a pod slice."""

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def initialize_distributed() -> None:
    """Calls `jax.distributed.initialize()` when several processes run (TPU pods, clusters).

    Detects a multi-process launch from the environment the runtimes set (TPU VM workers,
    SLURM, or an explicit JAX_COORDINATOR_ADDRESS); on a single host it does nothing.
    """
    multi = (
        os.environ.get("JAX_COORDINATOR_ADDRESS")
        or int(os.environ.get("SLURM_NTASKS", "1")) > 1
        or "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")
    )
    if multi and not jax.distributed.is_initialized():
        jax.distributed.initialize()


def make_mesh(num_devices: int = 0) -> Mesh:
    """A one-axis mesh named `data` over the first `num_devices` devices (0: all)."""
    devices = jax.devices()
    if num_devices:
        if num_devices > len(devices):
            raise ValueError(
                f"mesh.num_devices={num_devices} but only {len(devices)} devices are visible; "
                "set --config.mesh.num_devices=0 to use them all"
            )
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding of the train state: every device holds a full copy."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding of a batch: the leading axis split over the `data` axis."""
    return NamedSharding(mesh, PartitionSpec("data"))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
    """Raises a clear error if the global batch cannot be split over devices and hosts."""
    n = mesh.devices.size
    if global_batch_size % n or global_batch_size % jax.process_count():
        raise ValueError(
            f"train.batch_size={global_batch_size} must be divisible by the {n} devices "
            f"and {jax.process_count()} processes; pick a multiple of {n}"
        )


def to_global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Assembles each process's local batch into one global array sharded over `data`."""
    sharding = batch_sharded(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
    )
