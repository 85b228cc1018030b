"""One 3x3 convolution, forward and forward+backward, in JAX (XLA:CPU) and PyTorch (oneDNN).

    .venv/bin/python benchmarks/conv_probe.py

Explains where the train-step gap of `benchmarks/train_step.py` comes from: the U-Net step
is dominated by convolutions, and on CPU XLA's forward convolution is on par with
PyTorch's while its backward (the input- and weight-gradient convolutions) is about 2x
slower. The PyTorch side runs in `benchmarks/.venv-torch` (see `setup_torch_reference.sh`).
"""

import pathlib
import statistics
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp

REPO = pathlib.Path(__file__).resolve().parents[1]
TORCH_PYTHON = REPO / "benchmarks" / ".venv-torch" / "bin" / "python"
BATCH, SIDE, CHANNELS, REPEATS = 128, 16, 64, 12

TORCH_SCRIPT = textwrap.dedent(f"""
    import statistics, time, torch
    torch.set_num_threads(2)
    x = torch.randn({BATCH}, {CHANNELS}, {SIDE}, {SIDE}, requires_grad=True)
    conv = torch.nn.Conv2d({CHANNELS}, {CHANNELS}, 3, padding=1, bias=False)
    def forward():
        with torch.no_grad():
            conv(x)
    def backward():
        (conv(x) ** 2).sum().backward()
    for name, fn in (("forward", forward), ("forward+backward", backward)):
        times = []
        for _ in range({REPEATS}):
            start = time.perf_counter(); fn(); times.append(time.perf_counter() - start)
        print(name, statistics.median(times[2:]) * 1e3)
""")


def time_jax() -> dict:
    rng_x, rng_w = jax.random.split(jax.random.key(0))
    x = jax.random.normal(rng_x, (BATCH, SIDE, SIDE, CHANNELS))
    w = 0.05 * jax.random.normal(rng_w, (3, 3, CHANNELS, CHANNELS))
    dims = ("NHWC", "HWIO", "NHWC")
    conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dims)
    grad = jax.grad(lambda x, w: jnp.sum(conv(x, w) ** 2), argnums=(0, 1))
    out = {}
    for name, fn in (("forward", jax.jit(conv)), ("forward+backward", jax.jit(grad))):
        jax.block_until_ready(fn(x, w))
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            jax.block_until_ready(fn(x, w))
            times.append(time.perf_counter() - start)
        out[name] = statistics.median(times[2:]) * 1e3
    return out


def time_torch() -> dict | None:
    if not TORCH_PYTHON.exists():
        print(f"PyTorch side skipped: make {TORCH_PYTHON} with benchmarks/setup_torch_reference.sh")
        return None
    result = subprocess.run(
        [str(TORCH_PYTHON), "-c", TORCH_SCRIPT], capture_output=True, text=True, check=True
    )
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in result.stdout.splitlines()
    }


def main() -> None:
    ours, reference = time_jax(), time_torch()
    print(f"conv 3x3, {CHANNELS}->{CHANNELS} channels, batch {BATCH}, {SIDE}x{SIDE}, float32 (ms)")
    print(f"{'pass':<18} | jax {jax.__version__:<8} | torch    | ratio torch/jax time")
    for name, ms in ours.items():
        theirs = reference[name] if reference else float("nan")
        print(f"{name:<18} | {ms:12.1f} | {theirs:8.1f} | {theirs / ms:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
