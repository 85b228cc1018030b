"""A Google Cloud Storage emulator on loopback, for `gs://` workdir tests (no network, no disk).

`running(bucket)` starts `gcp-storage-emulator` (PyPI) in memory in a child process and
yields the environment that points every GCS client of the library at it:

- `STORAGE_EMULATOR_HOST`: gcsfs (the fsspec backend `etils.epath` uses for `gs://` when
  TensorFlow is absent) and google-cloud-storage;
- `TENSORSTORE_GCS_HTTP_URL` and `GOOGLE_AUTH_TOKEN_FOR_TESTING`: tensorstore's own `gcs`
  kvstore driver, through which orbax writes the checkpoint arrays.

The emulator omits the `x-goog-generation` header that real GCS sends with every media
download; tensorstore needs it (without it a read fails with "Malformed StorageGeneration"),
so the child process adds it to the emulator's download handler before serving.

Run as a script (`python gcs_emulator.py PORT BUCKET`) it is that child process.
"""

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request


def _serve(port: int, bucket: str) -> None:
    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects

    original = objects.download

    def download(request, response, storage, *args, **kwargs):
        original(request, response, storage, *args, **kwargs)
        params = request.params
        with contextlib.suppress(NotFound):
            obj = storage.get_file_obj(params["bucket_name"], params["object_id"])
            response["x-goog-generation"] = obj["generation"]
            response["x-goog-metageneration"] = obj["metageneration"]

    objects.download = download  # before `server` builds its routing table from it
    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    server.run()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the GCS emulator exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"the GCS emulator did not answer at {url} within {timeout} s")


@contextlib.contextmanager
def running(bucket: str, cwd: str):
    """Yields the environment variables of an in-memory emulator serving `bucket`.

    Args:
        bucket: the bucket to create.
        cwd: the emulator's working directory (it writes nothing there when in memory).
    """
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), str(port), bucket],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_up(url, process)
        yield {
            "STORAGE_EMULATOR_HOST": url,
            "TENSORSTORE_GCS_HTTP_URL": url,
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",
            "GOOGLE_CLOUD_PROJECT": "test",
        }
    finally:
        process.kill()
        process.wait(timeout=10)


if __name__ == "__main__":
    _serve(int(sys.argv[1]), sys.argv[2])
