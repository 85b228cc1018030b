"""The shared base of every config: each key, its meaning and its unit.

A method/dataset file (for example `configs/ddpm/digits.py`) imports `get_base_config()`,
overrides only what differs, and exposes `get_config(arg)`. `arg` is a comma-separated list
of variants, e.g. `--config=configs/ddpm/digits.py:tiny`; `parse_variants` reads it.
Configs are locked by the launcher (`config_flags.DEFINE_config_file(lock_config=True)`),
so a misspelt `--config.train.num_stepz=...` fails and names the nearest valid key.
"""

import ml_collections


def get_base_config() -> ml_collections.ConfigDict:
    """Returns the base config with every group the library reads."""
    config = ml_collections.ConfigDict()
    config.method = "ddpm"  # recipe name: ddpm | mdm | mae | ldae | diti
    config.seed = 0  # root of all randomness: init, data order, noise, sampling

    config.data = ml_collections.ConfigDict()
    config.data.name = "digits"  # "digits" or "phantoms" (bundled), or a tfds name ("cifar10")
    config.data.split = "train"  # split used for training
    config.data.data_dir = ""  # tfds data_dir; "" means tfds' default (~/tensorflow_datasets)
    config.data.image_size = 0  # resize tfds images to this square size; 0 keeps the size
    config.data.label_key = "label"  # tfds feature holding the class; "" for unlabelled data
    config.data.image_shape = (16, 16, 1)  # (H, W, C) every example must have; checked

    config.pipeline = ml_collections.ConfigDict()
    config.pipeline.random_flip = False  # horizontal flips with probability 1/2
    config.pipeline.num_workers = 0  # grain worker processes (0: in the main process)

    config.corruption = ml_collections.ConfigDict()
    config.corruption.schedule = "linear"  # linear | cosine | loglinear_ve (see schedules.py)

    config.model = ml_collections.ConfigDict()  # keyword arguments of the network class

    config.objective = ml_collections.ConfigDict()
    config.objective.prediction = "eps"  # what the network predicts: eps | x0 | v
    config.objective.weighting = "none"  # none | min_snr | edm (see objectives/denoising.py)

    config.optim = ml_collections.ConfigDict()
    config.optim.lr_peak = 2e-4  # peak learning rate (Adam/AdamW)
    config.optim.warmup_steps = 100  # linear warm-up from 0 to lr_peak, in steps
    config.optim.decay = "constant"  # after warm-up: constant | cosine | linear (to 0)
    config.optim.weight_decay = 0.0  # decoupled weight decay (AdamW)
    config.optim.grad_clip_norm = 1.0  # global-norm clipping; 0 disables it
    config.optim.ema_decay = 0.999  # EMA of the parameters, per step

    config.train = ml_collections.ConfigDict()
    config.train.num_steps = 2000  # optimiser steps in total
    config.train.batch_size = 128  # GLOBAL batch size, over all devices and hosts
    config.train.log_every_steps = 50  # metrics.jsonl and progress-bar period, in steps
    config.train.checkpoint_every_steps = 500  # checkpoint period, in steps
    config.train.keep_checkpoints = 2  # finalised checkpoints a workdir keeps (exactly)
    config.train.sample_every_steps = 1000  # sample-grid figure period; 0 disables it
    config.train.num_samples = 64  # images in the sample grid
    config.train.init_from = ""  # workdir whose EMA params initialise a new run
    config.train.progress_bar = True  # tqdm progress bar on process 0

    config.sampling = ml_collections.ConfigDict()
    config.sampling.sampler = "ddpm_ancestral"  # ddpm_ancestral | ddim | edm_heun
    config.sampling.num_steps = 100  # sampler steps
    config.sampling.grid = "karras"  # sigma grid: karras | loglinear
    config.sampling.sigma_min = 0.002  # smallest VE noise level of the grid
    config.sampling.sigma_max = 80.0  # largest VE noise level of the grid

    config.eval = ml_collections.ConfigDict()
    config.eval.split = "test"  # split used for evaluation
    config.eval.feature_t = 0.05  # diffusion time at which features are read (MDM: 50/1000)
    config.eval.feature_blocks = ()  # feature names to read; () means the method's default
    config.eval.feature_batch_size = 64  # images per feature-extraction call (bounds memory)
    config.eval.probe_budgets = (0, 10)  # labels per class for the linear probe; 0 = all
    config.eval.probe_seeds = 5  # seeds of the labelled subset for budgets > 0
    config.eval.probe_pool_grid = 1  # probe features average-pooled on a g x g grid; 1 = global
    config.eval.segmentation = True  # run label-efficient segmentation (needs masks or digits)
    config.eval.seg_num_labelled = 20  # labelled training images for the pixel classifier
    config.eval.seg_num_models = 10  # pixel-classifier ensemble size (docs/methods.md A.6)
    config.eval.seg_seeds = 3  # repetitions with different labelled images / inits

    config.mesh = ml_collections.ConfigDict()
    config.mesh.num_devices = 0  # devices on the 'data' axis; 0 means all devices
    return config


def parse_variants(arg: str | None, known: tuple[str, ...]) -> set[str]:
    """Parses `get_config`'s argument (`"tiny"`, `"tiny,flip"`) into a set of variants.

    Raises:
        ValueError: for a variant this config file does not define.
    """
    variants = {v.strip() for v in (arg or "").split(",") if v.strip()}
    unknown = variants - set(known)
    if unknown:
        raise ValueError(f"unknown config variant(s) {sorted(unknown)}; this file has {known}")
    return variants


def shrink_for_tests(config: ml_collections.ConfigDict) -> None:
    """The `tiny` variant: seconds on 2 CPU cores, and more than one checkpoint."""
    config.train.num_steps = 6
    config.train.batch_size = 8
    config.train.log_every_steps = 2
    config.train.checkpoint_every_steps = 2
    config.train.sample_every_steps = 6
    config.train.num_samples = 4
    config.train.progress_bar = False
    config.optim.warmup_steps = 2
    config.sampling.num_steps = 4


def on_canvases(digits_module, arg: str | None, known: tuple[str, ...]):
    """A method's digits config (`digits_module.get_config` with the variants of `arg`) moved
    to the 32x32 digit canvases (`data.canvases`, docs/methods.md F): the same network,
    optimiser and steps; the evaluation is canvas segmentation with 10 labelled canvases.

    Raises:
        ValueError: for a variant not in `known`.
    """
    variants = parse_variants(arg, known)
    config = digits_module.get_config(",".join(sorted(variants)))
    config.data.name = "canvases"
    config.data.image_shape = (32, 32, 1)
    config.eval.seg_num_labelled = 10
    return config
