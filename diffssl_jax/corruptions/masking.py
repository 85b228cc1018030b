"""Patch masking: MDM's "masking diffusion" forward process and MAE's fixed-ratio masking.

Per example (``x0`` is ``[H, W, C]``, ``t`` a scalar); lift with ``jax.vmap``. The image is cut
into ``L = (H / P) (W / P)`` non-overlapping ``P x P`` patches, numbered row-major over the patch
grid (patch ``l = i * (W / P) + j``), MDM's patchify order. Each call draws i.i.d. uniform noise
over the L patches and keeps the ``keep`` patches of lowest noise, i.e. of rank ``< keep``: the
MAE ``random_masking`` trick, written as a rank comparison so that ``keep`` may be a traced value
(jit/vmap-safe, no gather of variable length). Masked pixels are set to ``fill`` in normalised
``[-1, 1]`` space (0 = mid-grey, as in MDM); there is no mask token or mask channel.

Step conventions, for a library time ``t`` in ``[0, 1]`` and ``T = num_steps``
(Pan et al. 2023, MDM, Sec. 3.1; docs/methods.md A.2):

- ``"code"`` (default, the official code, "used this in paper"): step ``s = floor(t T)``
  clipped to ``{0, ..., T - 1}``, ratio ``r = s / T``, keep ``floor(L (1 - r))`` patches, so
  ``L - floor(L (1 - r))`` are masked. ``t = 0`` masks nothing; ``t = (T - 1) / T`` is the last
  step.
- ``"paper"`` (the v4 paper): step ``s = floor(t T) + 1`` clipped to ``{1, ..., T}``, ratio
  ``r = s / (T + 1)``, ``floor(r L)`` patches masked. Here ``t = 0`` already masks
  ``floor(L / (T + 1))`` patches.

A method that samples integer steps ``s`` passes ``t = s / T``; ``floor(t T)`` then recovers
``s`` despite float32 rounding because a tolerance of ``1e-3`` is added before the floor (it moves
the step boundaries of a continuous ``t`` by ``1e-3 / T``, which is immaterial). Patch counts
are computed in exact integer arithmetic.
"""

import jax
import jax.numpy as jnp

CONVENTIONS = ("code", "paper")
_STEP_TOL = 1e-3


def _check_convention(convention):
    if convention not in CONVENTIONS:
        raise ValueError(
            f"Unknown masking convention {convention!r}; valid conventions are "
            f"{list(CONVENTIONS)} ('code' = the MDM code, ratio t/T; 'paper' = ratio t/(T+1))."
        )


def _check_num_steps(num_steps):
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int (e.g. 1000), got {num_steps!r}.")


def _check_scalar_t(t):
    if jnp.ndim(t) != 0:
        raise ValueError(
            f"Masking works on one example and needs a scalar t, got shape {jnp.shape(t)}; "
            "batch it with jax.vmap."
        )


