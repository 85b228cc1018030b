"""The one inverse-problem type: `N` linear-Gaussian observations of unknowns of one shape.

An `InverseProblem` holds observations `y_i = A_i x_i + n_i`, `n_i ~ N(0, Sigma_y)`, of `N`
unknowns `x_i` of one shape (docs/methods.md E; Rozet et al. 2024, Sec. 5): `y` with a
leading axis `N` and ONE operator pytree whose leaves carry the same leading axis
(`PixelMask(mask [N, ...])`, `UndersampledFourier(mask [N, W])`, `DenseMatrix(matrix
[N, M, D])`), or no leading axis at all for an operator shared by every observation
(`BoxDownsample`, `Blur`). Observation `i` is `problem.observation(i) = (A_i, y_i,
noise_var_i)`, and a whole problem vmaps: `jax.vmap(lambda A, x: A(x))(operators, x)`.
`check_problem` is the one validation every consumer (posterior sampling, EM, the report
runner) relies on; `posterior.observations` builds problems of every kind in the library.
"""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from diffssl_jax.posterior.operators import (
    BlurDownsample,
    BoxDownsample,
    check_operator,
)


@flax.struct.dataclass
class InverseProblem:
    """`N` observations `y_i = A_i x_i + n_i` of unknowns of shape `shape`.

    Attributes:
      y: `[N, *y_shape]` observations (real, or complex for MRI k-space).
      operators: one operator pytree; leaves with a leading axis `N` (one operator per
        observation) or without it (one operator shared by all; see `shared_operator`).
      noise_var: `Sigma_y`: a scalar, a diagonal broadcasting to one `y`, or `[N, ...]` of the
        same rank as `y` (one per observation). For complex `y`: per real and imaginary part.
      shape: the shape of one unknown `x_i` (static).
      truth: optional `[N, *shape]` ground truth (evaluation and the EM ceiling).
      ids: optional `[N]` int32 indices of the observed examples in their source.
      shared_operator: True if `operators` has no leading axis (static).
    """

    y: jax.Array
    operators: Any
    noise_var: Any
    shape: tuple = flax.struct.field(pytree_node=False)
    truth: jax.Array | None = None
    ids: jax.Array | None = None
    shared_operator: bool = flax.struct.field(pytree_node=False, default=False)

    @property
    def num_observations(self) -> int:
        return int(jnp.shape(self.y)[0])

    @property
    def per_observation_noise(self) -> bool:
        """True if `noise_var` has one entry per observation (`[N, ...]`, rank of `y`)."""
        return jnp.ndim(self.noise_var) == jnp.ndim(self.y) and jnp.ndim(self.y) > 0

    def operator(self, i: int):
        """`A_i`."""
        if self.shared_operator:
            return self.operators
        return jax.tree.map(lambda leaf: leaf[i], self.operators)

    def observation(self, i: int):
        """`(A_i, y_i, noise_var_i)`: observation `i` as the posterior methods take it."""
        noise = self.noise_var[i] if self.per_observation_noise else self.noise_var
        return self.operator(i), self.y[i], noise

    def take(self, start: int, stop: int) -> "InverseProblem":
        """Observations `[start, stop)` as a problem of their own (e.g. an E-step chunk)."""

        def cut(leaf):
            return None if leaf is None else leaf[start:stop]

        return self.replace(
            y=cut(self.y),
            operators=self.operators if self.shared_operator else jax.tree.map(cut, self.operators),
            noise_var=cut(self.noise_var) if self.per_observation_noise else self.noise_var,
            truth=cut(self.truth),
            ids=cut(self.ids),
        )

    def stacked_operators(self):
        """The operators with a leading axis `N` (a shared operator is broadcast)."""
        if not self.shared_operator:
            return self.operators
        n = self.num_observations
        return jax.tree.map(
            lambda leaf: jnp.broadcast_to(leaf, (n, *jnp.shape(leaf))), self.operators
        )


def _is_concrete(tree) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree))


