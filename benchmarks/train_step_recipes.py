"""Times our jitted MDM (U-Net, SSIM loss) and l-DAE (ViT, adaLN) train steps against PyTorch.

    .venv/bin/python benchmarks/train_step_recipes.py                # mdm and ldae, batch 128
    taskset -c 1 .venv/bin/python benchmarks/train_step_recipes.py  # one core, both sides
    .venv/bin/python benchmarks/train_step_recipes.py --recipes=ldae --batch_size=64

Our side: the recipe's loss in `make_train_step` (clipping, AdamW, EMA), jitted with the
state donated, on random batches, built as in `benchmarks/train_step.py` (whose config
loader and U-Net flags are reused) for `configs/mdm/digits.py` and `configs/ldae/digits.py`.
Each side reports the median wall time of the timed steps and their median process CPU time
(`time.process_time`, all threads). On a machine shared with other jobs, wall times move
with the load and multi-threaded runs lose time to threads waiting for descheduled peers;
pinned to one core (`taskset -c 1`: XLA and torch then use one thread each) the CPU time
per step measures the work itself, and its ratio is the figure to read. The references
(`benchmarks/torch_reference_recipes.py`, run in `benchmarks/.venv-torch` as a subprocess
after ours) do the same work in eager PyTorch: MDM with the same diffusers `UNet2DModel` as
the DDPM benchmark, patch masking and torchgeometry's SSIM loss; l-DAE with a plain torch ViT
of the same sizes with adaLN. The parameter counts of both sides are printed and must agree.
"""

import argparse
import functools
import json
import os
import statistics
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
from train_step import REPO, SETUP_COMMAND, TORCH_PYTHON, load_config, torch_args

from diffssl_jax import methods
from diffssl_jax.training.state import create_train_state
from diffssl_jax.training.step import make_optimizer, make_train_step

TORCH_SCRIPT = REPO / "benchmarks" / "torch_reference_recipes.py"
PRESETS = {"mdm": "configs/mdm/digits.py", "ldae": "configs/ldae/digits.py"}


def build_step(config, batch_size: int):
    """(compiled donated step, state, batch, {num_params, trace_s, compile_s}) of a recipe."""
    recipe = methods.make_recipe(config)
    tx, schedule = make_optimizer(**config.optim, num_steps=config.train.num_steps)
    step_fn = make_train_step(recipe.loss, ema_decay=config.optim.ema_decay, lr_schedule=schedule)
    rng_data, rng_state = jax.random.split(jax.random.key(config.seed))
    shape = (batch_size, *config.data.image_shape)
    batch = {
        "image": jax.random.uniform(rng_data, shape, jnp.float32, -1.0, 1.0),
        "label": jnp.zeros((batch_size,), jnp.int32),
    }
    init_fn = functools.partial(recipe.init, batch=batch)
    state = jax.jit(lambda rng: create_train_state(init_fn, tx, rng))(rng_state)
    start = time.perf_counter()
    lowered = jax.jit(step_fn, donate_argnums=0).lower(state, batch)
    trace_s = time.perf_counter() - start
    compiled = lowered.compile()
    info = {
        "num_params": sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params)),
        "trace_s": trace_s,
        "compile_s": time.perf_counter() - start - trace_s,
    }
    return compiled, state, batch, info


