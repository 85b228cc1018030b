"""Times our jitted DDPM train step against the same U-Net in PyTorch (diffusers).

    .venv/bin/python benchmarks/train_step.py                      # digits, batch 128
    .venv/bin/python benchmarks/train_step.py --configs=digits,cifar10_small
    .venv/bin/python benchmarks/train_step.py --config=configs/ddpm/cifar10.py:tiny \
        --batch_size=8 --set model.model_channels=16

Our side: `methods.make_recipe(config)`, `make_optimizer`, `make_train_step` wrapped in the
on-device non-finite guard (`training.finite_guard`, as the training loop runs it), jitted
with the state donated, on random float32 batches; `--guard_overhead` also times the plain
step in the same run and prints the guard's cost. It reports the trace (`.lower`) and XLA compile
(`.compile`) times, the first call and the median of the timed steps. The reference
(`benchmarks/torch_reference.py`) runs in `benchmarks/.venv-torch` (made by
`benchmarks/setup_torch_reference.sh`) as a subprocess, after ours, with the same sizes,
batch, clipping, AdamW and EMA; without that venv only our numbers are printed.
"""

import argparse
import importlib.util
import json
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

from diffssl_jax import methods  # noqa: E402
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
}


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
    import ast

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


def time_ours(config, batch_size: int, steps: int, warmup: int, guard: bool = True) -> dict:
    """Builds the recipe's train step for `config`, jits it (state donated) and times it.

    With `guard` (the default) the step carries the training loop's non-finite guard.

    Reports the trace (`.lower`) and XLA compile (`.compile`) times, the first call, and the
    median wall and process-CPU (`time.process_time`, all threads) times of the timed steps.
    """
    recipe = methods.make_recipe(config)
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
    num_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
    dtypes = {str(p.dtype) for p in jax.tree.leaves(state.params)}

    jitted = jax.jit(step_fn, donate_argnums=0)
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


def time_torch(args: list[str], compile_model: bool) -> dict | None:
    """Runs torch_reference.py in its venv; None (and how to make it) when the venv is missing."""
    if not TORCH_PYTHON.exists():
        print(
            f"PyTorch reference skipped: {TORCH_PYTHON} is missing. Create it with\n"
            f"    {SETUP_COMMAND}"
        )
        return None
    command = [str(TORCH_PYTHON), str(TORCH_SCRIPT), *args]
    if compile_model:
        command.append("--compile")
    print("running:", " ".join(command[1:]), flush=True)
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    if result.returncode:
        print(f"PyTorch reference failed:\n{result.stderr[-3000:]}")
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def print_table(name: str, ours: dict, torch_result: dict | None) -> None:
    """A side-by-side table; the ratio is ours / torch (> 1 means ours is faster)."""
    header = ("implementation", "params", "first step (s)", "step (s) median / min", "images/s")
    rows = [
        (
            f"diffssl_jax (jax {jax.__version__})",
            f"{ours['num_params']:,}",
            f"{ours['first_step_s']:.2f} (trace {ours['trace_s']:.2f} "
            f"+ compile {ours['compile_s']:.2f})",
            f"{ours['step_time_s']:.3f} / {ours['step_time_min_s']:.3f}",
            f"{ours['images_per_sec']:.1f}",
        )
    ]
    if torch_result is not None:
        mode = "compiled" if torch_result["compiled"] else "eager"
        rows.append(
            (
                f"diffusers {torch_result['diffusers']} (torch {torch_result['torch']}, {mode})",
                f"{torch_result['num_params']:,}",
                f"{torch_result['first_step_s']:.2f}",
                f"{torch_result['step_time_s']:.3f} / {torch_result['step_time_min_s']:.3f}",
                f"{torch_result['images_per_sec']:.1f}",
            )
        )
        ratio = ours["images_per_sec"] / torch_result["images_per_sec"]
        rows.append(("ratio ours/torch (images/s)", "", "", "", f"{ratio:.2f}x"))
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    print(f"\n{name}")
    for row in (header, tuple("-" * w for w in widths), *rows):
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="", help=f"presets, comma-separated: {list(PRESETS)}")
    parser.add_argument("--config", default="configs/ddpm/digits.py", help="path[:variants]")
    parser.add_argument("--set", action="append", default=[], help="override: model.key=value")
    parser.add_argument("--batch_size", type=int, default=0, help="0: the preset's or 128")
    parser.add_argument("--steps", type=int, default=8, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps, the first included")
    parser.add_argument("--no_torch", action="store_true", help="skip the PyTorch reference")
    parser.add_argument("--torch_compile", action="store_true", help="torch.compile the model")
    parser.add_argument(
        "--guard_overhead", action="store_true", help="also time the step without the guard"
    )
    args = parser.parse_args()

    overrides = dict(parse_override(s) for s in args.set)
    if args.configs:
        runs = [(n, *PRESETS[n]) for n in args.configs.split(",")]
    else:
        runs = [(args.config, args.config, 128, {})]
    print(f"jax {jax.__version__} on {jax.devices()}; float32")
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
        flags = torch_args(config, batch_size, args.steps, args.warmup)
        torch_result = None if args.no_torch else time_torch(flags, args.torch_compile)
        if torch_result is not None:
            print("torch:", json.dumps(torch_result), flush=True)
        print_table(
            f"{label}, image {tuple(config.data.image_shape)}, batch {batch_size}",
            ours,
            torch_result,
        )


if __name__ == "__main__":
    main()
