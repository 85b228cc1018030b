"""Where the DDPM train step's time goes on XLA:CPU: a per-operation profile.

    .venv/bin/python benchmarks/profile_step.py                       # digits, cifar10_small
    .venv/bin/python benchmarks/profile_step.py --configs=digits --top=30
    .venv/bin/python benchmarks/profile_step.py --set model.num_groups=1
    .venv/bin/python benchmarks/profile_step.py --sweep --configs=digits --steps=6

Runs the guarded step of `train_step.py` under `jax.profiler` and reads the trace in-process
(`ProfileSession().profile_data`): on XLA:CPU each thunk (a fusion, a YNNPACK library call, a
copy) is one event named after its HLO instruction, whose text says what it is: a convolution
(forward, input or weight gradient, by its shapes), a dot, a GroupNorm/attention/other model
op or an optimiser/EMA/guard op (by the module path), a layout change. FLOPs of convolutions
and dots come from their shapes, the step's from XLA's cost analysis, set against a matmul
and a 3x3 convolution timed in the same run. Threads overlap: the per-op sum can exceed the
wall time. `--sweep` times the step under each XLA:CPU option (`XLA_OPTIONS`, or `"a;b"`),
each between two runs with the default options.
"""

import argparse
import collections
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
from train_step import PRESETS, REPO, build_step, load_config, parse_override

INSTR = re.compile(r"^\s*(?:ROOT )?%(\S+) = (\w+)\[([\d,]*)\]\S* ([\w-]+)\((.*)$")
COMP = re.compile(r"^(?:ENTRY )?%(\S+) .*\{$")
MODEL_SCOPES = ("(UNet)", "(ViT)")


def parse_hlo(text: str) -> tuple[dict, dict]:
    """Instructions by name (`{"shape", "op", "rest", "comp"}`) and computations' members."""
    instrs, comps, current = {}, collections.defaultdict(list), None
    for line in text.splitlines():
        if m := COMP.match(line):
            current = m.group(1)
        elif m := INSTR.match(line):
            name, _, dims, op, rest = m.groups()
            shape = tuple(int(d) for d in dims.split(",") if d)
            instrs[name] = {"shape": shape, "op": op, "rest": rest, "comp": current}
            comps[current].append(name)
    return instrs, comps


def _operand_shapes(instr: dict, instrs: dict) -> list[tuple]:
    names = re.findall(r"%([\w.\-]+)", instr["rest"].split("),")[0])
    return [instrs[n]["shape"] for n in names if n in instrs]


def conv_cost(instr: dict, instrs: dict) -> tuple[str, float]:
    """(label, FLOPs) of a convolution: 2 x output elements x window x input features."""
    labels = re.search(r"dim_labels=(\w+)_(\w+)->(\w+)", instr["rest"]).groups()
    lhs, rhs = _operand_shapes(instr, instrs)[:2]
    window = [rhs[i] for i, c in enumerate(labels[1]) if c.isdigit()]
    flops = 2.0 * math.prod(instr["shape"]) * math.prod(window) * rhs[labels[1].index("i")]
    out_spatial = [instr["shape"][i] for i, c in enumerate(labels[2]) if c.isdigit()]
    if max(window) > 3 and min(out_spatial) <= 3:  # the window is the image: a weight gradient
        kind = "conv weight grad"
    elif "transpose(" in instr["rest"] or "lhs_dilate" in instr["rest"]:
        kind = "conv input grad"
    else:
        kind = "conv forward"
    return f"{kind}: {'x'.join(map(str, lhs))} * {'x'.join(map(str, rhs))}", flops


def dot_cost(instr: dict, instrs: dict) -> tuple[str, float]:
    """(label, FLOPs) of a dot: 2 x output elements x contracted size."""
    lhs = _operand_shapes(instr, instrs)[0]
    dims = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", instr["rest"]).group(1)
    contracted = math.prod(lhs[int(d)] for d in dims.split(",") if d)
    label = f"dot (dense, attention): -> {'x'.join(map(str, instr['shape']))}"
    return label, 2.0 * math.prod(instr["shape"]) * contracted