def time_ours(config, batch_size: int, steps: int, warmup: int) -> dict:
    """Wall and process-CPU step times of our jitted step (medians over `steps`)."""
    compiled, state, batch, info = build_step(config, batch_size)
    start = time.perf_counter()
    state, metrics = jax.block_until_ready(compiled(state, batch))
    first_call_s = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        state, metrics = jax.block_until_ready(compiled(state, batch))
    wall, cpu = [], []
    for _ in range(steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        state, metrics = jax.block_until_ready(compiled(state, batch))
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    if not np.isfinite(float(metrics["train/loss"])):
        raise FloatingPointError("the benchmarked step produced a non-finite loss")
    step_time_s = statistics.median(wall)
    return {
        "images_per_sec": batch_size / step_time_s,
        "step_time_s": step_time_s,
        "step_time_min_s": min(wall),
        "cpu_time_s": statistics.median(cpu),
        "first_step_s": info["trace_s"] + info["compile_s"] + first_call_s,
        **info,
    }


def _common_args(config, batch_size: int, steps: int, warmup: int) -> list[str]:
    """Image, batch, optimiser and timing flags shared with `torch_reference.py`."""
    height, width, channels = config.data.image_shape
    if height != width:
        raise ValueError(f"the references build square images; got {height}x{width}")
    flags = {
        "image_size": height,
        "channels": channels,
        "batch_size": batch_size,
        "steps": steps,
        "warmup": warmup,
        "lr": config.optim.lr_peak,
        "weight_decay": config.optim.weight_decay,
        "grad_clip_norm": config.optim.grad_clip_norm,
        "ema_decay": config.optim.ema_decay,
    }
    return [f"--{k}={v}" for k, v in flags.items()]


def reference_args(recipe: str, config, batch_size: int, steps: int, warmup: int) -> list[str]:
    """The flags of `torch_reference_recipes.py` reproducing `config`'s network and loss."""
    c = config.corruption
    if recipe == "mdm":
        if config.objective.loss != "ssim" or c.mask_convention != "code":
            raise ValueError("the MDM reference implements the SSIM loss, code convention")
        flags = {
            "num_steps": c.num_steps,
            "mask_patch_size": c.patch_size,
            "fill": c.fill,
            "ssim_max_val": {"reference": 1.0, "data_range": 2.0}[config.objective.ssim_data_range],
        }
        unet = torch_args(config, batch_size, steps, warmup)  # U-Net, batch, optimiser flags
        return [f"--recipe={recipe}", *unet, *(f"--{k}={v}" for k, v in flags.items())]
    m = config.model
    flags = {
        "vit_hidden_size": m.hidden_size,
        "vit_depth": m.depth,
        "vit_num_heads": m.num_heads,
        "vit_patch_size": m.patch_size,
        "vit_mlp_ratio": m.mlp_ratio,
        "corruption_patch_size": c.patch_size,
        "latent_dim": c.latent_dim,
        "residual_weight": config.objective.residual_weight,
        "sigma_max": c.sigma_max,
    }
    common = _common_args(config, batch_size, steps, warmup)
    return [f"--recipe={recipe}", *common, *(f"--{k}={v}" for k, v in flags.items())]


def time_reference(args: list[str]) -> dict | None:
    """Runs the reference in its venv; None (saying how to make the venv) when it is missing."""
    if not TORCH_PYTHON.exists():
        print(f"PyTorch reference skipped: {TORCH_PYTHON} is missing; run {SETUP_COMMAND}")
        return None
    command = [str(TORCH_PYTHON), str(TORCH_SCRIPT), *args]
    print("running:", " ".join(command[1:]), flush=True)
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    if result.returncode:
        print(f"PyTorch reference failed:\n{result.stderr[-3000:]}")
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def _step_cell(result: dict, batch_size: int, key: str) -> str:
    return f"{result[key]:.3f} s ({batch_size / result[key]:.0f} img/s)"


def print_row(recipe: str, batch_size: int, ours: dict, ref: dict | None) -> None:
    """One markdown row: params, our first step, wall and CPU step times and their ratios
    (ours / torch in images/s: > 1 means ours is faster)."""
    first = f"{ours['first_step_s']:.1f} s ({ours['trace_s']:.1f} + {ours['compile_s']:.1f})"
    params = f"{ours['num_params']:,}"
    cells = {key: ["n/a", "n/a"] for key in ("step_time_s", "cpu_time_s")}
    for key, cell in cells.items():
        cell[0] = _step_cell(ours, batch_size, key)
        if ref is not None:
            cell[1] = _step_cell(ref, batch_size, key) + f", **{ref[key] / ours[key]:.2f}x**"
    if ref is not None and ref["num_params"] != ours["num_params"]:
        params += f" (torch {ref['num_params']:,}: MISMATCH)"
    row = [recipe, str(batch_size), params, first, *cells["step_time_s"], *cells["cpu_time_s"]]
    print("| " + " | ".join(row) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="mdm,ldae", help=f"of {list(PRESETS)}")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps, the first included")
    parser.add_argument("--no_torch", action="store_true", help="skip the PyTorch references")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"jax {jax.__version__} on {jax.devices()}, {cores} core(s); float32", flush=True)
    print(f"load average: {os.getloadavg()}", flush=True)
    rows = []
    for recipe in args.recipes.split(","):
        config = load_config(PRESETS[recipe], {})
        ours = time_ours(config, args.batch_size, args.steps, args.warmup)
        print(f"ours ({recipe}):", json.dumps(ours), flush=True)
        ref = None
        if not args.no_torch:
            flags = reference_args(recipe, config, args.batch_size, args.steps, args.warmup)
            ref = time_reference(flags)
            print(f"torch ({recipe}):", json.dumps(ref), flush=True)
        rows.append((recipe, ours, ref))
    print(f"\nload average: {os.getloadavg()}")
    print(
        "\n| recipe | batch | params | ours: first step (trace + compile) | ours: wall step "
        "| torch: wall step, ours/torch | ours: CPU time | torch: CPU time, ours/torch |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for recipe, ours, ref in rows:
        print_row(f"{recipe} ({PRESETS[recipe]})", args.batch_size, ours, ref)


if __name__ == "__main__":
    main()
