"""l-DAE's patch-wise tokenizers: the PCA basis (and the pixel tokenizer's identity basis).

Chen et al. 2024 ("Deconstructing Denoising Diffusion Models for Self-Supervised Learning",
l-DAE), Sec. 4 and Eq. 4; docs/methods.md C.3, C.4, C.6. Per example; lift with ``jax.vmap``.

Patches are ``P x P x C`` blocks flattened to ``D = P P C`` in ``(p, q, c)`` order (row in the
patch, column in the patch, channel), numbered row-major over the patch grid
(``l = i * (W / P) + j``): ``"... (h p) (w q) c -> ... (h w) (p q c)"``, the DiT/MAE order.

The paper does not state its PCA preprocessing (docs/methods.md C.3), so it is a choice:

- ``center`` (default True): subtract the patch mean before projecting (ordinary PCA). With
  ``center=False`` the basis diagonalises the second moment ``E[p p^T]`` and ``mean`` is 0.
- ``whiten`` (default False): divide latents by ``sqrt(eigenvalue)``. The noise
  ``sigma_t eps`` is then added in whitened units, so every latent direction gets the same
  signal-to-noise ratio ``1 / sigma_t^2``; without whitening the noise has std ``sigma_t`` in
  pixel units in every direction, so the low-variance directions drown first. Pixel data in
  ``[-1, 1]`` has per-direction variances far from 1, so ``sigma_max = sqrt(2)`` means a very
  different corruption in the two cases.

The pixel tokenizer (the paper's Fig. 5, docs/methods.md C.5) is ``identity_basis``: the
latent of a patch is the patch itself (``d = D``), so noise is added in pixel space. The
latent noise, the corruption and the losses are in ``corruptions/pca_noise.py``.
"""

import einops
import flax.struct
import jax
import jax.numpy as jnp

from diffssl_jax.corruptions.masking import count_patches


def _matmul(a, b):
    # Full float32 precision on TPU: the projections are small and must not round to bf16.
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


@flax.struct.dataclass
class PCABasis:
    """A fitted patch PCA.

    Attributes:
      components: ``[D, D]``, row ``i`` is the unit eigenvector of the ``i``-th largest
        eigenvalue (``V_full``; ``V_d = components[:d]``, ``V_d V_d^T = I``). Each row's sign is
        fixed so that its entry of largest magnitude is positive.
      eigenvalues: ``[D]``, decreasing, the (1/N-normalised) covariance eigenvalues.
      mean: ``[D]``, the patch mean (zeros when ``center`` is False).
      center: whether patches are mean-centred before projecting.
      whiten: whether latents are divided by ``sqrt(eigenvalues)``.
    """

    components: jax.Array
    eigenvalues: jax.Array
    mean: jax.Array
    center: bool = flax.struct.field(pytree_node=False, default=True)
    whiten: bool = flax.struct.field(pytree_node=False, default=False)

    @property
    def dim(self):  # the patch dimension D
        return self.components.shape[-1]