def classify(name: str, instrs: dict, comps: dict) -> tuple[str, str, float]:
    """(category, label, FLOPs) of the thunk `name` from its HLO instruction."""
    instr = instrs.get(name)
    if instr is None:
        return "other (not in HLO)", name, 0.0
    members = [instr]
    if called := re.search(r"calls=%([\w.\-]+)", instr["rest"]):
        members += [instrs[n] for n in comps.get(called.group(1), [])]
    for member in (m for m in members if m["op"] in ("convolution", "dot")):
        label, flops = (conv_cost if member["op"] == "convolution" else dot_cost)(member, instrs)
        return label.split(":")[0], label, flops
    text = " ".join(m["rest"] for m in members)
    if name.startswith(("transpose", "copy")) or instr["op"] in ("copy", "transpose"):
        return "layout (transpose, copy)", name, 0.0
    if not any(scope in text for scope in MODEL_SCOPES):
        return "optimiser, EMA, loss, guard", name, 0.0
    if re.search(r"_attn/", text):
        return "attention (non-dot)", name, 0.0
    if re.search(r"norm/", text):
        return "GroupNorm (+ scale-shift, SiLU)", name, 0.0
    return "other model element-wise", name, 0.0


def run_steps(compiled, state, batch, steps: int) -> tuple[object, float]:
    """Runs `steps` steps; returns the state and the wall time per step in seconds."""
    start = time.perf_counter()
    for _ in range(steps):
        state, _ = jax.block_until_ready(compiled(state, batch))
    return state, (time.perf_counter() - start) / steps


def profile_events(compiled, state, batch, steps: int) -> tuple[dict, object, float]:
    """Per-thunk total ns over `steps` profiled steps, the final state, the wall per step."""
    session = jax.profiler.ProfileSession()
    session.start()
    state, wall = run_steps(compiled, state, batch, steps)
    session.stop()
    totals = collections.Counter()
    for plane in session.profile_data.planes:
        for line in plane.lines:
            if line.name.startswith(("tf_XLAEigen", "tf_XLAExecute", "XLA")):
                for event in line.events:
                    totals[event.name] += event.duration_ns
    return totals, state, wall


def timed(fn, *args, repeats: int = 7) -> float:
    """Median wall seconds of `fn(*args)` after one warm-up call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine_limits() -> dict:
    """GFLOP/s of a 2048^3 matmul and of a 3x3 conv (128x16x16, 64->64) fwd and fwd+bwd."""
    a = jax.random.normal(jax.random.key(0), (2048, 2048))
    matmul = 2 * 2048**3 / timed(jax.jit(jnp.dot), a, a) / 1e9
    x = jax.random.normal(jax.random.key(1), (128, 16, 16, 64))
    w = 0.05 * jax.random.normal(jax.random.key(2), (3, 3, 64, 64))
    dims = ("NHWC", "HWIO", "NHWC")
    conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dims)
    grads = jax.jit(jax.grad(lambda x, w: jnp.sum(conv(x, w) ** 2), argnums=(0, 1)))
    flops = 2.0 * 128 * 16 * 16 * 64 * 64 * 9
    return {
        "matmul": matmul,
        "conv forward": flops / timed(jax.jit(conv), x, w) / 1e9,
        "conv forward+backward": 3 * flops / timed(grads, x, w) / 1e9,
    }


def profile(name: str, config, batch_size: int, steps: int, top: int, limits: dict) -> None:
    """Prints the step's FLOP/s and its top operations by category and by instruction."""
    jitted, state, batch = build_step(config, batch_size)
    compiled = jitted.lower(state, batch).compile()
    step_flops = compiled.cost_analysis()["flops"]
    instrs, comps = parse_hlo(compiled.as_text())
    state, _ = run_steps(compiled, state, batch, 2)
    state, step_s = run_steps(compiled, state, batch, steps)
    totals, state, profiled_wall = profile_events(compiled, state, batch, steps)
    rows = collections.defaultdict(lambda: [0.0, 0.0, 0])  # (category, label) -> ms, flops, n
    for thunk in (t for t in totals if t in instrs):
        category, label, flops = classify(thunk, instrs, comps)
        for i, value in enumerate((totals[thunk] / 1e6 / steps, flops, 1)):
            rows[(category, label)][i] += value
    by_category = collections.defaultdict(lambda: [0.0, 0.0])
    for (category, _), (ms, flops, _) in rows.items():
        by_category[category] = [by_category[category][0] + ms, by_category[category][1] + flops]
    op_sum = sum(v[0] for v in by_category.values())
    rate = step_flops / step_s / 1e9
    print(f"\n## {name}: batch {batch_size}, image {tuple(config.data.image_shape)}")
    print(
        f"step {step_s * 1e3:.1f} ms (unprofiled), {profiled_wall * 1e3:.1f} ms profiled;"
        f" per-op sum {op_sum:.1f} ms; load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"XLA cost analysis: {step_flops / 1e9:.1f} GFLOP -> {rate:.1f} GFLOP/s = "
        f"{rate / limits['matmul']:.0%} of the matmul's {limits['matmul']:.1f} GFLOP/s, "
        f"{rate / limits['conv forward']:.0%} of the conv's {limits['conv forward']:.1f}"
    )
    print("\n| category | ms/step | share | GFLOP/s |\n|---|---|---|---|")
    for category, (ms, flops) in sorted(by_category.items(), key=lambda kv: -kv[1][0]):
        gflops = f"{flops / ms / 1e6:.0f}" if flops else ""
        print(f"| {category} | {ms:.1f} | {ms / op_sum:.0%} | {gflops} |")
    print("\n| top operations | count | ms/step | share | GFLOP/s |\n|---|---|---|---|---|")
    ranked = sorted(rows.items(), key=lambda kv: -kv[1][0])[:top]
    for (category, label), (ms, flops, count) in ranked:
        gflops = f"{flops / ms / 1e6:.0f}" if flops else ""
        print(f"| {label} ({category}) | {count} | {ms:.2f} | {ms / op_sum:.1%} | {gflops} |")


