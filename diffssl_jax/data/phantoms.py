"""Random ellipse phantoms (Shepp-Logan-style) and the Shepp-Logan phantom, for MRI priors.

Shepp & Logan (1974) draw a head as a sum of ellipses with additive intensities: a bright
outer ellipse (the skull), a slightly smaller negative one (the brain), and small ellipses
inside. `random_ellipse_phantoms` draws heads of that kind with random geometry; a prior
trained on them is evaluated on held-out phantoms and on the real Shepp-Logan phantom
(docs/methods.md part F, "MRI phantoms"). Images are `[H, W, 1]` float32 in [-1, 1] with the
background exactly -1.
"""

import functools

import numpy as np

from diffssl_jax.data.arrays import ArraySource
from diffssl_jax.data.resize import resize_bilinear

PHANTOM_SPLITS = {"train": (0, 4096), "test": (1, 256)}  # split: (seed, default size)
_SKULL, _BRAIN = 1.0, -0.8  # modified Shepp-Logan intensities: skull 1, brain 1 - 0.8 = 0.2
_CHUNK_ELEMENTS = 2**22  # rendering buffer size (elements of [B, E, P]), bounds memory


def _check_seed(seed) -> int:
    if isinstance(seed, bool | np.bool_) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}.")
    return int(seed)


def _head_ellipses(rng: np.random.Generator) -> np.ndarray:
    """`[2, 6]` rows `(cx, cy, a, b, theta, intensity)`: the skull, then the brain inside it."""
    cx, cy = rng.uniform(-0.04, 0.04, size=2)
    a, b = rng.uniform(0.62, 0.78), rng.uniform(0.80, 0.94)
    theta = rng.uniform(-np.pi / 18, np.pi / 18)
    inner = 1.0 - rng.uniform(0.06, 0.12)  # skull thickness, relative to the axes
    return np.array([[cx, cy, a, b, theta, _SKULL], [cx, cy, inner * a, inner * b, theta, _BRAIN]])


def _inner_ellipses(rng, brain, count, max_count, intensity_range) -> np.ndarray:
    """`[max_count, 6]` random ellipses centred in the brain; rows past `count` have 0 intensity."""
    cx, cy, a, b, theta, _ = brain
    r, phi = 0.8 * np.sqrt(rng.uniform(size=max_count)), rng.uniform(0, 2 * np.pi, max_count)
    u, v = r * np.cos(phi) * a, r * np.sin(phi) * b  # uniform in the shrunk brain ellipse
    centre_x = cx + u * np.cos(theta) - v * np.sin(theta)
    centre_y = cy + u * np.sin(theta) + v * np.cos(theta)
    axes = rng.uniform(0.04, 0.30, size=(2, max_count))
    angles = rng.uniform(0, np.pi, max_count)
    intensity = rng.uniform(*intensity_range, size=max_count) * (np.arange(max_count) < count)
    return np.stack([centre_x, centre_y, axes[0], axes[1], angles, intensity], axis=1)


def _phantom_ellipses(seed, index, num_ellipses, intensity_range) -> np.ndarray:
    """`[2 + max inner, 6]` ellipses of phantom `index`: a function of `(seed, index)` only."""
    rng = np.random.default_rng([seed, index])
    head = _head_ellipses(rng)
    count = rng.integers(num_ellipses[0], num_ellipses[1] + 1)
    inner = _inner_ellipses(rng, head[1], count, num_ellipses[1], intensity_range)
    return np.concatenate([head, inner])


