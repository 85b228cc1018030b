"""The Gaussian prior fitted to linear-Gaussian observations by moment-matching EM (E.4).

For observations `y_i = A_i x_i + n_i`, `n_i ~ N(0, Sigma_y)`, and a prior `N(mu, Sigma)`, the
posterior of each `x_i` is Gaussian in closed form (Bishop 2006, Eqs. 2.113-2.117):

    K_i = Sigma A_i^T (A_i Sigma A_i^T + Sigma_y)^-1,
    m_i = mu + K_i (y_i - A_i mu),   S_i = Sigma - K_i A_i Sigma,

and one EM iteration (Dempster et al. 1977; Rozet et al. 2024, Sec. 4 "initialization")
matches the prior's moments to the pooled posteriors:

    mu' = (1/N) sum_i m_i,   Sigma' = (1/N) sum_i (S_i + m_i m_i^T) - mu' mu'^T.

Each operator is materialised as a dense `[M, D]` matrix by `jax.jacfwd` (operators are
linear); a complex operator (MRI) is realified as `[Re A; Im A]` with `y` as `(Re y, Im y)`
and `Sigma_y` the variance of each part. Sums run over chunks of observations in a
`lax.scan`, so memory is `O(chunk * M * D + D^2)`.

Rows of `A_i` that are identically zero (masked pixels, unsampled k-space columns, the
imaginary part of a real DFT coefficient) carry no information about `x_i`: dropping them
and their entries of `y_i` and `Sigma_y` leaves `m_i` and `S_i` exactly unchanged. So each
matrix keeps only its first `rows` non-zero rows, `rows` being the largest support over the
observations (`support_size`, a static shape); the solve then costs `O(rows^3)`, not
`O(M^3)`: for 4x MRI on 32x32 phantoms, M = 2048 but rows <= 512.
"""

import functools
import math

import jax
import jax.numpy as jnp


def operator_matrix(A, shape, dtype=jnp.float32):
    """The dense realified matrix `[M, D]` of one linear operator on `x` of `shape`."""
    size = math.prod(shape)

    return jax.jacfwd(lambda v: realify(A(v.reshape(shape))))(jnp.zeros((size,), dtype))


def support_size(operators, shape, dtype=jnp.float32, chunk: int = 64) -> int:
    """The largest number of non-zero rows of any realified operator matrix (an int)."""
    count = jax.jit(
        jax.vmap(lambda a: jnp.sum(jnp.any(operator_matrix(a, shape, dtype) != 0, axis=1)))
    )
    num = jax.tree.leaves(operators)[0].shape[0]
    starts = range(0, num, chunk)
    counts = [count(jax.tree.map(lambda leaf, i=i: leaf[i : i + chunk], operators)) for i in starts]
    return int(jnp.max(jnp.concatenate(counts)))


def _keep_rows(matrix, y, noise, rows):
    """`(matrix, y, noise)` restricted to the first `rows` rows in the support of `matrix`
    (non-zero rows first, in order; zero rows pad when the support is smaller)."""
    if rows is None or rows >= matrix.shape[0]:
        return matrix, y, noise
    keep = jnp.argsort(~jnp.any(matrix != 0, axis=1), stable=True)[:rows]
    return matrix[keep], y[keep], noise[keep]


def realify(y):
    """`y` flattened; complex `y` as `(Re y, Im y)` concatenated."""
    y = jnp.ravel(y)
    if jnp.iscomplexobj(y):
        return jnp.concatenate([y.real, y.imag])
    return y


def realify_noise(noise_var, y):
    """`Sigma_y` as a diagonal matching `realify(y)` (a scalar or an array broadcasting to y)."""
    noise = jnp.broadcast_to(jnp.asarray(noise_var), jnp.shape(y)).ravel()
    noise = noise.astype(jnp.finfo(jnp.result_type(y)).dtype)
    return jnp.concatenate([noise, noise]) if jnp.iscomplexobj(y) else noise


def gaussian_posterior(mean, cov, matrix, y, noise_diag):
    """`(m [D], S [D, D])`, the closed-form posterior of the module docstring (one obs)."""
    cov_a = cov @ matrix.T
    gram = matrix @ cov_a + jnp.diag(noise_diag)
    gain = jax.scipy.linalg.solve(gram, cov_a.T, assume_a="pos").T
    post_mean = mean + gain @ (y - matrix @ mean)
    post_cov = cov - gain @ cov_a.T
    return post_mean, 0.5 * (post_cov + post_cov.T)


