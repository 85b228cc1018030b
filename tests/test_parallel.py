"""One train step on 8 (fake CPU) devices equals the same step on one device."""

import os
import subprocess
import sys
import textwrap

from conftest import REPO_ROOT

SCRIPT = textwrap.dedent("""
    import functools, jax, numpy as np
    from diffssl_jax.configs.ddpm.digits import get_config
    from diffssl_jax import data, methods
    from diffssl_jax import parallel
    from diffssl_jax.training.state import create_train_state
    from diffssl_jax.training.step import make_optimizer, make_train_step

    assert jax.device_count() == 8, jax.devices()
    config = get_config("tiny")
    config.train.batch_size = 16
    recipe = methods.make_recipe(config)
    ds = data.make_dataset(data.make_source("digits", "train"), global_batch_size=16, seed=0)
    host_batch = ds[0]
    tx, schedule = make_optimizer(**config.optim, num_steps=10)
    step = make_train_step(recipe.loss, ema_decay=0.9, lr_schedule=schedule)
    init = recipe.init

    def run(num_devices):
        mesh = parallel.make_mesh(num_devices)
        rep = parallel.replicated(mesh)
        state = jax.jit(functools.partial(create_train_state, init, tx), out_shardings=rep)(
            jax.random.key(0))
        fn = jax.jit(step, in_shardings=(rep, parallel.batch_sharded(mesh)),
                     out_shardings=(rep, rep))
        losses = []
        for i in range(3):
            batch = parallel.to_global_batch(ds[i], mesh)
            assert len(batch["image"].sharding.device_set) == num_devices
            state, metrics = fn(state, batch)
            losses.append(float(metrics["train/loss"]))
        return losses, jax.device_get(state.params)

    loss1, params1 = run(1)
    loss8, params8 = run(8)
    np.testing.assert_allclose(loss8, loss1, rtol=2e-5)
    for a, b in zip(jax.tree.leaves(params1), jax.tree.leaves(params8)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6)
    print("OK", loss1, loss8)
""")


def test_eight_devices_match_one_device():
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
        JAX_PLATFORMS="cpu",
        JAX_DISABLE_MOST_OPTIMIZATIONS="1",
    )
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "OK" in result.stdout
