"""MDM: masked diffusion with a U-Net that reconstructs x0 (Pan, Chen & Shi 2023).

Forward process (docs/methods.md A.2): an integer step s ~ U{0, ..., T-1} (T =
`corruption.num_steps`, 1000), the library time t = s / T, and `masking.mask_corrupt` masks a
random set of `corruption.patch_size` patches whose fraction grows as s / T ("code"
convention, or s / (T + 1) with "paper"), filling them with `corruption.fill` (0 = mid-grey).
The U-Net sees the masked image and t and predicts x0 directly; the loss covers the whole
image (masked and visible pixels alike). Loss (Pan et al. 2023, Eq. 4):
E_{t, x0}[(1 - SSIM(x0, U(x_t, t))) / 2] with the torchgeometry SSIM of docs/methods.md A.3
(`objective.loss = "ssim"`), or the MSE ablation ("mdm with MSE", `objective.loss = "mse"`).

Times are drawn stratified across the batch (`stratified_times` with t_min = 0, floored to a
step): each example's step is still uniform on {0..T-1}, as guided-diffusion's
`UniformSampler`, but the batch covers the steps evenly. `corruption.fixed_t >= 0` replaces
this by one time, i.e. one mask ratio for every example: the "MDM at a fixed t" ablation
(docs/methods.md A.7), which at t = 0.75 is "MAE with SSIM".

Features (docs/methods.md A.4, A.8.5): the image is masked at ratio t (`eval.feature_t`,
MDM 50/1000) with a random mask drawn from the features' `rng`, then the U-Net runs at t; the
decoder-block outputs are returned. The default blocks are those at the two finest output
resolutions (`ddpm.finest_decoder_blocks`); paper-scale configs name A.4's blocks in
`eval.feature_blocks`. MDM is not used as a generator here, so `sample` is None.
"""

import functools

import jax
import jax.numpy as jnp

from diffssl_jax.corruptions import masking
from diffssl_jax.corruptions.times import stratified_times
from diffssl_jax.methods.ddpm import finest_decoder_blocks, select_features
from diffssl_jax.methods.recipe import Recipe
from diffssl_jax.models.unet import UNet
from diffssl_jax.objectives.ssim import MAX_VAL, ssim_loss

LOSSES = ("ssim", "mse")


def _check_config(config) -> None:
    """Raises ValueError on MDM settings that cannot run, naming the key."""
    c, objective = config.corruption, config.objective
    if objective.loss not in LOSSES:
        raise ValueError(f"objective.loss must be one of {LOSSES}, got {objective.loss!r}")
    if objective.ssim_data_range not in MAX_VAL:
        raise ValueError(
            f"objective.ssim_data_range must be one of {tuple(MAX_VAL)}, got "
            f"{objective.ssim_data_range!r}"
        )
    if not (c.fixed_t == -1 or 0.0 <= c.fixed_t <= 1.0):
        raise ValueError(
            f"corruption.fixed_t must be -1 (times sampled, MDM) or a time in [0, 1] (the "
            f"fixed-t ablation), got {c.fixed_t}"
        )
    masking.count_patches(tuple(config.data.image_shape), c.patch_size)  # raises if indivisible
    masking.discrete_step(0.0, num_steps=c.num_steps, convention=c.mask_convention)  # raises


def sample_steps(rng, batch_size: int, num_steps: int, fixed_t: float = -1) -> jax.Array:
    """MDM's training times: t = s / T with s uniform on {0..T-1}, stratified over the batch.

    Maths: s = floor(u T), u ~ stratified U[0, 1) (guided-diffusion `UniformSampler`, Pan et
    al. 2023, Sec. 3.1; Kingma et al. 2021, App. I for the stratification).

    Args:
        rng: a JAX key.
        batch_size: B.
        num_steps: T.
        fixed_t: -1 to sample; a time in [0, 1] gives that time to every example.

    Returns:
        t `[B]` float32, multiples of 1 / T (or `fixed_t`).
    """
    if fixed_t >= 0:
        return jnp.full((batch_size,), fixed_t, jnp.float32)
    u = stratified_times(rng, batch_size, t_min=0.0)
    steps = jnp.clip(jnp.floor(u * num_steps), 0, num_steps - 1)
    return steps / num_steps