@functools.partial(jax.jit, static_argnames=("shape", "chunk", "rows"))
def em_iteration(mean, cov, operators, ys, noise_var, *, shape, chunk=256, rows=None):
    """One moment-matching EM iteration `(mu, Sigma) -> (mu', Sigma')` (module docstring).

    Args:
      mean: `[D]` prior mean.
      cov: `[D, D]` prior covariance.
      operators: operator pytree with leading axis `N`.
      ys: `[N, ...]` observations.
      noise_var: scalar or array broadcasting to one `y`.
      shape: the shape of one `x` (`D = prod(shape)`).
      chunk: observations per scan step.
      rows: keep this many rows of each operator matrix, its non-zero ones first (module
        docstring); at least `support_size(operators, shape)` for an exact result. None:
        all rows.

    Returns:
      `(mean' [D], cov' [D, D])`.
    """
    n = ys.shape[0]
    pad = -n % chunk
    index = jnp.arange(n + pad)
    weights = (index < n).astype(mean.dtype)  # padding repeats the last observation, weight 0
    take = jnp.minimum(index, n - 1)

    sums = (jnp.zeros_like(mean), jnp.zeros_like(cov))

    def step(carry, start):
        sum_m, sum_second = carry
        idx = jax.lax.dynamic_slice(take, (start,), (chunk,))
        w = jax.lax.dynamic_slice(weights, (start,), (chunk,))
        A = jax.tree.map(lambda leaf: leaf[idx], operators)

        def posterior(a, yi):
            matrix, y, noise = _keep_rows(
                operator_matrix(a, shape, mean.dtype),
                realify(yi).astype(mean.dtype),
                realify_noise(noise_var, yi).astype(mean.dtype),
                rows,
            )
            return gaussian_posterior(mean, cov, matrix, y, noise)

        ms, ss = jax.vmap(posterior)(A, ys[idx])
        sum_m = sum_m + jnp.einsum("n,nd->d", w, ms)
        second = ss + jnp.einsum("nd,ne->nde", ms, ms)
        sum_second = sum_second + jnp.einsum("n,nde->de", w, second)
        return (sum_m, sum_second), None

    starts = jnp.arange(0, n + pad, chunk)
    (sum_m, sum_second), _ = jax.lax.scan(step, sums, starts)
    new_mean = sum_m / n
    new_cov = sum_second / n - jnp.outer(new_mean, new_mean)
    return new_mean, 0.5 * (new_cov + new_cov.T)


def fit_gaussian(operators, ys, noise_var, *, shape, num_iterations, ridge=1e-6, chunk=256):
    """Fits `N(mu, Sigma)` to observations by `num_iterations` EM iterations from `N(0, I)`.

    Args:
      operators: operator pytree with leading axis `N`.
      ys: `[N, ...]` observations.
      noise_var: scalar or array broadcasting to one `y`.
      shape: the shape of one `x`.
      num_iterations: EM iterations (>= 1).
      ridge: added to the diagonal after each iteration (keeps `Sigma` positive definite in
        directions no observation constrains).
      chunk: observations per scan step (memory).

    Returns:
      `(mean [D], cov [D, D])` in the real dtype of `ys`.
    """
    if int(num_iterations) < 1:
        raise ValueError(f"num_iterations must be >= 1, got {num_iterations}.")
    dtype = jnp.finfo(jnp.result_type(ys)).dtype
    size = math.prod(shape)
    mean, cov = jnp.zeros((size,), dtype), jnp.eye(size, dtype=dtype)
    chunk = int(min(chunk, ys.shape[0]))
    rows = support_size(operators, tuple(shape), dtype)
    for _ in range(int(num_iterations)):
        mean, cov = em_iteration(
            mean, cov, operators, ys, noise_var, shape=tuple(shape), chunk=chunk, rows=rows
        )
        cov = cov + ridge * jnp.eye(size, dtype=dtype)
    return mean, cov


def fit_problem(problem, *, num_iterations: int):
    """`fit_gaussian` on the observations of an `InverseProblem` (EM's lap-0 prior).

    Raises:
      ValueError: a noise variance given per observation (`Sigma_y` must be shared here).
    """
    if problem.per_observation_noise:
        raise ValueError(
            "the Gaussian lap 0 needs one noise variance shared by every observation; got "
            f"noise_var of shape {jnp.shape(problem.noise_var)} (one per observation)."
        )
    return fit_gaussian(
        problem.stacked_operators(),
        problem.y,
        problem.noise_var,
        shape=tuple(problem.shape),
        num_iterations=num_iterations,
    )