def _check_finite(name: str, tree) -> None:
    """Raises ValueError if a concrete floating (or complex) leaf of `tree` is NaN or inf."""
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, jax.core.Tracer) or not hasattr(leaf, "dtype"):
            continue
        if not jnp.issubdtype(leaf.dtype, jnp.inexact):
            continue
        bad = int(jnp.size(leaf) - jnp.sum(jnp.isfinite(leaf)))
        if bad:
            raise ValueError(
                f"{name} contains {bad} NaN or inf value(s) (an array of shape "
                f"{jnp.shape(leaf)}); the posterior of a non-finite observation is undefined: "
                "drop or repair those observations first."
            )


def check_problem(problem: InverseProblem, dtype=None) -> int:
    """The one validation of an inverse problem; returns `N`.

    Checks: `y` is a non-empty `[N, ...]` floating or complex array; every operator leaf has
    the leading axis `N` (unless shared); `y`, the operators and `noise_var` are finite (when
    concrete); the first observation is a valid linear problem (`check_operator`: `A` maps an
    `x` of `problem.shape` to `y_i`'s shape and dtype, is linear, `noise_var` real and
    `>= 0`); `truth`, if given, is `[N, *shape]`.

    Args:
      problem: the problem.
      dtype: the real dtype of the unknowns (default: that of `y`).

    Raises:
      ValueError: naming what disagrees and how to fix it.
    """
    y = problem.y
    if jnp.ndim(y) < 1 or jnp.shape(y)[0] == 0:
        raise ValueError(f"y must be a non-empty [N, ...] array, got shape {jnp.shape(y)}.")
    if not jnp.issubdtype(jnp.result_type(y), jnp.inexact):
        raise ValueError(f"y must be a floating or complex array, got {jnp.result_type(y)}.")
    n = int(jnp.shape(y)[0])
    if not problem.shared_operator:
        for leaf in jax.tree.leaves(problem.operators):
            if jnp.ndim(leaf) < 1 or jnp.shape(leaf)[0] != n:
                raise ValueError(
                    f"operators and y disagree: y has {n} observations but an operator leaf "
                    f"has shape {jnp.shape(leaf)}. Stack one operator per observation, e.g. "
                    "jax.tree.map(lambda *l: jnp.stack(l), *operator_list), or pass "
                    "shared_operator=True for one operator applied to every observation."
                )
    _check_finite("y", y)
    _check_finite("the operators", problem.operators)
    _check_finite("noise_var", problem.noise_var)
    dtype = dtype or jnp.finfo(jnp.result_type(y)).dtype
    A, y0, noise = problem.observation(0)
    check_operator(A, jax.ShapeDtypeStruct(tuple(problem.shape), dtype), y0, noise_var=noise)
    if problem.truth is not None and tuple(jnp.shape(problem.truth)) != (n, *problem.shape):
        raise ValueError(
            f"truth must be [N, *shape] = {(n, *problem.shape)}, got {jnp.shape(problem.truth)}."
        )
    return n


def measure(operators, x: jax.Array) -> jax.Array:
    """Noise-free batched measurements `A_i(x_i)` of a stacked operator pytree."""
    return jax.vmap(lambda A, xi: A(xi))(operators, x)


def zero_filled(problem: InverseProblem) -> jax.Array:
    """`[N, *shape]` adjoint reconstructions `A_i^H y_i` (real part): the zero-filled baseline.

    `PixelMask`: the observation with the missing pixels at 0 (mid-grey in [-1, 1]);
    `UndersampledFourier`: `Re(F^H y)`, the inverse FFT of zero-filled k-space;
    `DenseMatrix`: `A^T y`.
    """
    struct = jax.ShapeDtypeStruct(tuple(problem.shape), jnp.finfo(problem.y.dtype).dtype)
    return jax.vmap(lambda A, yi: A.adjoint(yi, struct))(problem.stacked_operators(), problem.y)


def observation_image(problem: InverseProblem) -> np.ndarray:
    """`[N, *shape]` each observation seen as an image (the "observed" row of figures and the
    observation baseline of the comparisons): nearest upsampling for super-resolution, the
    zero-filled reconstruction (`zero_filled`) otherwise."""
    if isinstance(problem.operators, (BoxDownsample, BlurDownsample)):
        f = problem.operators.factor
        return np.repeat(np.repeat(np.asarray(problem.y), f, axis=1), f, axis=2)
    return np.asarray(zero_filled(problem))