def count_patches(image_shape, patch_size):
    """The number ``L`` of ``patch_size x patch_size`` patches of an image.

    Args:
      image_shape: ``(H, W, C)`` or ``(H, W)``.
      patch_size: patch side ``P``.

    Returns:
      ``L = (H / P) (W / P)`` as a Python int.

    Raises:
      ValueError: if ``H`` or ``W`` is not a multiple of ``P``.
    """
    height, width = image_shape[0], image_shape[1]
    if patch_size < 1 or height % patch_size or width % patch_size:
        raise ValueError(
            f"Image size {height}x{width} is not divisible by patch_size={patch_size}; "
            "resize or crop the images, or choose a patch size that divides both sides."
        )
    return (height // patch_size) * (width // patch_size)


def discrete_step(t, *, num_steps=1000, convention="code"):
    """The integer diffusion step of a continuous time.

    Maths: ``s = floor(t T)`` in ``{0..T-1}`` ("code") or ``floor(t T) + 1`` in ``{1..T}``
    ("paper") (Pan et al. 2023, Sec. 3.1).

    Args:
      t: time in ``[0, 1]``, any shape.
      num_steps: ``T``.
      convention: ``"code"`` or ``"paper"``.

    Returns:
      int32 steps, shape of ``t``.
    """
    _check_convention(convention)
    _check_num_steps(num_steps)
    step = jnp.clip(jnp.floor(jnp.asarray(t) * num_steps + _STEP_TOL), 0, num_steps - 1)
    step = step.astype(jnp.int32)
    return step if convention == "code" else step + 1


def mask_ratio(t, *, num_steps=1000, convention="code"):
    """The nominal mask ratio of time ``t``.

    Maths: ``r = s / T`` ("code") or ``r = s / (T + 1)`` ("paper") (Pan et al. 2023, Sec. 3.1).

    Args:
      t: time in ``[0, 1]``, any shape.
      num_steps: ``T``.
      convention: ``"code"`` or ``"paper"``.

    Returns:
      float32 ratios, shape of ``t``.
    """
    step = discrete_step(t, num_steps=num_steps, convention=convention)
    denominator = num_steps if convention == "code" else num_steps + 1
    return step.astype(jnp.float32) / denominator


def num_kept_patches(t, num_patches, *, num_steps=1000, convention="code"):
    """How many patches stay visible at time ``t``, in exact integer arithmetic.

    Maths: ``keep = floor(L (T - s) / T) = floor(L (1 - r))`` ("code", the official MDM code's
    ``int(L * (1 - r))``) or ``keep = L - floor(L s / (T + 1))`` ("paper": ``floor(r L)``
    masked) (Pan et al. 2023, Sec. 3.1).

    Args:
      t: time in ``[0, 1]``, any shape.
      num_patches: ``L``.
      num_steps: ``T``.
      convention: ``"code"`` or ``"paper"``.

    Returns:
      int32 counts in ``[0, L]``, shape of ``t``.
    """
    step = discrete_step(t, num_steps=num_steps, convention=convention)
    if convention == "code":
        return (num_patches * (num_steps - step)) // num_steps
    return num_patches - (num_patches * step) // (num_steps + 1)


def patch_mask(rng, image_shape, num_kept, *, patch_size):
    """A random patch mask that keeps exactly ``num_kept`` patches.

    Maths: keep patch ``l`` iff ``rank(u_l) < keep`` with ``u ~ U(0, 1)^L`` (He et al. 2022,
    MAE ``random_masking``; Pan et al. 2023, Sec. 3.1).

    Args:
      rng: a JAX key.
      image_shape: ``(H, W, C)`` or ``(H, W)``.
      num_kept: int or int array ``[]``, number of visible patches (may be traced).
      patch_size: patch side ``P``.

    Returns:
      ``mask [H, W, 1]`` float32, 1 on kept pixels and 0 on masked ones, constant per patch.

    Raises:
      ValueError: if the image size is not a multiple of ``patch_size``.
    """
    num = count_patches(image_shape, patch_size)
    grid_h, grid_w = image_shape[0] // patch_size, image_shape[1] // patch_size
    noise = jax.random.uniform(rng, (num,))
    rank = jnp.argsort(jnp.argsort(noise))
    kept = (rank < num_kept).astype(jnp.float32).reshape(grid_h, grid_w)
    mask = jnp.repeat(jnp.repeat(kept, patch_size, axis=0), patch_size, axis=1)
    return mask[:, :, None]


def _check_image(x0):
    if jnp.ndim(x0) != 3:
        raise ValueError(
            f"x0 must be one image [H, W, C] (no batch axis), got shape {jnp.shape(x0)}; "
            "batch it with jax.vmap."
        )


def mask_corrupt(rng, x0, t, *, patch_size=8, num_steps=1000, fill=0.0, convention="code"):
    """MDM's forward process: mask a time-dependent fraction of the patches.

    Maths: ``x_t = m * x0 + (1 - m) * fill`` with ``m`` a random patch mask whose masked
    fraction is ``r(t)`` (Pan et al. 2023, MDM, Sec. 3.1; the network then predicts ``x0``,
    Eq. 4).

    Args:
      rng: a JAX key.
      x0: clean image ``[H, W, C]`` in ``[-1, 1]``.
      t: scalar time in ``[0, 1]`` (``t = s / T`` for an integer step ``s``).
      patch_size: patch side ``P`` (MDM: 8).
      num_steps: ``T`` (MDM: 1000).
      fill: value of masked pixels in normalised space (MDM: 0).
      convention: ``"code"`` or ``"paper"`` (see the module docstring).

    Returns:
      ``(x_t [H, W, C], mask [H, W, 1])`` with mask 1 = kept, 0 = masked.

    Raises:
      ValueError: on a batched ``x0`` or ``t``, a size not divisible by ``patch_size``, or an
        unknown convention.
    """
    _check_image(x0)
    _check_scalar_t(t)
    num = count_patches(x0.shape, patch_size)
    keep = num_kept_patches(t, num, num_steps=num_steps, convention=convention)
    mask = patch_mask(rng, x0.shape, keep, patch_size=patch_size)
    return jnp.where(mask > 0, x0, jnp.asarray(fill, x0.dtype)), mask


def fixed_ratio_corrupt(rng, x0, *, ratio=0.75, patch_size=16, fill=0.0):
    """MAE-style masking at a fixed ratio, filling masked patches with ``fill``.

    Maths: keep ``int(L (1 - ratio))`` patches, chosen by ``rank(u) < keep`` (He et al. 2022,
    MAE, Sec. 3; the masked image is fed to the network as in MDM's MAE baseline).

    Args:
      rng: a JAX key.
      x0: clean image ``[H, W, C]`` in ``[-1, 1]``.
      ratio: Python float in ``[0, 1)``, fraction of masked patches.
      patch_size: patch side ``P``.
      fill: value of masked pixels in normalised space.

    Returns:
      ``(x_masked [H, W, C], mask [H, W, 1])`` with mask 1 = kept, 0 = masked.

    Raises:
      ValueError: on a batched ``x0``, a ratio outside ``[0, 1)`` or an indivisible size.
    """
    _check_image(x0)
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1) (e.g. 0.75 for MAE), got {ratio!r}.")
    num = count_patches(x0.shape, patch_size)
    keep = int(num * (1.0 - ratio))
    mask = patch_mask(rng, x0.shape, keep, patch_size=patch_size)
    return jnp.where(mask > 0, x0, jnp.asarray(fill, x0.dtype)), mask