def fit_pca_basis(patches, *, center=True, whiten=False, chunk_size=4096):
    """Fits the PCA basis by eigendecomposing the patch covariance.

    Maths: ``Sigma = (1/N) sum_n (p_n - mu)(p_n - mu)^T = V^T diag(lambda) V`` (Chen et al.
    2024, Sec. 4.1, "eigendecomposition on a large set of randomly sampled patches").
    The centred scatter is accumulated as ``sum_k X_k^T X_k`` over row chunks with ``lax.scan``
    (no ``[N, D, D]`` array; the mean is taken first so the centred sum is accurate).

    Args:
      patches: ``[N, D]`` flattened patches (see ``extract_patches``), ``N >= 2``.
      center: subtract the mean before the eigendecomposition.
      whiten: store the whitening flag in the basis (used by ``encode``/``decode``).
      chunk_size: rows per accumulation step.

    Returns:
      A ``PCABasis``.

    Raises:
      ValueError: if ``patches`` is not ``[N, D]`` with ``N >= 2`` or ``chunk_size < 1``.
    """
    if jnp.ndim(patches) != 2 or patches.shape[0] < 2:
        raise ValueError(
            f"patches must be [N, D] with N >= 2, got shape {jnp.shape(patches)}; flatten "
            "images with extract_patches(...).reshape(-1, D)."
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    n, dim = patches.shape
    mean = jnp.mean(patches, axis=0) if center else jnp.zeros((dim,), patches.dtype)
    num_chunks = -(-n // chunk_size)
    pad = num_chunks * chunk_size - n
    centred = jnp.pad(patches - mean, ((0, pad), (0, 0)))  # zero rows add nothing
    chunks = centred.reshape(num_chunks, chunk_size, dim)

    def accumulate(scatter, chunk):
        return scatter + _matmul(chunk.T, chunk), None

    scatter, _ = jax.lax.scan(accumulate, jnp.zeros((dim, dim), patches.dtype), chunks)
    eigenvalues, eigenvectors = jnp.linalg.eigh(scatter / n)
    components = eigenvectors.T[::-1]
    pivot = jnp.take_along_axis(
        components, jnp.argmax(jnp.abs(components), axis=1)[:, None], axis=1
    )
    components = components * jnp.sign(pivot)
    return PCABasis(components, eigenvalues[::-1], mean, center=center, whiten=whiten)


def check_latent_dim(basis, latent_dim):
    """Raises ValueError unless ``latent_dim`` is an int in ``[1, D]``."""
    if not isinstance(latent_dim, int) or not 1 <= latent_dim <= basis.dim:
        raise ValueError(
            f"latent_dim must be an int in [1, D={basis.dim}] (l-DAE uses 32 for 16x16x3 "
            f"patches), got {latent_dim!r}."
        )


def _whitening_scale(basis, latent_dim):
    tiny = jnp.finfo(basis.eigenvalues.dtype).tiny
    return jnp.sqrt(jnp.maximum(basis.eigenvalues[:latent_dim], tiny))


def identity_basis(dim, dtype=jnp.float32):
    """The pixel tokenizer as a basis: ``V_full = I_D``, ``mu = 0``, unit eigenvalues.

    With it ``encode(p, D) = p`` and ``decode(z) = z``, so latent noise is pixel noise
    (Chen et al. 2024, Fig. 5: "pixel-based tokenizer"; docs/methods.md C.5).

    Args:
      dim: the patch dimension ``D = P P C``.
      dtype: of the arrays.
    """
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive int, got {dim!r}.")
    eye = jnp.eye(dim, dtype=dtype)
    return PCABasis(eye, jnp.ones((dim,), dtype), jnp.zeros((dim,), dtype), center=False)


def coordinates(basis, vectors, latent_dim):
    """The linear part of ``encode``: ``V_d v`` (divided by ``sqrt(lambda_{1..d})`` if whitening).

    ``encode(p) = coordinates(p - mu)``; applied to a difference of patches or to a predicted
    noise map it gives latent coordinates without the mean.

    Args:
      basis: a ``PCABasis``.
      vectors: ``[..., D]``.
      latent_dim: ``d``.

    Returns:
      ``[..., d]``.
    """
    check_latent_dim(basis, latent_dim)
    if vectors.shape[-1] != basis.dim:
        raise ValueError(
            f"patches must end in D={basis.dim} (the basis's patch dimension), got shape "
            f"{vectors.shape}; use the patch_size the basis was fitted with."
        )
    z = _matmul(vectors, basis.components[:latent_dim].T)
    return z / _whitening_scale(basis, latent_dim) if basis.whiten else z


def encode(basis, patches, latent_dim):
    """Projects patches onto the top ``latent_dim`` principal directions.

    Maths: ``z = V_d (p - mu)``, divided by ``sqrt(lambda_{1..d})`` if whitening (Chen et al.
    2024, Sec. 4.1).

    Args:
      basis: a ``PCABasis``.
      patches: ``[..., D]``.
      latent_dim: ``d``.

    Returns:
      latents ``[..., d]``.
    """
    if patches.shape[-1] != basis.dim:
        raise ValueError(
            f"patches must end in D={basis.dim} (the basis's patch dimension), got shape "
            f"{patches.shape}; use the patch_size the basis was fitted with."
        )
    return coordinates(basis, patches - basis.mean, latent_dim)


def decode(basis, latents):
    """Maps latents back to patches (the inverse PCA); ``d`` is ``latents.shape[-1]``.

    Maths: ``p = V_d^T z + mu`` (with ``z`` first multiplied by ``sqrt(lambda)`` if whitening)
    (Chen et al. 2024, Sec. 4.2, "inverse PCA").

    Args:
      basis: a ``PCABasis``.
      latents: ``[..., d]``.

    Returns:
      patches ``[..., D]``; ``decode(encode(p, d))`` is the (affine) orthogonal projection of
      ``p`` onto ``mu + span(V_d)``.
    """
    latent_dim = latents.shape[-1]
    check_latent_dim(basis, latent_dim)
    if basis.whiten:
        latents = latents * _whitening_scale(basis, latent_dim)
    return _matmul(latents, basis.components[:latent_dim]) + basis.mean


def extract_patches(images, patch_size):
    """Cuts images into flattened non-overlapping patches.

    Args:
      images: ``[..., H, W, C]`` (one image or a batch).
      patch_size: ``P``.

    Returns:
      ``[..., L, P*P*C]`` with ``L = (H/P)(W/P)``, ordered as in the module docstring.
    """
    if jnp.ndim(images) < 3:
        raise ValueError(f"images must be [..., H, W, C], got shape {jnp.shape(images)}.")
    count_patches(images.shape[-3:], patch_size)  # raises unless P divides H and W
    return einops.rearrange(
        images, "... (h p) (w q) c -> ... (h w) (p q c)", p=patch_size, q=patch_size
    )


def merge_patches(patches, patch_size, image_shape):
    """The inverse of ``extract_patches``.

    Args:
      patches: ``[..., L, P*P*C]``.
      patch_size: ``P``.
      image_shape: ``(H, W, C)`` of one image.

    Returns:
      images ``[..., H, W, C]``.
    """
    height, width, channels = image_shape
    expected = (count_patches(image_shape, patch_size), patch_size**2 * channels)
    if tuple(patches.shape[-2:]) != expected:
        raise ValueError(
            f"patches of shape {patches.shape} do not tile an image of shape {image_shape} "
            f"with patch_size={patch_size}; expected trailing dims {expected}."
        )
    return einops.rearrange(
        patches,
        "... (h w) (p q c) -> ... (h p) (w q) c",
        h=height // patch_size,
        p=patch_size,
        q=patch_size,
    )
