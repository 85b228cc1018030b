"""The bad-input catalogue: every bad input gets its error before the workdir is written,
and the message says what to do.

One module for the whole library: each area appends its cases under a comment naming it.
Each case asserts the error, a remedy in its message, and that the workdir stays absent (or
unchanged, for a resumed one).
"""

import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from diffssl_jax import methods, training
from diffssl_jax.configs.ddpm.digits import get_config
from diffssl_jax.training import validation

ENV = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")


def _launch(module, *args):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )


# --- training config (R1): `training.train` checks before it writes anything -------------

# (override key, value, a fragment of the message that says what to do)
TRAIN_CASES = [
    ("seed", -1, "set --config.seed=0"),
    ("model.num_groups", 3, "Choose a num_groups that divides"),
    ("data.image_shape", (32, 32, 1), "set config.data.image_shape to the data's"),
    ("train.num_steps", -5, "set --config.train.num_steps to at least 1"),
    ("train.checkpoint_every_steps", 0, "set --config.train.checkpoint_every_steps to at least 1"),
    ("train.log_every_steps", 0, "set --config.train.log_every_steps to at least 1"),
    ("train.keep_checkpoints", 0, "set --config.train.keep_checkpoints to at least 1"),
    ("train.sample_every_steps", -1, "set --config.train.sample_every_steps to at least 0"),
    ("optim.lr_peak", 0.0, "optim.lr_peak must be a positive finite number"),
    ("optim.lr_peak", float("nan"), "optim.lr_peak must be a positive finite number"),
    ("optim.ema_decay", 1.5, "optim.ema_decay (the EMA decay per step) must be a number in [0, 1]"),
    ("optim.decay", "cosin", "optim.decay must be one of ('constant', 'cosine', 'linear')"),
]


def _config(key, value):
    config = get_config("tiny")
    group, _, name = key.rpartition(".")
    with config.unlocked():
        (config[group] if group else config)[name] = value
    return config


@pytest.mark.parametrize(
    "key,value,remedy", TRAIN_CASES, ids=[f"{k}={v}" for k, v, _ in TRAIN_CASES]
)
def test_bad_training_config_fails_before_the_workdir_is_written(tmp_path, key, value, remedy):
    config = _config(key, value)
    workdir = tmp_path / "w"
    with pytest.raises(validation.ConfigError) as error:
        training.train(config, str(workdir), methods.make_recipe(config))
    assert remedy in str(error.value)
    assert not workdir.exists()


def test_corrected_command_runs_in_the_same_workdir(tmp_path):
    workdir = str(tmp_path / "w")
    bad = _config("seed", -1)
    with pytest.raises(validation.ConfigError):
        training.train(bad, workdir, methods.make_recipe(bad))
    good = _config("train.num_steps", 2)
    with good.unlocked():
        good.train.sample_every_steps = 0
    state = training.train(good, workdir, methods.make_recipe(good))
    assert int(state.step) == 2 and sorted(os.listdir(f"{workdir}/checkpoints")) == ["2"]


def test_refused_resume_leaves_the_workdir_as_it_was(tmp_path):
    config = get_config("tiny")
    (tmp_path / "config.json").write_text(config.to_json())
    before = sorted(os.listdir(tmp_path)), (tmp_path / "config.json").read_text()
    changed = _config("model.model_channels", 16)
    with pytest.raises(
        validation.ConfigError, match="model.model_channels: 8 -> 16.*new --workdir"
    ):
        training.train(changed, str(tmp_path), methods.make_recipe(changed))
    assert (sorted(os.listdir(tmp_path)), (tmp_path / "config.json").read_text()) == before


def _one_fatal_line(result):
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return [line for line in result.stderr.splitlines() if line.startswith("FATAL")]


def test_launcher_reports_a_bad_value_in_one_line(tmp_path):
    result = _launch(
        "launch.train",
        "--config=configs/ddpm/digits.py:tiny",
        f"--workdir={tmp_path / 'w'}",
        "--config.train.num_steps=-5",
    )
    (line,) = _one_fatal_line(result)
    assert "ConfigError" in line and "set --config.train.num_steps to at least 1" in line
    assert not (tmp_path / "w").exists()


CONFIG_FILE_ERRORS = {
    "name_error": ("c.train.num_steps = undefined_name", "line 5", "NameError"),
    "bad_variant": ("c = get_base(arg + ',huge')", "line 4", "unknown config variant(s) ['huge']"),
    "syntax_error": ("c = (", "line 4", "SyntaxError"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_FILE_ERRORS))
def test_error_inside_a_config_file_is_one_line_naming_file_and_line(tmp_path, case):
    code, line_no, error = CONFIG_FILE_ERRORS[case]
    path = tmp_path / "my_config.py"
    body = "    c = get_base(arg)\n" if case == "name_error" else ""
    path.write_text(
        "from diffssl_jax.configs.ddpm.digits import get_config as get_base\n\n"
        f"def get_config(arg=None):\n{body}    {code}\n    return c\n"
    )
    result = _launch("launch.train", f"--config={path}:tiny", f"--workdir={tmp_path / 'w'}")
    (line,) = _one_fatal_line(result)
    assert f"my_config.py, line {line_no.split()[1]}" in line and error in line
    assert code.strip() in line  # the offending source line itself
    assert not (tmp_path / "w").exists()


