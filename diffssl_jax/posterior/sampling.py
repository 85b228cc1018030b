"""Posterior sampling: plain sampling with a posterior denoiser, one per observation.

For observations ``(A_i, y_i)`` and a prior denoiser ``D``, each observation gets the
posterior denoiser ``make_posterior(D, A_i, y_i, noise_var_i)`` (``mmps``, ``dps``, ...) and
``num_per_observation`` samples from ``sampling.sample`` with it. Operators are pytrees, so
a batch of observations is a pytree with a leading axis on every leaf: the whole batch is
one ``jax.vmap``, jitted with the observation axis sharded over the ``data`` mesh axis when
several devices are visible (padded to a multiple of the device count, padding dropped).
The key of observation ``i`` is ``fold_in(rng, i)``, so results do not depend on the number
of devices or on how the observations are chunked.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from diffssl_jax.posterior import operators as operators_lib
from diffssl_jax.sampling import samplers
from diffssl_jax.training import parallel


def _num_observations(ys) -> int:
    if jnp.ndim(ys) < 1:
        raise ValueError("ys must have a leading observation axis, got a scalar.")
    return int(jnp.shape(ys)[0])


def _check_finite(name: str, tree) -> None:
    """Raises ValueError if a concrete floating (or complex) leaf of `tree` is NaN or inf."""
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, jax.core.Tracer) or not hasattr(leaf, "dtype"):
            continue  # traced inside jit (the values are not known) or not an array
        if not jnp.issubdtype(leaf.dtype, jnp.inexact):
            continue
        bad = int(jnp.size(leaf) - jnp.sum(jnp.isfinite(leaf)))
        if bad:
            raise ValueError(
                f"{name} contains {bad} NaN or inf value(s) (an array of shape "
                f"{jnp.shape(leaf)}); the posterior of a non-finite observation is undefined: "
                "drop or repair those observations before sampling."
            )


def _check_batch(operators, ys, noise_var, shape, dtype) -> int:
    """Checks leading axes agree, the values are finite and the first observation is a valid
    inverse problem."""
    n = _num_observations(ys)
    _check_finite("ys", ys)
    _check_finite("the operators", operators)
    _check_finite("noise_var", noise_var)
    for leaf in jax.tree.leaves(operators):
        if jnp.ndim(leaf) < 1 or jnp.shape(leaf)[0] != n:
            raise ValueError(
                f"every operator leaf needs the leading observation axis of ys ({n}); got a "
                f"leaf of shape {jnp.shape(leaf)}. Stack one operator per observation, e.g. "
                "jax.tree.map(lambda *l: jnp.stack(l), *operator_list)."
            )
    first_A = jax.tree.map(lambda leaf: leaf[0], operators)
    first_nv = noise_var[0] if jnp.ndim(noise_var) == jnp.ndim(ys) else noise_var
    operators_lib.check_operator(
        first_A, jax.ShapeDtypeStruct(tuple(shape), dtype), ys[0], noise_var=first_nv
    )
    return n


def _split_arrays(tree):
    """A pytree (e.g. a denoiser holding parameters) as its array leaves and a hashable
    structure (tree definition and the other leaves), so the arrays enter `jit` as arguments,
    not baked constants, and the compiled program can be reused for new arrays."""
    leaves, treedef = jax.tree.flatten(tree)
    is_array = [isinstance(leaf, (jax.Array, np.ndarray)) for leaf in leaves]
    arrays = [leaf for leaf, a in zip(leaves, is_array, strict=True) if a]
    static = tuple(None if a else leaf for leaf, a in zip(leaves, is_array, strict=True))
    return arrays, (treedef, tuple(is_array), static)


def _rebuild(structure, arrays):
    treedef, is_array, static = structure
    it = iter(arrays)
    leaves = [next(it) if a else leaf for a, leaf in zip(is_array, static, strict=True)]
    return treedef.unflatten(leaves)


def _build_sampler(make_posterior, structure, shape, sampler, num, per_observation_noise, mesh):
    """The jitted, vmapped sampler of a batch of observations (see `sample_posterior`)."""

    def one(arrays, key, sigmas, mean, noise_var, index, A, y):
        posterior = make_posterior(_rebuild(structure, arrays), A, y, noise_var)
        key = jax.random.fold_in(key, index)
        return samplers.sample(posterior, key, shape, sigmas, sampler, num, mean)

    noise_axis = 0 if per_observation_noise else None
    run = jax.vmap(one, in_axes=(None, None, None, None, noise_axis, 0, 0, 0))
    if mesh.devices.size > 1:
        return jax.jit(run, out_shardings=parallel.batch_sharded(mesh))
    return jax.jit(run)


# One compiled program per (method, denoiser structure, shapes, ...): the EM E-step calls
# `sample_posterior` once per chunk of observations and must not recompile each time.
_cached_sampler = functools.lru_cache(maxsize=32)(_build_sampler)


def _pad(tree, n_pad):
    """Repeats the last entry along the leading axis ``n_pad`` times."""
    if n_pad == 0:
        return tree
    return jax.tree.map(lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], n_pad, 0)]), tree)


def sample_posterior(
    make_posterior,
    denoiser,
    operators,
    ys,
    noise_var,
    *,
    rng,
    shape,
    sigmas,
    sampler="ddpm_ancestral",
    num_per_observation=1,
    mean=None,
    mesh=None,
):
    """Samples ``p(x0 | y_i)`` for every observation, vmapped and sharded.

    Args:
      make_posterior: ``(denoiser, A, y, noise_var) -> posterior_denoiser``, e.g.
        ``functools.partial(posterior.mmps, cg_maxiter=3)``.
      denoiser: the prior denoiser ``(x, sigma) -> x0_hat`` on one example.
      operators: a batch of operators, a pytree whose every leaf has a leading axis ``N``.
      ys: ``[N, *y_shape]`` observations.
      noise_var: ``Sigma_y``, a scalar, a diagonal broadcasting to one ``y``, or ``[N, ...]``
        (one per observation, same rank as ``ys``).
      rng: a JAX key; observation ``i`` uses ``fold_in(rng, i)``.
      shape: the shape of one ``x0``.
      sigmas: the sampler's levels (``sampling.sigma_grid``), ending with 0.
      sampler: a sampler or its name.
      num_per_observation: samples per observation, ``>= 1``.
      mean: optional prior mean for the initial noise (as ``sampling.sample``).
      mesh: a mesh with a ``data`` axis; default all visible devices.

    Returns:
      ``[N, num_per_observation, *shape]`` samples.

    Raises:
      ValueError: NaN or inf in ``ys``, the operators or ``noise_var``, mismatched leading
        axes, or (from ``check_operator``) an operator whose output does not match ``y``, a
        negative or complex noise variance, a non-linear map.
    """
    sigmas = samplers.check_sigmas(sigmas)
    n = _check_batch(operators, ys, noise_var, shape, sigmas.dtype)
    per_observation_noise = jnp.ndim(noise_var) == jnp.ndim(ys) and jnp.ndim(ys) > 0
    mesh = mesh if mesh is not None else parallel.make_mesh()
    num_devices = mesh.devices.size
    n_pad = -n % num_devices
    noise = jnp.asarray(noise_var)
    indices, operators, ys = _pad((jnp.arange(n), operators, ys), n_pad)
    if per_observation_noise:
        noise = _pad(noise, n_pad)
    denoiser_arrays, structure = _split_arrays(denoiser)
    key = (make_posterior, structure, tuple(shape), sampler, num_per_observation)
    key += (bool(per_observation_noise), mesh)
    try:
        run = _cached_sampler(*key)
    except TypeError:  # an unhashable static part (e.g. a list in the denoiser): no reuse
        run = _build_sampler(*key)
    if num_devices > 1:
        sharded, replicated = parallel.batch_sharded(mesh), parallel.replicated(mesh)
        indices, operators, ys = jax.device_put((indices, operators, ys), sharded)
        noise = jax.device_put(noise, sharded if per_observation_noise else replicated)
        denoiser_arrays = jax.device_put(denoiser_arrays, replicated)
    samples = run(denoiser_arrays, rng, sigmas, mean, noise, indices, operators, ys)
    return samples[:n]
