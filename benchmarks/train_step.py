"""Times our jitted train steps against the same networks in PyTorch (eager, NHWC, compiled).

    .venv/bin/python benchmarks/train_step.py --configs=digits,cifar10_small,mdm,ldae
    .venv/bin/python benchmarks/train_step.py --config=configs/ddpm/cifar10.py:tiny \
        --batch_size=8 --set model.model_channels=16 --no_torch

Our side: `methods.make_recipe(config, recipe_inputs.compute(config))`, `make_optimizer`,
`make_train_step` wrapped in the training loop's non-finite guard, jitted with the state donated, on
random float32 batches (`--guard_overhead` also times the plain step). It reports the trace
(`.lower`) and compile times, the first call and the median of the timed steps. The references
(DDPM: `torch_reference.py`, diffusers' U-Net; MDM and l-DAE: `torch_reference_recipes.py`) run in
`benchmarks/.venv-torch` (`setup_torch_reference.sh`) as subprocesses after ours, with the same
sizes, batch, clipping, AdamW and EMA, once per variant in `--torch_variants`; the last column is
ours against the fastest variant.
"""

import argparse
import ast
import importlib.util
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from diffssl_jax import methods, recipe_inputs  # noqa: E402
from diffssl_jax.models.unet import UNet  # noqa: E402
from diffssl_jax.training.finite_guard import with_finite_guard  # noqa: E402
from diffssl_jax.training.state import create_train_state  # noqa: E402
from diffssl_jax.training.step import make_optimizer, make_train_step  # noqa: E402

TORCH_PYTHON = REPO / "benchmarks" / ".venv-torch" / "bin" / "python"
TORCH_SCRIPT = REPO / "benchmarks" / "torch_reference.py"
SETUP_COMMAND = "bash benchmarks/setup_torch_reference.sh"

# name -> (config file[:variants], batch size, overrides). cifar10_small is the DDPM CIFAR-10
# U-Net of configs/ddpm/cifar10.py (mult 1,2,2,2, 2 res blocks, attention at 16x16, dropout
# 0.1) at a quarter of its width (32 channels instead of 128), so a step fits 2 CPU cores.
PRESETS = {
    "digits": ("configs/ddpm/digits.py", 128, {}),
    "cifar10_small": ("configs/ddpm/cifar10.py", 64, {"model.model_channels": 32}),
    "mdm": ("configs/mdm/digits.py", 128, {}),
    "ldae": ("configs/ldae/digits.py", 128, {}),
}
RECIPES = ("mdm", "ldae")  # their references are in torch_reference_recipes.py
# A PyTorch user's CPU options: eager, NHWC memory (oneDNN's preferred convolution layout),
# torch.compile (inductor, which needs a C++ compiler).
TORCH_VARIANTS = {"eager": [], "channels_last": ["--channels_last"], "compiled": ["--compile"]}


def load_config(spec: str, overrides: dict):
    """`get_config(variants)` of `path[:variants]`, with `{"group.key": value}` overrides."""
    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("benchmark_config", REPO / path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg or None)
    for key, value in overrides.items():
        group, name = key.split(".")
        getattr(config, group)[name] = value
    return config


def parse_override(text: str) -> tuple[str, object]:
    """`model.model_channels=16` -> ("model.model_channels", 16); values are Python literals."""
    key, _, value = text.partition("=")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _guarded(step_fn):
    """The step as the loop runs it: with the non-finite guard, its flag kept as an output."""
    guarded = with_finite_guard(step_fn)

    def step(state, batch):
        state, metrics, first_bad = guarded(state, batch, jnp.int32(0))
        return state, {**metrics, "first_bad": first_bad}

    return step


