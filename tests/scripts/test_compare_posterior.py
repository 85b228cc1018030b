"""`scripts/compare_posterior.py`: which cached rows make the page (stale grids, tuned values),
its method entries (configs of `evaluation.posterior.run_problem`), no sampler of its own."""

import functools
import importlib.util
import os

import numpy as np
from conftest import REPO_ROOT


@functools.cache  # once: the script defines absl flags
def _load_script():
    spec = importlib.util.spec_from_file_location(
        "compare_posterior", os.path.join(REPO_ROOT, "scripts", "compare_posterior.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _metrics(psnr, options=None, finite=True):
    return {
        "sample_psnr": psnr,
        "sample_ssim": 0.5,
        "observed_psnr": 10.0,
        "observed_ssim": 0.1,
        "all_finite": finite,
        "seconds": 1.0,
        "options": options or {},
    }


def test_collect_keeps_tuned_rows_and_ignores_stale_grids():
    """Tuning is per (task, method, step count): a row counts with its own step count's best."""
    script = _load_script()
    grids = {"dps": ("zeta", (1.0, 10.0))}
    cache = {
        "tune/mri4_phantoms/dps/zeta=1.0/100": _metrics(12.0),
        "tune/mri4_phantoms/dps/zeta=10.0/100": _metrics(20.0),
        "tune/mri4_phantoms/dps/zeta=0.1/100": _metrics(99.0),  # not on the grid any more
        "tune/mri4_phantoms/dps/zeta=1.0/10": _metrics(1.0, finite=False),
        "tune/mri4_phantoms/dps/zeta=10.0/10": _metrics(3.0),
        "mri4_phantoms/dps/10/2/" + '{"zeta": 1.0}': _metrics(5.0, {"zeta": 1.0}),
        "mri4_phantoms/dps/10/2/" + '{"zeta": 10.0}': _metrics(7.0, {"zeta": 10.0}),
        "mri4_phantoms/dps/1000/1/" + '{"zeta": 10.0}': _metrics(9.0, {"zeta": 10.0}),  # untuned
        "mri4_sl/dps/10/2/" + '{"zeta": 10.0}': _metrics(8.0, {"zeta": 10.0}),
        "mri4_phantoms/mmps1/10/2/{}": _metrics(9.0),
        "mri4_phantoms/mmps1/10/4/{}": _metrics(9.5),
        "mri4_phantoms/mmps1/100/1/{}": _metrics(11.0),
    }
    results, tuning, counts, seconds = script.collect(cache, grids)
    assert tuning == {
        ("mri4_phantoms", "dps", 100): (10.0, {1.0: 12.0, 10.0: 20.0}),
        ("mri4_phantoms", "dps", 10): (10.0, {1.0: -np.inf, 10.0: 3.0}),
    }
    assert results[("mri4_phantoms", "dps", 10)]["sample_psnr"] == 7.0
    assert ("mri4_phantoms", "dps", 1000) not in results  # no tuning at 1000 steps
    # Shepp-Logan rows use the step size tuned on the phantoms.
    assert results[("mri4_sl", "dps", 10)]["sample_psnr"] == 8.0
    # The row with the most images wins, whatever the order of the cache.
    assert results[("mri4_phantoms", "mmps1", 10)]["sample_psnr"] == 9.5
    assert counts[("mri4_phantoms", 10)] == 4 and seconds[("mri4_phantoms", "mmps1")] == 1.0


def test_every_method_entry_is_a_posterior_method_and_a_problem_config():
    from diffssl_jax import posterior
    from diffssl_jax.evaluation import posterior as posterior_eval

    script = _load_script()
    compared = {"mmps1", "mmps3", "dps", "pigdm", "tmpd", "diffpir", "dps_published"}
    assert set(script.COMPARED) == compared
    for name, (_, method, options) in script.METHODS.items():
        posterior.posterior_method(method, **options)  # raises on an unknown option
        c = script.problem_config("mri4_phantoms", name, 10, 2, 4, {})
        assert c.num_samples == 1 and c.sampling.num_steps == 10
        assert (c.data.num_images, c.data.start) == (2, 4)
        record = posterior_eval.method_record(c.method)
        assert record["name"] == method and options.items() <= record.items()
    c = script.problem_config("mri4_phantoms", "mmps3_nocap", 10, 2, 0, {})
    assert posterior_eval.method_record(c.method)["cg_max_residual_growth"] is None
    c = script.problem_config("mri4_sl", "dps", 100, 4, 0, {"zeta": 30.0})
    assert c.method.name == "dps" and c.method.dps.zeta == 30.0
    assert c.data.dataset == "shepp_logan" and c.operator.kind == "mri"


def test_the_script_defines_no_sampler_of_its_own():
    with open(os.path.join(REPO_ROOT, "scripts", "compare_posterior.py")) as f:
        source = f.read()
    assert "evaluation.posterior" in source and "run_problem(" in source
    for name in ("samplers.", "sample_posterior", "ddpm_ancestral(", "jax.jit", "vmap("):
        assert name not in source, name
