"""Times our jitted MDM (U-Net, SSIM loss) and l-DAE (ViT, adaLN) train steps against PyTorch.

    .venv/bin/python benchmarks/train_step_recipes.py                # mdm and ldae, batch 128
    taskset -c 1 .venv/bin/python benchmarks/train_step_recipes.py  # one core, both sides
    .venv/bin/python benchmarks/train_step_recipes.py --recipes=ldae --batch_size=64

Our side: the recipe's loss in `make_train_step` (clipping, AdamW, EMA), jitted with the
state donated, on random batches, built by `benchmarks/train_step.py` (whose step timer,
config loader and U-Net flags are reused) for `configs/mdm/digits.py` and `configs/ldae/digits.py`.
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
import json
import os
import subprocess

import jax
from train_step import (
    REPO,
    SETUP_COMMAND,
    TORCH_PYTHON,
    common_args,
    load_config,
    time_ours,
    torch_args,
)

TORCH_SCRIPT = REPO / "benchmarks" / "torch_reference_recipes.py"
PRESETS = {"mdm": "configs/mdm/digits.py", "ldae": "configs/ldae/digits.py"}


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
    common = common_args(config, batch_size, steps, warmup)
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
