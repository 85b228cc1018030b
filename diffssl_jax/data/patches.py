"""Natural-image patches: grayscale 16x16 crops of the photographs shipped inside scikit-image
and scikit-learn, split by photograph (the CPU-scale natural-image benchmark of
docs/posterior_study.md).

The photographs (files read from the installed packages, nothing fetched; `PHOTOS` in label
order): scikit-image's `astronaut`, `brick`, `camera`, `chelsea`, `coffee`, `coins`, `grass`,
`gravel`, `moon`, `motorcycle_left`, `rocket`, and scikit-learn's `china` and `flower`. Left
out: synthetic or drawn images (`chessboard_*`, `color`, `logo`, `phantom`, `horse`, the gif
and tifs), printed text (`page`, `text`), microscopy and medical images (`cell`, `ihc`,
`retina`, `microaneurysms`), the motion-blurred `clock_motion`, the right view of the stereo
pair (`motorcycle_right`: the same scene as `motorcycle_left`), the 25x25 face crops of
`lfw_subset.npy`, and `hubble_deep_field` (point sources on sensor noise, unlike any other
photograph, and 3233 windows, more than a third of the training patches, none of them flat).

Each photograph becomes gray in [0, 1] (`rgb @ (0.2125, 0.7154, 0.0721)`, scikit-image's
`rgb2gray` weights on 8-bit values / 255), is averaged over 2x2 blocks (`DOWNSCALE`), and is
cut into 16x16 windows, every 8 pixels in training photographs (half-overlapping, 4x the
patches) and every 16 in held-out ones (disjoint, so held-out patches are distinct images).
Windows with a standard deviation below `MIN_STD` (2/255 in [0, 1], i.e. flat to about two
grey levels) are dropped, then values are mapped to [-1, 1] by `2 x - 1`. Sizes: 5676 train,
574 validation (camera 192, chelsea 126, gravel 256), 739 test (astronaut 244, grass 256,
flower 239) patches.

Why 2x downscaling: at full resolution many 16x16 windows are flat or smooth ramps (flat
windows at factors 1 / 2 / 4: camera 32 / 25 / 3 %, rocket 56 / 35 / 0 %, flower 28 / 8 / 0 %,
moon 37 / 12 / 17 %), and the mean absolute horizontal difference grows with the factor
(astronaut 0.027 / 0.040 / 0.060); averaging 2x2 blocks makes a window cover 32 original
pixels, enough for edges, corners and texture fragments, and averages away the 8x8 JPEG
blocks. A factor of 4 would leave about 150 disjoint windows per held-out split, too few for
validation and test; a factor of 2 leaves 574 and 739.

Why 16x16 and not 32x32: one jitted train step of `configs/ddpm/patches.py`'s U-Net at batch
64 (`benchmarks/train_step.py --config=configs/ddpm/patches.py --batch_size=64 --no_torch`,
with `--set "data.image_shape=(32,32,1)"` for 32x32) cost 0.49 s of process CPU at 16x16 and
2.07 s at 32x32 (4.3x; wall 0.93 and 6.0 s, median, on 2 cores shared with other jobs, load
6-9). The 2000-step prior fits the ~10-minute budget of a shipped config on 2 quiet cores at
16x16; at 32x32 the same budget buys under 500 steps.

Splits are by photograph (`SPLITS`, fixed): no photograph gives patches to two splits, so
no held-out patch overlaps a training photograph. Labels are the photograph's index in
`PHOTOS` (int32); a split's patches come in a fixed random order (`ORDER_SEED`), so its first
few mix all its photographs.
"""

import functools
import importlib.resources

import numpy as np

from diffssl_jax.data.arrays import ArraySource

# (package, file name inside it); the index in this tuple is the patch's label.
PHOTOS = (
    ("skimage", "data/astronaut.png"),
    ("skimage", "data/brick.png"),
    ("skimage", "data/camera.png"),
    ("skimage", "data/chelsea.png"),
    ("skimage", "data/coffee.png"),
    ("skimage", "data/coins.png"),
    ("skimage", "data/grass.png"),
    ("skimage", "data/gravel.png"),
    ("skimage", "data/moon.png"),
    ("skimage", "data/motorcycle_left.png"),
    ("skimage", "data/rocket.jpg"),
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
)
# Each held-out split has a gray object photograph, a texture and a colour photograph.
SPLITS = {
    "train": (1, 4, 5, 8, 9, 10, 11),  # brick, coffee, coins, moon, motorcycle, rocket, china
    "validation": (2, 3, 7),  # camera, chelsea, gravel
    "test": (0, 6, 12),  # astronaut, grass, flower
}
LUMA = np.array([0.2125, 0.7154, 0.0721])  # ITU-R BT.709, as skimage.color.rgb2gray
DOWNSCALE = 2  # side of the averaged blocks
MIN_STD = 2.0 / 255.0  # windows flatter than this (std in [0, 1] units) are dropped
PATCH_SIZE = 16
MAX_PATCH_SIZE = 150  # the short side of the smallest photograph (chelsea, 300x451) downscaled
ORDER_SEED = 0  # the fixed random order of the patches of a split


