"""The PyTorch reference of `benchmarks/train_step.py`: a diffusers `UNet2DModel` train step.

Runs inside `benchmarks/.venv-torch` (made by `benchmarks/setup_torch_reference.sh`):

    benchmarks/.venv-torch/bin/python benchmarks/torch_reference.py --model_channels=32 \
        --channel_mult=1,2,2 --num_res_blocks=1 --attention_ds=2 --image_size=16 \
        --channels=1 --batch_size=128

The network is built from a configuration only (no weights are downloaded) to match the
guided-diffusion U-Net of `diffssl_jax.models.unet`: block_out_channels = model_channels x
channel_mult, layers_per_block = num_res_blocks (the decoder has one more per level, as in
guided-diffusion), `AttnDownBlock2D`/`AttnUpBlock2D` at the levels whose downsample factor
is in --attention_ds, attention in the middle block, GroupNorm groups, conv up/downsampling.
The step mirrors ours (Ho et al. 2020, Eq. 14, eps-prediction): sample t and eps, corrupt
with the discrete linear-beta schedule, forward, MSE to eps, backward, global-norm clipping,
AdamW, EMA of the parameters. Prints one JSON line.

Variants a PyTorch user would try on CPU: eager (the default), `--channels_last` (model and
images in NHWC memory, oneDNN's preferred convolution layout) and `--compile`
(`torch.compile` of the model with the default inductor backend; combinable).
"""

import argparse
import json
import os
import statistics
import time

import diffusers
import torch


def parse_args() -> argparse.Namespace:
    def ints(text: str) -> tuple[int, ...]:
        return tuple(int(v) for v in text.split(",") if v.strip())

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_channels", type=int, default=32)
    parser.add_argument("--channel_mult", type=ints, default=(1, 2, 2))
    parser.add_argument("--num_res_blocks", type=int, default=1)
    parser.add_argument("--attention_ds", type=ints, default=(2,), help="downsample factors")
    parser.add_argument("--num_head_channels", type=int, default=32, help="<= 0: use num_heads")
    parser.add_argument("--num_heads", type=int, default=4)
    parser.add_argument("--num_groups", type=int, default=32)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--resblock_updown", type=int, default=0)
    parser.add_argument("--use_scale_shift_norm", type=int, default=0)
    parser.add_argument("--num_classes", type=int, default=0, help="0: unconditional")
    parser.add_argument("--image_size", type=int, default=16)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--out_channels", type=int, default=0, help="0: --channels")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps, the first included")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight_decay", type=float, default=0.0)
    parser.add_argument("--grad_clip_norm", type=float, default=1.0, help="0 disables it")
    parser.add_argument("--ema_decay", type=float, default=0.999)
    parser.add_argument("--threads", type=int, default=0, help="0: the cores this process has")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument(
        "--channels_last", action="store_true", help="model and images in channels_last memory"
    )
    return parser.parse_args()


def make_model(args: argparse.Namespace) -> diffusers.UNet2DModel:
    """A `UNet2DModel` with the sizes of our guided-diffusion U-Net."""
    levels = range(len(args.channel_mult))
    attn = [2**level in args.attention_ds for level in levels]
    down_plain, up_plain = "DownBlock2D", "UpBlock2D"
    if args.resblock_updown:
        down_plain, up_plain = "ResnetDownsampleBlock2D", "ResnetUpsampleBlock2D"
    widths = [args.model_channels * m for m in args.channel_mult]
    # diffusers takes one head width for every attention block; with a fixed head count
    # (num_head_channels <= 0) we use the middle block's, the widest attention there is.
    head_dim = args.num_head_channels
    if head_dim <= 0:
        head_dim = widths[-1] // args.num_heads
    return diffusers.UNet2DModel(
        sample_size=args.image_size,
        in_channels=args.channels,
        out_channels=args.out_channels or args.channels,
        block_out_channels=tuple(widths),
        layers_per_block=args.num_res_blocks,
        down_block_types=tuple("AttnDownBlock2D" if a else down_plain for a in attn),
        up_block_types=tuple("AttnUpBlock2D" if a else up_plain for a in reversed(attn)),
        downsample_type="resnet" if args.resblock_updown else "conv",
        upsample_type="resnet" if args.resblock_updown else "conv",
        attention_head_dim=head_dim,
        norm_num_groups=args.num_groups,
        # diffusers drops the middle attention's GroupNorm under scale-shift unless told.
        attn_norm_num_groups=args.num_groups,
        resnet_time_scale_shift="scale_shift" if args.use_scale_shift_norm else "default",
        dropout=args.dropout,
        num_class_embeds=args.num_classes or None,
    )


def to_memory_format(module_or_tensor, channels_last: bool):
    """`module_or_tensor` in channels_last memory when asked (4-D weights and images only)."""
    if not channels_last:
        return module_or_tensor
    return module_or_tensor.to(memory_format=torch.channels_last)


def time_step(step, warmup: int, steps: int) -> dict:
    """First-step time, then median and min wall and process-CPU times of `steps` calls.

    `step()` returns a scalar tensor (its `.item()` waits for the step). CPU time
    (`time.process_time`, all threads) is the load-robust figure on a shared machine when
    the process runs on one thread; wall time is what a user waits.
    """
    start = time.perf_counter()
    step().item()
    first_step_s = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        step().item()
    wall, cpu = [], []
    for _ in range(steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        step().item()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {
        "step_time_s": statistics.median(wall),
        "step_time_min_s": min(wall),
        "cpu_time_s": statistics.median(cpu),
        "first_step_s": first_step_s,
    }


def make_train_step(model, args):
    """`step(x0, labels) -> loss`: one optimiser step, updating `model` and its EMA in place."""
    params = [p for p in model.parameters() if p.requires_grad]
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    alpha_bar = torch.cumprod(1.0 - torch.linspace(1e-4, 0.02, 1000), dim=0)
    forward = torch.compile(model) if args.compile else model

    def step(x0, labels):
        t = torch.randint(0, 1000, (x0.shape[0],))
        eps = torch.randn_like(x0)
        a = alpha_bar[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1.0 - a).sqrt() * eps
        prediction = forward(xt, t, class_labels=labels).sample
        loss = torch.nn.functional.mse_loss(prediction, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, args.grad_clip_norm)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, params, 1.0 - args.ema_decay)
        return loss.detach()

    return step


def main() -> None:
    args = parse_args()
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = to_memory_format(make_model(args).float().train(), args.channels_last)
    num_params = sum(p.numel() for p in model.parameters())
    step = make_train_step(model, args)
    shape = (args.batch_size, args.channels, args.image_size, args.image_size)
    x0 = to_memory_format(torch.rand(shape) * 2.0 - 1.0, args.channels_last)
    labels = torch.randint(0, args.num_classes, (args.batch_size,)) if args.num_classes else None

    timing = time_step(lambda: step(x0, labels), args.warmup, args.steps)
    print(
        json.dumps(
            {
                "images_per_sec": args.batch_size / timing["step_time_s"],
                **timing,
                "num_params": num_params,
                "torch": torch.__version__,
                "diffusers": diffusers.__version__,
                "threads": threads,
                "compiled": args.compile,
                "channels_last": args.channels_last,
            }
        )
    )


if __name__ == "__main__":
    main()
