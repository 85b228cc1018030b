"""`evaluate_representation` on a tiny DDPM checkpoint and on raw pixels; overrides; errors."""

import json
import os

import pytest

from diffssl_jax import methods, training
from diffssl_jax.configs.ddpm.digits import get_config
from diffssl_jax.evaluation import features, representation

FAST_EVAL = ("probe_seeds=1", "seg_seeds=1", "seg_num_models=2", "seg_num_labelled=5")


def _tiny_config():
    config = get_config("tiny")
    config.train.num_steps = 2
    config.train.sample_every_steps = 0
    return config


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ddpm_tiny"))
    config = _tiny_config()
    training.train(config, path, methods.make_recipe(config))
    return path


def _check_score(score):
    assert 0.0 <= score["mean"] <= 1.0 and score["std"] >= 0.0


def test_workdir_evaluation_writes_results(workdir):
    config = representation.apply_eval_overrides(training.load_config(workdir), FAST_EVAL)
    results = representation.evaluate_representation(
        workdir, config, seg_max_epochs=2, probe_steps=50
    )
    path = os.path.join(workdir, "eval", "results.json")
    assert results["path"] == path
    with open(path) as f:
        saved = json.load(f)
    assert set(saved) == {"features", "feature_dims", "linear_probe", "segmentation", "config"}
    assert set(saved["linear_probe"]) == {"all", "10_per_class"}
    assert saved["linear_probe"]["10_per_class"]["num_labels"] == 100
    for score in saved["linear_probe"].values():
        _check_score(score)
    seg = saved["segmentation"]
    assert (seg["num_labelled"], seg["num_models"], len(seg["miou"]["values"])) == (5, 2, 1)
    _check_score(seg["miou"])
    _check_score(seg["dice"])
    assert saved["config"]["eval"]["seg_num_labelled"] == 5
    assert saved["features"]["which"] == "ema" and saved["features"]["t"] == 0.05
    assert saved["feature_dims"] and set(saved["feature_dims"]) <= {f"dec_{i}" for i in range(4)}
    table = representation.format_results(results)
    assert "linear probe, all" in table and "segmentation miou, 5 labelled" in table


def test_raw_pixel_probe_reaches_the_known_accuracy(tmp_path):
    config = representation.apply_eval_overrides(
        _tiny_config(), ("probe_budgets=(0,)", "segmentation=False")
    )
    out = tmp_path / "raw.json"
    results = representation.evaluate_representation(
        features.raw_pixel_features(), config, out_path=str(out)
    )
    assert results["segmentation"] is None and out.exists()
    # Logistic regression on the 256 raw pixels: about 0.96 (stack notes; sklearn agrees).
    assert results["linear_probe"]["all"]["mean"] > 0.93


def test_overrides_parse_literals_and_reject_typos():
    base = _tiny_config()
    config = representation.apply_eval_overrides(
        base, ["feature_t=0.25", "feature_blocks=('dec_1',)", "segmentation=False"]
    )
    assert (config.eval.feature_t, tuple(config.eval.feature_blocks)) == (0.25, ("dec_1",))
    assert config.eval.segmentation is False and base.eval.segmentation is True
    with pytest.raises(AttributeError, match="probe_seeds"):
        representation.apply_eval_overrides(base, ["probe_seedz=1"])
    with pytest.raises(ValueError, match="key=value"):
        representation.apply_eval_overrides(base, ["probe_seeds"])


def test_bad_input_raises(tmp_path):
    raw = features.raw_pixel_features()
    config = _tiny_config()
    config.data.name = "cifar10"
    with pytest.raises(ValueError, match="evaluations exist for .*digits"):
        representation.evaluate_representation(raw, config)
    with pytest.raises(ValueError, match="pass the config"):
        representation.evaluate_representation(raw)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        representation.evaluate_representation(str(tmp_path / "missing"))
    with pytest.raises(TypeError, match="workdir or a FeatureExtractor"):
        representation.evaluate_representation(42, config)


@pytest.mark.parametrize("grid", [1, 2])
def test_the_probe_pools_on_the_configured_grid(workdir, monkeypatch, grid):
    config = representation.apply_eval_overrides(
        training.load_config(workdir), (f"probe_pool_grid={grid}", "probe_budgets=(0,)")
    )
    seen = {}

    def record(train_x, *args, **kwargs):
        seen["dims"] = train_x.shape[1]
        return {}

    monkeypatch.setattr(representation.linear_probe, "evaluate_probe", record)
    extractor, _, _ = representation._extractor_and_config(workdir, config)
    train, test = representation._digits(config)
    representation.probe_digits(extractor, config, train, test)
    channels = sum(s[-1] for s in extractor.block_shapes(train.images.shape[1:]).values())
    assert seen["dims"] == grid * grid * channels
