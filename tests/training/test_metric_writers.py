"""Metric writers: metrics.jsonl, TensorBoard event files (local and gs://), progress lines."""

import glob
import json
import logging as py_logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from event_files import images, read_events, scalars
from gcs_emulator import running

from diffssl_jax.training import metric_writers as mw


def test_format_duration():
    assert mw.format_duration(4.4) == "4s"
    assert mw.format_duration(65.2) == "1m05s"
    assert mw.format_duration(3725.0) == "1h02m05s"
    assert mw.format_duration(-3.0) == "0s"


def test_progress_line_has_step_loss_rate_and_eta():
    line = mw.progress_line(200, 1000, {"train/loss": 0.123456, "time/steps_per_sec": 10.0})
    assert line == "step 200/1000 (20%) | train/loss 0.1235 | 10 steps/s | ETA 1m20s"
    assert mw.progress_line(5, 10, {}) == "step 5/10 (50%)"


def test_upscale_to_min_size_by_an_integer_factor():
    image = np.arange(6, dtype=np.float32).reshape(2, 3, 1)
    big = mw.upscale(image, 5)  # shorter side 2 -> factor 3
    assert big.shape == (6, 9, 1)
    np.testing.assert_array_equal(big[::3, ::3], image)
    assert mw.upscale(image, 1).shape == image.shape


def _events(logdir):
    (path,) = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
    with open(path, "rb") as f:
        return read_events(f.read())


def test_default_writer_writes_jsonl_tensorboard_and_progress(tmp_path, caplog):
    writer = mw.create_default_writer(str(tmp_path), num_steps=10)
    caplog.set_level(py_logging.INFO, logger="absl")
    writer.write_scalars(5, {"train/loss": 0.5, "time/steps_per_sec": 2.5})
    writer.write_scalars(10, {"train/loss": 0.25, "time/steps_per_sec": 5.0})
    writer.write_images(10, {"samples": np.full((20, 30, 1), 0.5, np.float32)})
    writer.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"step": 5, "train/loss": 0.5, "time/steps_per_sec": 2.5},
        {"step": 10, "train/loss": 0.25, "time/steps_per_sec": 5.0},
    ]
    events = _events(tmp_path)
    assert scalars(events)["train/loss"] == {5: 0.5, 10: 0.25}
    assert scalars(events)["time/steps_per_sec"] == {5: 2.5, 10: 5.0}
    assert images(events) == {"samples": {10: (260, 390)}}  # upscaled x13 to >= 256 px
    assert "step 5/10 (50%) | train/loss 0.5 | 2.5 steps/s | ETA 2s" in caplog.text
    assert "step 10/10 (100%)" in caplog.text


def test_bad_image_shape_is_refused(tmp_path):
    writer = mw.TensorBoardWriter(str(tmp_path))
    with pytest.raises(ValueError, match=r"\[H, W, 1 or 3\], got \(4, 4\)"):
        writer.write_images(1, {"x": np.zeros((4, 4))})
    writer.close()


def test_other_processes_only_log(tmp_path):
    writer = mw.create_default_writer(str(tmp_path / "run"), num_steps=4, process_index=1)
    writer.write_scalars(2, {"train/loss": 1.0})
    writer.close()
    assert [type(w) for w in writer.writers] == [mw.LoggingWriter]
    assert not (tmp_path / "run").exists()


def test_resumed_run_purges_redone_steps(tmp_path):
    first = mw.TensorBoardWriter(str(tmp_path))
    first.write_scalars(4, {"train/loss": 1.0})
    first.close()
    resumed = mw.TensorBoardWriter(str(tmp_path), purge_step=3)
    resumed.close()
    starts = [
        e.step
        for path in glob.glob(str(tmp_path / "events*"))
        for e in read_events(open(path, "rb").read())
        if e.HasField("session_log")
    ]
    assert starts == [3]  # TensorBoard hides the old step-4 point


# On a gs:// workdir (an in-memory GCS emulator), event files and metrics.jsonl go to the
# bucket through epath and nothing lands on local disk. Remote files are rewritten at most
# every `min_upload_secs`, and always on close.
GCS_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from etils import epath
    from diffssl_jax.training import metric_writers as mw
    sys.path.insert(0, sys.argv[1])
    from event_files import images, read_events, scalars

    run = epath.Path("gs://bucket/run")
    writer = mw.MultiWriter([
        mw.JsonlWriter(run / "metrics.jsonl"),
        mw.TensorBoardWriter(run, min_upload_secs=3600.0),
    ])
    writer.write_scalars(1, {"train/loss": 2.0})
    writer.write_scalars(2, {"train/loss": 1.0})
    writer.write_images(2, {"samples": np.zeros((8, 8, 3), np.float32)})
    writer.close()
    (event_file,) = [p for p in run.iterdir() if p.name.startswith("events")]
    events = read_events(event_file.read_bytes())

    throttled = mw.AppendFile(run / "blob", min_upload_secs=3600.0)
    contents = []
    for chunk in (b"a", b"b"):
        throttled.write(chunk)
        throttled.flush()
        contents.append((run / "blob").read_bytes().decode())
    throttled.close()
    contents.append((run / "blob").read_bytes().decode())
    print(json.dumps({
        "scalars": scalars(events)["train/loss"],
        "images": images(events),
        "jsonl": (run / "metrics.jsonl").read_text(),
        "throttled": contents,
    }))
""")


def test_gs_workdir_gets_events_and_jsonl_without_local_files(tmp_path):
    here = os.path.dirname(os.path.abspath(__file__))
    with running("bucket", cwd=str(tmp_path)) as env:
        result = subprocess.run(
            [sys.executable, "-c", GCS_SCRIPT, here],
            cwd=tmp_path,
            env=dict(os.environ, **env, JAX_PLATFORMS="cpu"),
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["scalars"] == {"1": 2.0, "2": 1.0}
    assert out["images"] == {"samples": {"2": [256, 256]}}
    assert out["throttled"] == ["a", "a", "ab"]  # 2nd upload held back; close uploads
    assert [json.loads(line)["step"] for line in out["jsonl"].splitlines()] == [1, 2]
    assert os.listdir(tmp_path) == []