def reconstruction_loss(x_pred, x0, *, loss: str, ssim_data_range: str = "reference"):
    """MDM's loss of one example over the whole image.

    Maths: ssim: mean(clamp(1 - SSIM_map(x0, x_pred), 0, 1) / 2) (Pan et al. 2023, Eq. 4);
    mse: mean((x_pred - x0)^2).

    Args:
        x_pred: the network's x0 prediction `[H, W, C]`.
        x0: the clean image `[H, W, C]`.
        loss: "ssim" or "mse".
        ssim_data_range: "reference" (max_val 1, MDM parity) or "data_range" (max_val 2).

    Returns:
        Scalar loss.
    """
    if loss == "ssim":
        return ssim_loss(x_pred, x0, data_range_convention=ssim_data_range)
    if loss == "mse":
        return jnp.mean((x_pred - x0) ** 2)
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def make_recipe(config, inputs=None) -> Recipe:
    """The MDM recipe for `config` (groups model, corruption, objective, data).

    MDM needs no `inputs`. Its `denoiser` is None: the U-Net restores MASKED patches (an
    estimate of x0 from x0 with a random set of patches replaced by `fill`), not
    E[x0 | x0 + sigma eps] under Gaussian noise, so it does not meet the VE denoiser contract
    that samplers and posterior methods assume (its `restore` serves the figures).

    Raises:
        ValueError: on an unknown loss, SSIM convention or mask convention, a `fixed_t`
            outside [0, 1] (other than -1), or a patch size that does not divide the image.
    """
    del inputs
    _check_config(config)
    model = UNet(**config.model)
    c = config.corruption
    image_shape = tuple(config.data.image_shape)
    default_blocks = finest_decoder_blocks(model)
    corrupt = functools.partial(
        masking.mask_corrupt,
        patch_size=c.patch_size,
        num_steps=c.num_steps,
        fill=c.fill,
        convention=c.mask_convention,
    )
    per_example = functools.partial(
        reconstruction_loss,
        loss=config.objective.loss,
        ssim_data_range=config.objective.ssim_data_range,
    )

    def mask_batch(rng, x0, t):
        """`[B, H, W, C]` masked images, an independent mask per example."""
        keys = jax.random.split(rng, x0.shape[0])
        return jax.vmap(corrupt)(keys, x0, t)[0]

    def restore(params, images, rng, *, t):
        """`(masked, restored)`: `images` masked at ratio `t` and the U-Net's restoration."""
        t_batch = jnp.full((images.shape[0],), t, jnp.float32)
        xt = mask_batch(rng, images, t_batch)
        return xt, model.apply({"params": params}, xt, t_batch)[0]

    def init(rng):
        x = jnp.zeros((1, *image_shape), jnp.float32)
        return model.init({"params": rng}, x, jnp.zeros((1,)))["params"]

    def loss(params, batch, rng):
        x0 = batch["image"]
        rng_time, rng_mask, rng_dropout = jax.random.split(rng, 3)
        t = sample_steps(rng_time, x0.shape[0], c.num_steps, c.fixed_t)
        xt = mask_batch(rng_mask, x0, t)
        x_pred, _ = model.apply(
            {"params": params}, xt, t, train=True, rngs={"dropout": rng_dropout}
        )
        return jax.vmap(per_example)(x_pred, x0).mean(), {}

    def features(params, images, rng, *, t=0.05, blocks=None):
        """Decoder activations of `images` masked at ratio `t` (MDM, docs/methods.md A.4).

        Args:
            params: U-Net parameters.
            images: `[B, H, W, C]` in [-1, 1].
            rng: key of the random masks.
            t: time in [0, 1]; the mask ratio is t (MDM: 50/1000).
            blocks: `dec_i` names; None for the two finest resolutions.

        Returns:
            `{name: [B, h, w, c]}` in the order of `blocks`.
        """
        t_batch = jnp.full((images.shape[0],), t, jnp.float32)
        xt = mask_batch(rng, images, t_batch)
        _, feats = model.apply({"params": params}, xt, t_batch)
        return select_features(feats, blocks, default_blocks)

    return Recipe(init=init, loss=loss, features=features, sample=None, restore=restore)