def build_step(config, batch_size: int, guard: bool = True):
    """The recipe's train step for `config` (jitted, state donated), a state and a batch.

    With `guard` (the default) the step carries the training loop's non-finite guard.
    Returns `(jitted_step, state, batch)` on random float32 images.
    """
    recipe = methods.make_recipe(config, recipe_inputs.compute(config))  # l-DAE: its PCA basis
    tx, schedule = make_optimizer(**config.optim, num_steps=config.train.num_steps)
    step_fn = make_train_step(recipe.loss, ema_decay=config.optim.ema_decay, lr_schedule=schedule)
    if guard:
        step_fn = _guarded(step_fn)
    rng_data, rng_labels, rng_state = jax.random.split(jax.random.key(config.seed), 3)
    shape = (batch_size, *config.data.image_shape)
    batch = {
        "image": jax.random.uniform(rng_data, shape, jnp.float32, -1.0, 1.0),
        "label": jax.random.randint(rng_labels, (batch_size,), 0, 10, jnp.int32),
    }
    init_fn = recipe.init
    state = jax.jit(lambda rng: create_train_state(init_fn, tx, rng))(rng_state)
    return jax.jit(step_fn, donate_argnums=0), state, batch


def time_ours(config, batch_size: int, steps: int, warmup: int, guard: bool = True) -> dict:
    """Builds the recipe's train step for `config` (`build_step`) and times it.

    Reports the trace (`.lower`) and XLA compile (`.compile`) times, the first call, and the
    median wall and process-CPU (`time.process_time`, all threads) times of the timed steps.
    """
    jitted, state, batch = build_step(config, batch_size, guard)
    num_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
    dtypes = {str(p.dtype) for p in jax.tree.leaves(state.params)}

    start = time.perf_counter()
    lowered = jitted.lower(state, batch)
    trace_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start
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
        "first_step_s": trace_s + compile_s + first_call_s,
        "trace_s": trace_s,
        "compile_s": compile_s,
        "num_params": num_params,
        "param_dtypes": sorted(dtypes),
    }


def common_args(config, batch_size: int, steps: int, warmup: int) -> list[str]:
    """Image, batch, optimiser and timing flags shared by the PyTorch references."""
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


def torch_args(config, batch_size: int, steps: int, warmup: int) -> list[str]:
    """The flags of torch_reference.py that reproduce `config`'s U-Net and optimiser."""
    unet = UNet(**config.model)  # reads the defaults the config leaves unset
    flags = {
        "model_channels": unet.model_channels,
        "channel_mult": ",".join(str(m) for m in unet.channel_mult),
        "num_res_blocks": unet.num_res_blocks,
        "attention_ds": ",".join(str(d) for d in unet.attention_resolutions),
        "num_head_channels": unet.num_head_channels,
        "num_heads": unet.num_heads,
        "num_groups": unet.num_groups,
        "dropout": unet.dropout,
        "resblock_updown": int(unet.resblock_updown),
        "use_scale_shift_norm": int(unet.use_scale_shift_norm),
        "out_channels": unet.out_channels or config.data.image_shape[-1],
    }
    unet_flags = [f"--{k}={v}" for k, v in flags.items()]
    return unet_flags + common_args(config, batch_size, steps, warmup)


def reference_command(name: str, config, batch_size: int, steps: int, warmup: int) -> list:
    """The PyTorch reference script and flags reproducing preset `name`'s network and loss."""
    if name in RECIPES:
        import recipe_reference_flags  # imports this module: loaded only when needed

        flags = recipe_reference_flags.reference_args(name, config, batch_size, steps, warmup)
        return [str(recipe_reference_flags.TORCH_SCRIPT), *flags]
    return [str(TORCH_SCRIPT), *torch_args(config, batch_size, steps, warmup)]