def photo_name(label: int) -> str:
    """The file name (without extension) of photograph `label`, e.g. `'camera'`."""
    return PHOTOS[label][1].rsplit("/", 1)[-1].rsplit(".", 1)[0]


@functools.cache
def load_photo(label: int) -> np.ndarray:
    """Photograph `label` of `PHOTOS` as gray `[H, W]` float64 in [0, 1], full resolution.

    Raises:
      FileNotFoundError: if the installed package does not ship the file.
    """
    import PIL.Image  # Here, not at the top: only this source reads image files.

    package, name = PHOTOS[label]
    path = importlib.resources.files(package).joinpath(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"{package} does not ship {name} (looked at {path}); the patch source reads only "
            "photographs inside the installed scikit-image and scikit-learn packages."
        )
    with PIL.Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    return rgb @ LUMA


def downscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Means over `factor x factor` blocks of `image [H, W]` (trailing rows/columns cropped)."""
    h, w = (s - s % factor for s in image.shape)
    return image[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def cut_patches(image: np.ndarray, size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Every `size x size` window of `image [H, W]` whose top-left corner is a multiple of
    `stride`, row by row.

    Returns:
      `(patches [P, size, size], corners [P, 2])`, corners as `(top, left)` in `image`.
    """
    windows = np.lib.stride_tricks.sliding_window_view(image, (size, size))[::stride, ::stride]
    rows, cols = np.meshgrid(
        np.arange(windows.shape[0]) * stride, np.arange(windows.shape[1]) * stride, indexing="ij"
    )
    corners = np.stack([rows.ravel(), cols.ravel()], axis=1)
    return windows.reshape(-1, size, size), corners


def split_of(label: int) -> str:
    """The split photograph `label` belongs to."""
    return next(split for split, labels in SPLITS.items() if label in labels)


@functools.cache
def patch_arrays(split: str, patch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The patches of a split, computed once per `(split, patch_size)`.

    The patches are put in a fixed random order (`ORDER_SEED`), so that the first `k` of a split
    (what `evaluation.posterior.load_images` takes) mix all its photographs and places.

    Returns:
      `(images [N, S, S, 1] float32 in [-1, 1], labels [N] int32, corners [N, 2] int32)`;
      corners in the downscaled photograph.
    """
    stride = patch_size // 2 if split == "train" else patch_size
    images, labels, corners = [], [], []
    for label in SPLITS[split]:
        windows, where = cut_patches(downscale(load_photo(label), DOWNSCALE), patch_size, stride)
        keep = windows.std(axis=(1, 2)) >= MIN_STD
        images.append(windows[keep])
        labels.append(np.full(int(keep.sum()), label, np.int32))
        corners.append(where[keep].astype(np.int32))
    order = np.random.default_rng(ORDER_SEED).permutation(sum(len(x) for x in labels))
    images = (2.0 * np.concatenate(images)[order, ..., None] - 1.0).astype(np.float32)
    return images, np.concatenate(labels)[order], np.concatenate(corners)[order]


class PatchSource(ArraySource):
    """Grayscale patches of natural photographs, split by photograph, in [-1, 1].

    See the module docstring for the photographs, the downscaling, the windows and the
    flat-patch threshold.

    Args:
      split: 'train', 'validation' or 'test' (`SPLITS`).
      patch_size: side `S` of the square patches (16 in the benchmark), from 2 to
        `MAX_PATCH_SIZE`.

    Attributes:
      images: `[N, S, S, 1]` float32 in [-1, 1], in a fixed random order.
      labels: `[N]` int32, the source photograph's index in `PHOTOS`.
      corners: `[N, 2]` int32 `(top, left)` of each patch in its 2x-downscaled photograph.
    """

    def __init__(self, split: str, patch_size: int = PATCH_SIZE):
        if split not in SPLITS:
            raise ValueError(f"unknown patches split {split!r}; valid splits: {tuple(SPLITS)}.")
        integer = isinstance(patch_size, int | np.integer) and not isinstance(patch_size, bool)
        if not integer or not 2 <= patch_size <= MAX_PATCH_SIZE:
            raise ValueError(
                f"patch_size must be an integer from 2 to {MAX_PATCH_SIZE} (the short side of "
                f"the smallest downscaled photograph); got {patch_size!r}."
            )
        self.split, self.patch_size = split, int(patch_size)
        images, labels, self.corners = patch_arrays(split, self.patch_size)
        super().__init__(images, labels)

    def __reduce__(self):
        # Grain worker processes rebuild the source from its arguments, not its arrays.
        return PatchSource, (self.split, self.patch_size)
