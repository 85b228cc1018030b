"""Training: state, the pure step, checkpoints, and the one loop."""

from diffssl_jax.training.checkpoint import CheckpointError, load_config, load_params
from diffssl_jax.training.loop import train
from diffssl_jax.training.preemption import Preempted
from diffssl_jax.training.state import TrainState

__all__ = ["CheckpointError", "Preempted", "TrainState", "load_config", "load_params", "train"]