# XLA:CPU options of jaxlib 0.12 (listed by XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=x)
XLA_OPTIONS = [f"--xla_cpu_{o}" for o in (
    "use_xnnpack=false", "experimental_ynn_fusion_type=+eltwise",
    "experimental_ynn_fusion_type=-reduce",
    "experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "opt_preset=CPU_OPT_PRESET_FAST_RUNTIME", "experimental_onednn_fusion_type=dot,eltwise,reduce",
    "use_onednn=true --xla_cpu_use_xnnpack=false", "experimental_enable_tiling_propagation=false",
    "enable_fast_math=true", "multi_thread_eigen=false",
)]  # fmt: skip


def sweep(name: str, options: list[str], steps: int) -> None:
    """Our step (train_step.py subprocesses) under each XLA_FLAGS, between default runs.

    Each option's time is set against the mean of the default runs just before and after.
    """
    script = str(REPO / "benchmarks" / "train_step.py")
    command = [sys.executable, script, "--no_torch", f"--configs={name}", f"--steps={steps}"]

    def run(flags: str) -> dict:
        env = {**os.environ, "XLA_FLAGS": flags}
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        line = next(x for x in out.stdout.splitlines() if x.startswith("ours:"))
        return json.loads(line[len("ours:") :])

    before = run("")
    for option in options:
        ours, after = run(option), run("")
        cells = []
        for key in ("step_time_s", "cpu_time_s"):
            default = (before[key] + after[key]) / 2
            cells.append(f"{key} {ours[key]:.3f} vs {default:.3f}: {default / ours[key]:.2f}x")
        load = os.getloadavg()[0]
        print(
            f"| {option} | {' | '.join(cells)} | compile {ours['compile_s']:.0f} s | {load:.1f} |"
        )
        before = after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="digits,cifar10_small", help=f"of {list(PRESETS)}")
    parser.add_argument("--set", action="append", default=[], help="override: model.key=value")
    parser.add_argument("--steps", type=int, default=3, help="timed and profiled steps")
    parser.add_argument("--top", type=int, default=20, help="operations listed")
    parser.add_argument("--sweep", nargs="?", const=";".join(XLA_OPTIONS), default="")
    args = parser.parse_args()
    if args.sweep:
        for name in args.configs.split(","):
            sweep(name, args.sweep.split(";"), args.steps)
        return
    overrides = dict(parse_override(s) for s in args.set)
    print(f"jax {jax.__version__} on {jax.devices()}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')}")
    limits = machine_limits()
    print("machine (same run), GFLOP/s:", {k: round(v, 1) for k, v in limits.items()})
    for name in args.configs.split(","):
        spec, batch_size, preset = PRESETS[name]
        config = load_config(spec, {**preset, **overrides})
        profile(name, config, batch_size, args.steps, args.top, limits)


if __name__ == "__main__":
    main()
