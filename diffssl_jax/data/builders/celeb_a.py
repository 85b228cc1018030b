"""CelebA (tfds `celeb_a`, version 2.1.0) prepared as array_record from its five release files.

Liu et al. 2015, "Deep Learning Face Attributes in the Wild": 202,599 aligned 218x178 faces,
each with 40 binary attributes, 5 landmarks and an identity; splits train 162,770 /
validation 19,867 / test 19,962 (`list_eval_partition.txt`).

tfds' own catalog builder does the work, so the files on disk are the ones
`tfds build celeb_a --file_format=array_record` writes (same features, version, splits and
record order). Two of its steps are replaced, because they need the network or TensorFlow:
`download` returns the local files instead of fetching them from Google Drive, and
`iter_archive` reads the zip with `zipfile`. Images stay the release's JPEG bytes (tfds
decodes them with PIL), so nothing here needs TensorFlow:

    from diffssl_jax.data.builders import celeb_a
    celeb_a.prepare_from_files("<dir with the five files>", data_dir="<tfds data_dir>")

`fixtures.write_celeb_a_fixture` writes a tiny set of the five files in their real formats.
"""

import io
import pathlib
import zipfile

import tensorflow_datasets as tfds

HOMEPAGE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
# The release files, keyed by the names tfds' builder downloads them under.
FILES = {
    "img_align_celeba": "img_align_celeba.zip",
    "list_eval_partition": "list_eval_partition.txt",
    "list_attr_celeba": "list_attr_celeba.txt",
    "landmarks_celeba": "list_landmarks_align_celeba.txt",
    "identity_celeba": "identity_CelebA.txt",
}


def _iter_zip(path):
    """`(name inside the archive, file object)` for each file of a zip, read into memory
    (tfds' builder keeps every image until it writes the splits, as its own reader does)."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.is_dir():
                yield info.filename, io.BytesIO(archive.read(info))


def _local_download_manager(builder, files_dir: pathlib.Path):
    """Wraps `builder._make_download_manager` so that it serves `files_dir`'s files."""
    make = builder._make_download_manager

    def local(download_dir, download_config):
        manager = make(download_dir, download_config)
        manager.download = lambda urls: {key: files_dir / FILES[key] for key in urls}
        manager.iter_archive = _iter_zip
        return manager

    return local


def prepare_from_files(files_dir, data_dir: str | None = None, overwrite: bool = False):
    """Builds tfds `celeb_a` as array_record under `data_dir` from the five release files.

    Args:
      files_dir: directory holding the files of `FILES` (names as released).
      data_dir: tfds data_dir to write to; None means tfds' default (~/tensorflow_datasets).
      overwrite: rebuild even if the dataset is already prepared there (if it is and
        `overwrite` is False, nothing is read).

    Returns:
      The prepared tfds builder (`builder.info.splits` has the split sizes).

    Raises:
      FileNotFoundError: a file is missing; the message lists them and where to get them.
    """
    builder = tfds.builder("celeb_a", data_dir=data_dir, file_format="array_record")
    if builder.is_prepared() and not overwrite:
        return builder
    files_dir = pathlib.Path(files_dir)
    missing = [name for name in FILES.values() if not (files_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{files_dir} lacks the CelebA release file(s) {missing}. Download them from the "
            f"Google Drive linked on {HOMEPAGE} (img_align_celeba.zip under 'Img', the four "
            "text files under 'Anno' and 'Eval') into that directory."
        )
    builder._make_download_manager = _local_download_manager(builder, files_dir)
    mode = tfds.download.GenerateMode
    config = tfds.download.DownloadConfig(
        download_mode=mode.FORCE_REDOWNLOAD if overwrite else mode.REUSE_DATASET_IF_EXISTS
    )
    builder.download_and_prepare(download_config=config)
    return builder
