"""The one grain pipeline: seeded shuffle, repeat, flips, per-process shard, batch.

`make_dataset` builds a random-access `grain.MapDataset` of host batches whose content is a
pure function of `(seed, step)`: the global stream is `shuffle -> repeat -> flip`, indexed by
position; process `p` of `P` takes the positions `p, p + P, ...`, and batches them by
`global_batch_size // P`. Global batch `s` is therefore the stream positions
`[s * B, (s + 1) * B)` whatever the number of processes (only their order inside the global
batch depends on it), restarts included. `make_iterator` wraps it in a checkpointable
iterator.
"""

import grain
import jax
import numpy as np

_RANGE_TOLERANCE = 1e-5


def _flip_horizontally(example: dict, rng: np.random.Generator) -> dict:
    """Mirrors `image [H, W, C]` (and `segmentation [H, W]`) along W with probability 1/2."""
    if rng.random() >= 0.5:
        return example
    flipped = dict(example)
    for key in ("image", "segmentation"):
        if key in example:
            flipped[key] = np.flip(example[key], axis=1)
    return flipped


def _check_dataset_args(source, global_batch_size, seed, num_epochs, process_index, count):
    if len(source) == 0:
        raise ValueError("the source is empty: there is nothing to batch.")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32); got {seed}.")
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"num_epochs must be None (repeat forever) or >= 1; got {num_epochs}.")
    if count < 1 or not 0 <= process_index < count:
        raise ValueError(
            f"process_index must be in [0, process_count); got {process_index} of {count}."
        )
    if global_batch_size < 1 or global_batch_size % count:
        raise ValueError(
            f"global_batch_size {global_batch_size} must be a positive multiple of the "
            f"process count {count}; change config.train.batch_size."
        )


def make_dataset(
    source,
    *,
    global_batch_size: int,
    seed: int,
    shuffle: bool = True,
    random_flip: bool = False,
    drop_remainder: bool = True,
    num_epochs: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.MapDataset:
    """This process's batches of `source`, random access: `dataset[step]` is batch `step`.

    Args:
      source: random-access source (`__len__`, `__getitem__(i) -> dict of arrays`).
      global_batch_size: batch size `B` summed over all processes.
      seed: root of the order and the flips, in [0, 2**32).
      shuffle: shuffle globally, with a new permutation each epoch.
      random_flip: mirror each example along W with probability 1/2 (deterministic given
        seed and stream position). Flips `image` and `segmentation`; other keys are kept
        (so do not enable it with orientation-dependent attributes).
      drop_remainder: drop a last incomplete batch (only matters when `num_epochs` is set).
      num_epochs: passes over the source; None repeats forever.
      process_index: this process, default `jax.process_index()`.
      process_count: number of processes, default `jax.process_count()`.

    Returns:
      A `grain.MapDataset` of dicts with leading axis `B // process_count`, e.g.
      `{'image': [b, H, W, C] float32, 'label': [b] int32}`. With a finite `num_epochs`
      processes may get batch counts that differ by one.

    Raises:
      ValueError: an empty source, a bad seed or epoch count, a process index out of range, or
        a global batch size that the process count does not divide.
    """
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    _check_dataset_args(source, global_batch_size, seed, num_epochs, process_index, process_count)
    dataset = grain.MapDataset.source(source).seed(seed)
    if shuffle:
        dataset = dataset.shuffle()
    dataset = dataset.repeat(num_epochs)
    if random_flip:
        # Before sharding, so the flip of a stream position does not depend on the process count.
        dataset = dataset.random_map(_flip_horizontally)
    dataset = dataset[process_index::process_count]
    return dataset.batch(global_batch_size // process_count, drop_remainder=drop_remainder)


def make_iterator(
    dataset: grain.MapDataset,
    *,
    num_workers: int = 0,
    prefetch_buffer_size: int = 8,
    num_threads: int = 2,
) -> grain.DatasetIterator:
    """A checkpointable iterator over `dataset`'s batches, starting at batch 0.

    `iterator.get_state()` is a JSON-serialisable dict (`{'next_index': k}` without workers);
    `iterator.set_state(state)` on a fresh iterator over the same dataset resumes exactly.
    `num_workers > 0` runs the batches in `grain` worker processes (`mp_prefetch`), which
    read absl flags: the program must run under `absl.app.run` (tests call
    `flags.FLAGS.mark_as_parsed()` instead).

    Args:
      dataset: the output of `make_dataset`.
      num_workers: worker processes; 0 reads in this process with `num_threads` threads.
      prefetch_buffer_size: batches read ahead by the threads.
      num_threads: reader threads (per worker process when `num_workers > 0`).

    Returns:
      A `grain.DatasetIterator` yielding host batches (dicts of numpy arrays).
    """
    if num_workers < 0 or num_threads < 0 or prefetch_buffer_size < 0:
        raise ValueError(
            "num_workers, num_threads and prefetch_buffer_size must be >= 0; got "
            f"{num_workers}, {num_threads}, {prefetch_buffer_size}."
        )
    read_options = grain.ReadOptions(
        num_threads=num_threads, prefetch_buffer_size=prefetch_buffer_size
    )
    iter_dataset = dataset.to_iter_dataset(read_options)
    if num_workers > 0:
        iter_dataset = iter_dataset.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=num_workers)
        )
    return iter(iter_dataset)


def validate_batch(batch: dict, image_shape) -> None:
    """Checks a host batch against the contract; the training loop calls it on batch 0.

    Args:
      batch: `{'image': [B, H, W, C] float32 in [-1, 1], 'label': [B] int32 (optional)}`.
      image_shape: the expected `(H, W, C)` of one example (`config.data.image_shape`).

    Raises:
      ValueError: naming the expected and the actual shape, dtype or value range.
    """
    expected = tuple(int(d) for d in image_shape)
    if len(expected) != 3 or min(expected) < 1:
        raise ValueError(f"image_shape must be (H, W, C) of positive sizes; got {image_shape}.")
    if "image" not in batch:
        raise ValueError(f"batch has no 'image'; its keys are {sorted(batch)}.")
    image = np.asarray(batch["image"])
    if image.ndim != 4 or image.shape[1:] != expected:
        raise ValueError(
            f"batch['image'] has shape {image.shape} but [B, *{expected}] was expected from "
            f"image_shape {expected}; set config.data.image_shape to the data's (H, W, C) "
            "or resize the data with config.data.image_size."
        )
    if image.dtype != np.float32:
        raise ValueError(f"batch['image'] must be float32; got {image.dtype}.")
    lo, hi = float(image.min()), float(image.max())
    if not (-1 - _RANGE_TOLERANCE <= lo and hi <= 1 + _RANGE_TOLERANCE):
        raise ValueError(
            f"batch['image'] must lie in [-1, 1]; got range [{lo:.4g}, {hi:.4g}]; "
            "scale uint8 with x/127.5 - 1."
        )
    if "label" in batch:
        label = np.asarray(batch["label"])
        if label.shape != image.shape[:1] or label.dtype != np.int32:
            raise ValueError(
                f"batch['label'] must be int32 of shape {image.shape[:1]}; "
                f"got {label.dtype} {label.shape}."
            )