def _inside(ellipses: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """`[B, E, P]` float32 indicator of points `(x, y)` `[P]` inside ellipses `[B, E, 6]`."""
    cx, cy, a, b, theta = (ellipses[..., i, None].astype(np.float32) for i in range(5))
    dx, dy = x - cx, y - cy
    cos, sin = np.cos(theta), np.sin(theta)
    along, across = (dx * cos + dy * sin) / a, (dy * cos - dx * sin) / b
    return (along**2 + across**2 <= 1.0).astype(np.float32)


def _render(ellipses: np.ndarray, size: int, supersample: int) -> np.ndarray:
    """Images `[B, size, size]` in [0, 1] of ellipse sets `[B, E, 6]` (rows as `_phantom_ellipses`).

    Each sub-pixel value is skull + brain + (sum of inner intensities, only inside the brain,
    so background stays 0), clipped to [0, 1]; pixels average `supersample**2` sub-pixels.
    """
    n = size * supersample
    centres = ((np.arange(n) + 0.5) / n * 2 - 1).astype(np.float32)
    x, y = np.meshgrid(centres, -centres)  # rows run top (y = +1) to bottom, as in images
    inside = _inside(ellipses, x.reshape(-1), y.reshape(-1))
    intensity = ellipses[..., 5, None].astype(np.float32)
    value = (inside[:, :2] * intensity[:, :2]).sum(axis=1)
    value += inside[:, 1] * (inside[:, 2:] * intensity[:, 2:]).sum(axis=1)
    value = np.clip(value, 0.0, 1.0).reshape(-1, size, supersample, size, supersample)
    return value.mean(axis=(2, 4))


def random_ellipse_phantoms(
    seed: int,
    num: int,
    size: int,
    *,
    num_ellipses: tuple[int, int] = (3, 10),
    intensity_range: tuple[float, float] = (-0.2, 0.4),
    supersample: int = 2,
) -> np.ndarray:
    """Random Shepp-Logan-style head phantoms (Shepp & Logan 1974), deterministic in `seed`.

    On the square [-1, 1]^2, each phantom is a sum of ellipses with additive intensities:
    an outer head ellipse (centre within +-0.04, semi-axes U(0.62, 0.78) x U(0.80, 0.94),
    rotation within +-10 degrees) of intensity 1, a concentric brain ellipse 6-12% smaller
    of intensity -0.8 (leaving a bright skull ring around brain tissue of 0.2), and
    `U{num_ellipses}` inner ellipses centred uniformly in the brain (semi-axes U(0.04, 0.30),
    any rotation, intensity U(intensity_range)) that act only inside the brain. The sum,
    clipped to [0, 1] and averaged over `supersample x supersample` sub-pixels
    (anti-aliasing), is mapped to [-1, 1] by `2 v - 1`, so the background is exactly -1.
    Phantom `i` depends only on `(seed, i)`: a longer set extends a shorter one.

    Args:
      seed: non-negative integer.
      num: number of phantoms `N >= 1`.
      size: side length `S >= 1` in pixels.
      num_ellipses: inclusive `(min, max)` number of inner ellipses.
      intensity_range: `(low, high)` additive intensity of an inner ellipse.
      supersample: sub-pixels per pixel side (1: point sampling at pixel centres).

    Returns:
      `[N, S, S, 1]` float32 in [-1, 1].
    """
    seed = _check_seed(seed)
    lo, hi = num_ellipses
    if int(num) < 1 or int(size) < 1 or int(supersample) < 1:
        raise ValueError(
            f"num, size and supersample must be >= 1; got {num}, {size}, {supersample}."
        )
    if not 0 <= lo <= hi:
        raise ValueError(
            f"num_ellipses must be (min, max) with 0 <= min <= max; got {num_ellipses}."
        )
    if not intensity_range[0] <= intensity_range[1]:
        raise ValueError(
            f"intensity_range must be (low, high), low <= high; got {intensity_range}."
        )
    ellipses = np.stack(
        [_phantom_ellipses(seed, i, (lo, hi), intensity_range) for i in range(int(num))]
    )
    points = (int(size) * int(supersample)) ** 2 * ellipses.shape[1]
    chunk = max(1, _CHUNK_ELEMENTS // points)
    images = [
        _render(ellipses[i : i + chunk], int(size), int(supersample))
        for i in range(0, len(ellipses), chunk)
    ]
    return (2.0 * np.concatenate(images) - 1.0)[..., None].astype(np.float32)


def shepp_logan(size: int) -> np.ndarray:
    """The (modified) Shepp-Logan phantom of scikit-image, resized, in [-1, 1].

    `skimage.data.shepp_logan_phantom()` (400 x 400, values in [0, 1], bundled offline;
    Shepp & Logan 1974) resized with `resize.resize_bilinear` (anti-aliased triangle
    kernel, the numbers of `jax.image.resize(..., 'bilinear')`), then mapped by `2 v - 1`.

    Args:
      size: output side length `S >= 1`.

    Returns:
      `[S, S, 1]` float32 in [-1, 1], background -1.
    """
    if int(size) < 1:
        raise ValueError(f"size must be a positive integer; got {size}.")
    import skimage.data  # Here, not at the top: only this function needs scikit-image.

    phantom = skimage.data.shepp_logan_phantom()[..., None]
    resized = resize_bilinear(phantom, int(size), int(size))
    return np.clip(2.0 * resized - 1.0, -1.0, 1.0).astype(np.float32)


@functools.cache
def _phantom_images(split: str, size: int, num: int) -> np.ndarray:
    """Read-only `[num, size, size, 1]` phantoms of a split, computed once per arguments."""
    images = random_ellipse_phantoms(PHANTOM_SPLITS[split][0], num, size)
    images.flags.writeable = False
    return images


class PhantomSource(ArraySource):
    """Random ellipse phantoms as a random-access source (no labels).

    Each split has its own fixed seed ('train': seed 0, 4096 phantoms by default; 'test':
    seed 1, 256), so the splits never share an image and a run is reproducible.

    Args:
      split: 'train' or 'test'.
      size: side length `S` (32 in docs/methods.md F).
      num: number of phantoms; None takes the split's default.

    Attributes:
      images: `[N, S, S, 1]` float32 in [-1, 1], read-only.
    """

    def __init__(self, split: str, size: int = 32, num: int | None = None):
        if split not in PHANTOM_SPLITS:
            raise ValueError(
                f"unknown phantoms split {split!r}; valid splits: {tuple(PHANTOM_SPLITS)}."
            )
        num = PHANTOM_SPLITS[split][1] if num is None else num
        if int(size) < 1 or int(num) < 1:
            raise ValueError(f"size and num must be positive integers; got {size}, {num}.")
        self.split, self.size, self.num = split, int(size), int(num)
        super().__init__(_phantom_images(self.split, self.size, self.num))

    def __reduce__(self):
        # Grain worker processes rebuild the source from its arguments, not its arrays.
        return PhantomSource, (self.split, self.size, self.num)
