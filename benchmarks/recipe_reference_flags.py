"""The flags of `torch_reference_recipes.py` (the PyTorch MDM and l-DAE steps) for a config.

Used by `benchmarks/train_step.py --configs=mdm,ldae`: MDM runs the same diffusers
`UNet2DModel` as the DDPM reference with patch masking and torchgeometry's SSIM loss; l-DAE a
plain torch ViT of the same sizes with adaLN-Zero.
"""

from train_step import REPO, common_args, torch_args

TORCH_SCRIPT = REPO / "benchmarks" / "torch_reference_recipes.py"


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
