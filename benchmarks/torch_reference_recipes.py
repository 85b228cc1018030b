"""PyTorch references of `benchmarks/train_step_recipes.py`: MDM and l-DAE train steps.

Runs inside `benchmarks/.venv-torch` (made by `benchmarks/setup_torch_reference.sh`):

    benchmarks/.venv-torch/bin/python benchmarks/torch_reference_recipes.py --recipe=mdm \
        --model_channels=32 --channel_mult=1,2,2 --num_res_blocks=1 --attention_ds= \
        --num_groups=8 --image_size=16 --channels=1 --batch_size=128
    benchmarks/.venv-torch/bin/python benchmarks/torch_reference_recipes.py --recipe=ldae \
        --vit_hidden_size=64 --vit_depth=6 --vit_num_heads=4 --vit_patch_size=4 \
        --corruption_patch_size=4 --latent_dim=4 --image_size=16 --channels=1

The U-Net, batch, optimiser and timing flags are those of `torch_reference.py` (parsed by it);
the flags below are the recipes'. Both steps mirror ours: clipping, AdamW, EMA of the
parameters, one JSON line printed.

- mdm (Pan et al. 2023, Eq. 4): the diffusers `UNet2DModel` of `torch_reference.make_model`;
  a step s ~ U{0..T-1} per image, `floor(L (1 - s / T))` of the L patches kept (random per
  image, the rest set to `--fill`), the U-Net predicts x0 from the masked image and s, loss
  mean(clamp(1 - SSIM_map(x_pred, x0), 0, 1) / 2) with torchgeometry's SSIM (Gaussian 5x5,
  sigma 1.5, zero padding, C1 = (0.01 L)^2, C2 = (0.03 L)^2, L = `--ssim_max_val`).
- ldae (Chen et al. 2024, Eq. 4): a plain ViT of our `models/vit.py`'s sizes (sin-cos
  positions, adaLN-Zero blocks whose modulation MLP is a quarter wide, a zero-initialised
  head); noise sigma_t = sigma_max t in the top d components of a patch PCA (a random
  orthonormal basis: its values do not change the cost), inverse PCA to pixels, x0 target,
  loss lambda_t sum_i w_i (V (p(x0) - p(x_pred)))_i^2, w = 1 (i <= d) else
  `--residual_weight`, lambda_t = 1 / (1 + sigma_t^2), mean over patches.
"""

import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch_reference  # noqa: E402  (the diffusers U-Net and the shared flags)


