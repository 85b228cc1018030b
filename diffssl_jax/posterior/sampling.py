"""Posterior sampling: plain sampling with a posterior denoiser, one per observation.

For an ``InverseProblem`` (observations ``(A_i, y_i)``) and a prior denoiser ``D``, each
observation gets the posterior denoiser ``method(D, A_i, y_i, noise_var_i)`` (``mmps``,
``dps``, ... by ``posterior_method``; for ``dps_published`` a ``samplers.Guided``, which only
``ddpm_ancestral`` takes) and ``num_per_observation`` samples from ``sampling.sample`` with
it. Operators are pytrees, so the observations' operators are one pytree with a leading axis
on every leaf (or none, for a shared operator): the whole problem is one ``jax.vmap``,
jitted with the observation axis sharded over the ``data`` mesh axis when several devices
are visible (padded to a multiple of the device count, padding dropped).
The key of observation ``i`` is ``fold_in(rng, i)``, so results do not depend on the number
of devices or on how the observations are chunked.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from diffssl_jax import parallel
from diffssl_jax.posterior import cpu_convs
from diffssl_jax.posterior.methods import posterior_method
from diffssl_jax.posterior.problems import InverseProblem, check_problem
from diffssl_jax.sampling import samplers


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


def _canonical(posterior):
    """The posterior denoiser (or a ``samplers.Guided``'s guide) with canonical conv kernels.

    The sampler's steps are a loop body: on XLA:CPU a vjp's convolutions there need canonical
    kernels to run fast (``cpu_convs``; a no-op elsewhere and without a vjp).
    """
    if isinstance(posterior, samplers.Guided):
        return samplers.Guided(cpu_convs.canonical_conv_kernels(posterior.guide))
    return cpu_convs.canonical_conv_kernels(posterior)


def _build_sampler(method, structure, shape, sampler, num, per_observation_noise, shared, mesh):
    """The jitted, vmapped sampler of a batch of observations (see `sample_posterior`)."""

    def one(arrays, key, sigmas, mean, noise_var, index, A, y):
        posterior = _canonical(method(_rebuild(structure, arrays), A, y, noise_var))
        key = jax.random.fold_in(key, index)
        return samplers.sample(posterior, key, shape, sigmas, sampler, num, mean)

    noise_axis = 0 if per_observation_noise else None
    operator_axis = None if shared else 0
    run = jax.vmap(one, in_axes=(None, None, None, None, noise_axis, 0, operator_axis, 0))
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


def check_sampling(method, denoiser, problem: InverseProblem, sigmas):
    """Every check of ``sample_posterior``: ``(method, sigmas as an array, N)``.

    The problem (``check_problem``: finite values, leading axes, the first observation a valid
    linear problem) and the method's own checks on observation 0, eagerly.

    Raises:
      ValueError: naming what is wrong, before anything is sampled.
    """
    if isinstance(method, str):
        method = posterior_method(method)
    sigmas = samplers.check_sigmas(sigmas)
    n = check_problem(problem, sigmas.dtype)
    A, y, noise_var = problem.observation(0)  # the method's own checks, eagerly
    x_like = jax.ShapeDtypeStruct(tuple(problem.shape), sigmas.dtype)
    method(denoiser, A, y, noise_var, x_like=x_like)
    return method, sigmas, n


def sample_posterior(
    method,
    denoiser,
    problem: InverseProblem,
    *,
    rng,
    sigmas,
    sampler="ddpm_ancestral",
    num_per_observation=1,
    mean=None,
    mesh=None,
    checked=False,
):
    """Samples ``p(x0 | y_i)`` for every observation of ``problem``, vmapped and sharded.

    Args:
      method: a posterior method: its name (``"mmps"``, default options), a
        ``posterior_method(name, **options)``, or any ``(denoiser, A, y, noise_var) ->
        posterior denoiser`` (hashable to reuse the compiled program).
      denoiser: the prior denoiser ``(x, sigma) -> x0_hat`` on one example.
      problem: the observations (``posterior.problems``).
      rng: a JAX key; observation ``i`` uses ``fold_in(rng, i)``.
      sigmas: the sampler's levels (``samplers.sigmas_from_config``), ending with 0.
      sampler: a sampler or its name (``ddpm_ancestral`` for ``dps_published``).
      num_per_observation: samples per observation, ``>= 1``.
      mean: optional prior mean for the initial noise (as ``sampling.sample``).
      mesh: a mesh with a ``data`` axis; default all visible devices.
      checked: skip ``check_sampling`` (the caller ran it on a problem this one is part of:
        the EM E-step checks its whole problem once, not each chunk).

    Returns:
      ``[N, num_per_observation, *problem.shape]`` samples.

    Raises:
      ValueError: from ``check_problem`` (NaN or inf, mismatched leading axes, an operator
        whose output does not match ``y``, a negative or complex noise variance, a non-linear
        map) or from the method's option checks, before anything is sampled; a sampler that
        cannot apply a ``samplers.Guided`` step raises when the program is traced, also
        before anything is sampled.
    """
    if checked:
        method = posterior_method(method) if isinstance(method, str) else method
        sigmas, n = jnp.asarray(sigmas), problem.num_observations
    else:
        method, sigmas, n = check_sampling(method, denoiser, problem, sigmas)
    shape = tuple(problem.shape)
    per_observation_noise, shared = problem.per_observation_noise, problem.shared_operator
    mesh = mesh if mesh is not None else parallel.make_mesh()
    num_devices = mesh.devices.size
    n_pad = -n % num_devices
    noise = jnp.asarray(problem.noise_var)
    indices, ys = _pad((jnp.arange(n), problem.y), n_pad)
    operators = problem.operators if shared else _pad(problem.operators, n_pad)
    if per_observation_noise:
        noise = _pad(noise, n_pad)
    denoiser_arrays, structure = _split_arrays(denoiser)
    key = (method, structure, shape, sampler, num_per_observation)
    key += (bool(per_observation_noise), bool(shared), mesh)
    try:
        run = _cached_sampler(*key)
    except TypeError:  # an unhashable static part (e.g. a list in the denoiser): no reuse
        run = _build_sampler(*key)
    if num_devices > 1:
        sharded, replicated = parallel.batch_sharded(mesh), parallel.replicated(mesh)
        indices, ys = jax.device_put((indices, ys), sharded)
        operators = jax.device_put(operators, replicated if shared else sharded)
        noise = jax.device_put(noise, sharded if per_observation_noise else replicated)
        denoiser_arrays = jax.device_put(denoiser_arrays, replicated)
    samples = run(denoiser_arrays, rng, sigmas, mean, noise, indices, operators, ys)
    return samples[:n] if n_pad else samples