# --- EM, posterior sampling and launch.sample on EM workdirs (R3) ---


def test_em_chunk_size_zero_is_refused_before_the_workdir_is_written(tmp_path):
    """Issue 18, findings 3 and 5: `--config.em.chunk_size=0` was a raw range() error after
    lap 0 had been written, and the corrected command was then refused as a config change."""
    workdir = tmp_path / "em"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.em",
            "--config=configs/em/toy.py:tiny",
            f"--workdir={workdir}",
            "--config.em.chunk_size=0",
        ],
        cwd=REPO_ROOT,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0
    assert "em.chunk_size must be an integer >= 1" in result.stderr
    assert "--config.em.chunk_size" in result.stderr  # what to change
    assert not workdir.exists()  # so the corrected command starts afresh


def test_sample_posterior_refuses_non_finite_observations_and_operators():
    """Issue 18, finding 5: NaN in y was accepted and gave finite samples."""
    import jax
    import jax.numpy as jnp

    from diffssl_jax.posterior import operators as ops
    from diffssl_jax.posterior.problems import InverseProblem
    from diffssl_jax.posterior.sampling import sample_posterior
    from diffssl_jax.sampling import samplers
    from diffssl_jax.sampling.denoisers import GaussianDenoiser

    prior = GaussianDenoiser(jnp.zeros(4), jnp.eye(4))
    mats = jnp.ones((3, 2, 4))
    ys = jnp.ones((3, 2))
    kwargs = dict(rng=jax.random.key(0), sigmas=samplers.sigma_grid("karras", 4, 0.01, 10.0))

    def problem(y=ys, matrices=mats, noise_var=0.01):
        return InverseProblem(
            y=y, operators=ops.DenseMatrix(matrices), noise_var=noise_var, shape=(4,)
        )

    with pytest.raises(ValueError, match="y contains 1 NaN or inf .* drop or repair"):
        sample_posterior("mmps", prior, problem(y=ys.at[1, 0].set(jnp.nan)), **kwargs)
    with pytest.raises(ValueError, match="the operators contain|the operators contains"):
        sample_posterior("mmps", prior, problem(matrices=mats.at[0, 0, 0].set(jnp.inf)), **kwargs)
    with pytest.raises(ValueError, match="noise_var contains"):
        sample_posterior("mmps", prior, problem(noise_var=jnp.full((3, 2), jnp.nan)), **kwargs)


def test_launch_sample_on_an_em_workdir_says_what_it_holds_and_what_to_run(tmp_path):
    """Issue 18, finding 5: `launch.sample` on an EM workdir said only "unknown method 'em'"."""
    from diffssl_jax import storage
    from diffssl_jax.configs.em.toy import get_config

    workdir = tmp_path / "em_run"
    storage.write_text(workdir / "config.json", get_config("tiny").to_json())
    (workdir / "em" / "lap_001" / "train").mkdir(parents=True)
    storage.write_text(
        workdir / "em" / "lap_001" / "train" / "config.json", get_config("tiny").to_json()
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    for directory, expected in (
        (workdir, "is an EM workdir"),
        (workdir / "em" / "lap_001" / "train", "is the M-step workdir of an EM lap"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "launch.sample", f"--workdir={directory}"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode != 0
        assert expected in result.stderr and "unknown method" not in result.stderr
        assert "methods.make_recipe(config).sample(" in result.stderr  # what to run instead
        assert not (directory / "eval").exists()


# --- checkpoints and the workdir lock (R2) --------------------------------------------------


def test_load_params_of_a_missing_step_lists_the_available_steps(tmp_path):
    import jax
    import jax.numpy as jnp
    import optax

    from diffssl_jax.training import checkpoint
    from diffssl_jax.training.state import create_train_state

    state = create_train_state(lambda rng: {"w": jnp.ones(3)}, optax.sgd(0.1), jax.random.key(0))
    manager = checkpoint.make_manager(str(tmp_path))
    checkpoint.save(manager, state, {}, {})
    manager.wait_until_finished()
    before = sorted(os.listdir(tmp_path / "checkpoints"))
    with pytest.raises(training.CheckpointError) as error:
        training.load_params(str(tmp_path), step=5)
    message = str(error.value)
    assert "no checkpoint at step 5" in message and "available steps: [0]" in message
    assert "damaged" not in message and "delete" not in message
    assert sorted(os.listdir(tmp_path / "checkpoints")) == before


def test_second_run_on_a_locked_workdir_is_refused_naming_the_holder(tmp_path):
    from diffssl_jax.training import workdir_lock

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom diffssl_jax.training import workdir_lock\n"
            "with workdir_lock.hold(sys.argv[1], command='first run'):\n"
            "    print('held', flush=True); time.sleep(600)",
            str(tmp_path / "run"),
        ],
        env=dict(ENV, PYTHONPATH=REPO_ROOT),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        config = get_config("tiny")
        with pytest.raises(workdir_lock.WorkdirLockedError) as error:
            training.train(config, str(tmp_path / "run"), methods.make_recipe(config))
        message = str(error.value)
        assert f"pid {holder.pid}" in message and "'first run'" in message
        assert "use another --workdir" in message
        assert os.listdir(tmp_path / "run") == ["lock.json"]  # nothing written
    finally:
        holder.kill()
        holder.wait()