def time_torch(command: list, variant: str) -> dict:
    """Runs one PyTorch variant in its venv: its result, or `{"error": why not}`."""
    if not TORCH_PYTHON.exists():
        return {"error": f"{TORCH_PYTHON} is missing; create it with {SETUP_COMMAND}"}
    if variant == "channels_last" and "--recipe=ldae" in command:
        return {"error": "n/a (a ViT: no 4-D activations)"}
    command = [str(TORCH_PYTHON), *command, *TORCH_VARIANTS[variant]]
    print("running:", " ".join(command[1:]), flush=True)
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    if result.returncode:
        lines = [line for line in result.stderr.splitlines() if "Error" in line]
        print(f"PyTorch {variant} failed:\n{result.stderr[-3000:]}", flush=True)
        return {"error": f"failed: {(lines or ['exit ' + str(result.returncode)])[-1][:200]}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def table_row(name: str, batch_size: int, ours: dict, torch_results: dict) -> str:
    """A markdown row: our step, each PyTorch variant's, and ours against the best variant."""
    cells = [name, f"{ours['num_params']:,}", f"{ours['first_step_s']:.1f} s"]
    cells.append(f"{ours['step_time_s']:.3f} s ({batch_size / ours['step_time_s']:.0f} img/s)")
    timed = {}
    for variant, result in torch_results.items():
        if "error" in result:
            cells.append(result["error"])
            continue
        timed[variant] = result["step_time_s"]
        mismatch = " (params MISMATCH)" if result["num_params"] != ours["num_params"] else ""
        ratio = result["step_time_s"] / ours["step_time_s"]
        cells.append(f"{result['step_time_s']:.3f} s, {ratio:.2f}x{mismatch}")
    if timed:
        best = min(timed, key=timed.get)
        cells.append(f"**{timed[best] / ours['step_time_s']:.2f}x** ({best})")
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="", help=f"presets, comma-separated: {list(PRESETS)}")
    parser.add_argument("--config", default="configs/ddpm/digits.py", help="path[:variants]")
    parser.add_argument("--set", action="append", default=[], help="override: model.key=value")
    parser.add_argument("--batch_size", type=int, default=0, help="0: the preset's or 128")
    parser.add_argument("--steps", type=int, default=8, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps, the first included")
    parser.add_argument("--no_torch", action="store_true", help="skip the PyTorch reference")
    parser.add_argument(
        "--torch_variants", default="eager,channels_last,compiled", help=f"of {TORCH_VARIANTS}"
    )
    parser.add_argument(
        "--guard_overhead", action="store_true", help="also time the step without the guard"
    )
    args = parser.parse_args()
    overrides = dict(parse_override(s) for s in args.set)
    variants = [] if args.no_torch else args.torch_variants.split(",")
    if args.configs:
        runs = [(n, *PRESETS[n]) for n in args.configs.split(",")]
    else:
        runs = [(args.config, args.config, 128, {})]
    print(f"jax {jax.__version__} on {jax.devices()}; float32; load {os.getloadavg()}")
    rows = []
    for name, spec, preset_batch, preset_overrides in runs:
        config = load_config(spec, {**preset_overrides, **overrides})
        batch_size = args.batch_size or preset_batch
        label = f"{name}: {spec}" if name != spec else spec
        if preset_overrides or overrides:
            label += f" { ({**preset_overrides, **overrides}) }"
        print(f"{label}, image {tuple(config.data.image_shape)}, batch {batch_size}", flush=True)
        ours = time_ours(config, batch_size, args.steps, args.warmup)
        print("ours:", json.dumps(ours), flush=True)
        if args.guard_overhead:
            plain = time_ours(config, batch_size, args.steps, args.warmup, guard=False)
            ratio = ours["step_time_s"] / plain["step_time_s"]
            print(
                f"non-finite guard: step {ours['step_time_s']:.3f} s with, "
                f"{plain['step_time_s']:.3f} s without ({ratio:.3f}x)",
                flush=True,
            )
        command = reference_command(name, config, batch_size, args.steps, args.warmup)
        results = {v: time_torch(command, v) for v in variants}
        print("torch:", json.dumps(results), flush=True)
        rows.append(table_row(f"{name} (batch {batch_size})", batch_size, ours, results))
    print(
        f"\nload average {os.getloadavg()}; torch cells: step, torch time / ours (> 1: ours faster)"
    )
    print(
        "| preset | params | ours: first step | ours: step | "
        + " | ".join(f"torch {v}" for v in variants)
        + (" | ours vs best torch |" if variants else "")
    )
    print("|" + "---|" * (4 + len(variants) + bool(variants)))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