def parse_args() -> tuple[argparse.Namespace, argparse.Namespace]:
    """(recipe flags, `torch_reference.py` flags) from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=("mdm", "ldae"), required=True)
    parser.add_argument("--num_steps", type=int, default=1000, help="MDM's T")
    parser.add_argument("--mask_patch_size", type=int, default=4, help="MDM's mask patch P")
    parser.add_argument("--fill", type=float, default=0.0, help="value of masked pixels")
    parser.add_argument("--ssim_max_val", type=float, default=1.0, help="MDM: 1 on [-1, 1]")
    parser.add_argument("--vit_hidden_size", type=int, default=64)
    parser.add_argument("--vit_depth", type=int, default=6)
    parser.add_argument("--vit_num_heads", type=int, default=4)
    parser.add_argument("--vit_patch_size", type=int, default=4)
    parser.add_argument("--vit_mlp_ratio", type=float, default=4.0)
    parser.add_argument("--corruption_patch_size", type=int, default=4, help="PCA patch P")
    parser.add_argument("--latent_dim", type=int, default=4, help="PCA components noised, d")
    parser.add_argument("--residual_weight", type=float, default=0.1)
    parser.add_argument("--sigma_max", type=float, default=math.sqrt(2.0))
    recipe_args, rest = parser.parse_known_args()
    sys.argv = [sys.argv[0], *rest]
    return recipe_args, torch_reference.parse_args()


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """`[B, C, H, W] -> [B, L, P P C]` in (p, q, c) order, patches row-major (ours)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(tokens: torch.Tensor, p: int, c: int, h: int, w: int) -> torch.Tensor:
    """The inverse of `patchify`: `[B, L, P P C] -> [B, C, H, W]`."""
    b = tokens.shape[0]
    x = tokens.reshape(b, h // p, w // p, p, p, c)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)


def mask_patches(x0, steps, num_steps: int, p: int, fill: float) -> torch.Tensor:
    """MDM's masking: keep the floor(L (1 - s / T)) patches of lowest uniform noise."""
    b, _, h, w = x0.shape
    num_patches = (h // p) * (w // p)
    keep = (num_patches * (num_steps - steps)) // num_steps  # exact integer floor
    ranks = torch.rand(b, num_patches).argsort(1).argsort(1)
    visible = (ranks < keep[:, None]).view(b, 1, h // p, w // p).to(x0.dtype)
    visible = visible.repeat_interleave(p, 2).repeat_interleave(p, 3)
    return x0 * visible + fill * (1.0 - visible)


def ssim_loss(x, y, max_val: float = 1.0, size: int = 5, sigma: float = 1.5):
    """torchgeometry's SSIM loss: mean(clamp(1 - SSIM_map, 0, 1) / 2), zero padding.

    Maths: SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 +
    C2)), Gaussian-windowed statistics (Wang et al. 2004, Eq. 13).
    """
    channels = x.shape[1]
    offsets = torch.arange(size, dtype=x.dtype) - size // 2
    g = torch.exp(-(offsets**2) / (2 * sigma**2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()

    def blur(z):
        return F.conv2d(z, window, padding=size // 2, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    s_x = blur(x * x) - mu_x**2
    s_y = blur(y * y) - mu_y**2
    s_xy = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    ssim = ((2 * mu_x * mu_y + c1) * (2 * s_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (s_x + s_y + c2)
    )
    return (torch.clamp(1.0 - ssim, 0.0, 1.0) / 2.0).mean()


def sincos_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoid of `t` (cosines first), frequencies 10000^(-i / (dim / 2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def position_embedding(grid: int, dim: int) -> torch.Tensor:
    """`[grid^2, dim]` 2-D sin-cos position embedding (columns then rows, MAE)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    one_d = torch.arange(grid, dtype=torch.float64)[:, None] * omega[None]
    one_d = torch.cat([torch.sin(one_d), torch.cos(one_d)], dim=1)  # [grid, dim / 2]
    cols = one_d[None].expand(grid, grid, dim // 2)
    rows = one_d[:, None].expand(grid, grid, dim // 2)
    return torch.cat([cols, rows], dim=-1).reshape(grid * grid, dim).float()


class AdaLN(nn.Module):
    """`c -> chunks` modulation vectors: SiLU, Linear(h / 4), SiLU, Linear(chunks h), zero."""

    def __init__(self, hidden: int, chunks: int):
        super().__init__()
        self.chunks = chunks
        self.net = nn.Sequential(
            nn.SiLU(),
            nn.Linear(hidden, hidden // 4),
            nn.SiLU(),
            nn.Linear(hidden // 4, chunks * hidden),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, c):
        return self.net(c).chunk(self.chunks, dim=-1)


class Block(nn.Module):
    """Pre-LN Transformer block with adaLN-Zero (DiT): attention then a GELU MLP."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden, eps=1e-6, elementwise_affine=False)
        self.norm2 = nn.LayerNorm(hidden, eps=1e-6, elementwise_affine=False)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        width = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, width), nn.GELU(approximate="tanh"), nn.Linear(width, hidden)
        )
        self.ada = AdaLN(hidden, 6)

    def forward(self, x, c):
        shift1, scale1, gate1, shift2, scale2, gate2 = (m[:, None] for m in self.ada(c))
        b, n, d = x.shape
        h = self.norm1(x) * (1 + scale1) + shift1
        q, k, v = self.qkv(h).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + gate1 * self.proj(h)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


class ViT(nn.Module):
    """`(x [B, C, H, W], t [B] in [0, 1]) -> x0 prediction`, our `models/vit.py` sizes."""

    def __init__(self, args, image_size: int, channels: int):
        super().__init__()
        hidden, p = args.vit_hidden_size, args.vit_patch_size
        self.p, self.channels, self.size = p, channels, image_size
        self.embed = nn.Conv2d(channels, hidden, p, stride=p)
        self.register_buffer("pos", position_embedding(image_size // p, hidden))
        self.time = nn.Sequential(nn.Linear(256, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.blocks = nn.ModuleList(
            Block(hidden, args.vit_num_heads, args.vit_mlp_ratio) for _ in range(args.vit_depth)
        )
        self.norm = nn.LayerNorm(hidden, eps=1e-6, elementwise_affine=False)
        self.final_ada = AdaLN(hidden, 2)
        self.head = nn.Linear(hidden, p * p * channels)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x, t):
        h = self.embed(x).flatten(2).transpose(1, 2) + self.pos
        c = self.time(sincos_embedding(1000.0 * t, 256))
        for block in self.blocks:
            h = block(h, c)
        shift, scale = (m[:, None] for m in self.final_ada(c))
        tokens = self.head(self.norm(h) * (1 + scale) + shift)
        return unpatchify(tokens, self.p, self.channels, self.size, self.size)


def make_mdm_loss(model, recipe):
    """`x0 -> loss` of one MDM batch (see the module docstring)."""

    def loss_fn(x0):
        steps = torch.randint(0, recipe.num_steps, (x0.shape[0],))
        xt = mask_patches(x0, steps, recipe.num_steps, recipe.mask_patch_size, recipe.fill)
        return ssim_loss(model(xt, steps).sample, x0, recipe.ssim_max_val)

    return loss_fn


def make_ldae_loss(model, recipe, channels: int):
    """`x0 -> loss` of one l-DAE batch with a random orthonormal PCA basis (docstring)."""
    p, d = recipe.corruption_patch_size, recipe.latent_dim
    dim = p * p * channels
    basis = torch.linalg.qr(torch.randn(dim, dim, dtype=torch.float64))[0].T.float()
    mean = 0.1 * torch.randn(dim)
    weights = torch.where(torch.arange(dim) < d, 1.0, recipe.residual_weight)

    def loss_fn(x0):
        b, c, h, w = x0.shape
        t = torch.rand(b)
        sigma = recipe.sigma_max * t
        patches = patchify(x0, p)
        z = (patches - mean) @ basis[:d].T
        z = z + sigma[:, None, None] * torch.randn_like(z)
        xt = unpatchify(z @ basis[:d] + mean, p, c, h, w)
        r = (patches - patchify(model(xt, t), p)) @ basis.T
        per_example = (weights * r**2).sum(-1).mean(-1) / (1.0 + sigma**2)
        return per_example.mean()

    return loss_fn


def make_step(model, loss_fn, args):
    """`step(x0) -> loss`: loss, backward, clipping, AdamW, EMA (as `torch_reference`)."""
    params = [p for p in model.parameters() if p.requires_grad]
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)

    def step(x0):
        loss = loss_fn(x0)
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
    recipe, args = parse_args()
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    memory_format = torch_reference.to_memory_format
    if recipe.recipe == "mdm":
        model = memory_format(torch_reference.make_model(args).float().train(), args.channels_last)
        loss_fn = make_mdm_loss(model, recipe)
    else:
        model = ViT(recipe, args.image_size, args.channels).float().train()
        loss_fn = make_ldae_loss(model, recipe, args.channels)
    if args.compile:
        loss_fn = torch.compile(loss_fn)
    step = make_step(model, loss_fn, args)
    x0 = torch.rand(args.batch_size, args.channels, args.image_size, args.image_size) * 2 - 1
    x0 = memory_format(x0, args.channels_last and recipe.recipe == "mdm")
    timing = torch_reference.time_step(lambda: step(x0), args.warmup, args.steps)
    result = {
        "recipe": recipe.recipe,
        "images_per_sec": args.batch_size / timing["step_time_s"],
        **timing,
        "num_params": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
        "threads": threads,
        "compiled": args.compile,
        "channels_last": args.channels_last and recipe.recipe == "mdm",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
