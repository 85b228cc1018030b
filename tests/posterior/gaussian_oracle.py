"""Closed forms for the posterior tests: a Gaussian prior, its denoiser, exact posteriors.

Everything is NumPy float64 (or a small pytree denoiser evaluated in the caller's dtype) and
independent of ``diffssl_jax.posterior``: operators enter as explicit matrices built by
applying them to basis vectors, and complex operators are realified,
``A_r = [Re A; Im A]``, ``y_r = [Re y; Im y]``, with ``noise_var`` per real coordinate.
"""

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class LinearDenoiser:
    """``D(x, sigma) = W(sigma) x + c(sigma)`` on any shape, flattened to ``[D]``.

    For the Gaussian prior ``N(mean, cov)``: ``W = I - s^2 (cov + s^2 I)^-1`` and
    ``c = s^2 (cov + s^2 I)^-1 mean`` (Rozet et al. 2024, E.1). ``fixed`` replaces ``W`` by a
    constant matrix (and ``c`` by 0): an arbitrary, e.g. indefinite, linear denoiser.
    """

    mean: jax.Array
    cov: jax.Array
    fixed: jax.Array | None = None

    def __call__(self, x, sigma):
        flat = x.reshape(-1)
        if self.fixed is not None:
            return (self.fixed.astype(x.dtype) @ flat).reshape(x.shape)
        s2 = jnp.square(jnp.asarray(sigma, x.dtype))
        cov = self.cov.astype(x.dtype)
        eye = jnp.eye(flat.size, dtype=x.dtype)
        out = flat - s2 * jnp.linalg.solve(cov + s2 * eye, flat - self.mean.astype(x.dtype))
        return out.reshape(x.shape)


def random_prior(rng, dim):
    """A mean and an SPD covariance with eigenvalues spread over [0.02, 2]."""
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    cov = (q * np.logspace(np.log10(0.02), np.log10(2.0), dim)) @ q.T
    return 0.3 * rng.normal(size=dim), 0.5 * (cov + cov.T)


def jacobian(mean, cov, sigma, fixed=None):
    """``W = dD/dx`` of ``LinearDenoiser`` as a float64 matrix."""
    if fixed is not None:
        return np.asarray(fixed, np.float64)
    s2 = sigma**2
    return np.eye(len(mean)) - s2 * np.linalg.inv(cov + s2 * np.eye(len(mean)))


def denoise(mean, cov, x, sigma):
    """``D(x, sigma)`` for the Gaussian prior, flat float64."""
    s2 = sigma**2
    return x - s2 * np.linalg.solve(cov + s2 * np.eye(len(mean)), x - mean)


def operator_matrix(A, x_shape, dtype=jnp.float64):
    """``[M, D]`` matrix of a linear operator (columns ``A e_j``); complex if ``A`` is."""
    eye = jnp.eye(int(np.prod(x_shape)), dtype=dtype)
    columns = jax.vmap(lambda e: A(e.reshape(x_shape)).reshape(-1))(eye)
    return np.asarray(columns).T


def realify(a_mat, y, noise_var):
    """``(A_r, y_r, noise_r)`` with the all-zero rows (unobserved entries) dropped."""
    noise = np.broadcast_to(np.asarray(noise_var, np.float64), np.shape(y)).reshape(-1)
    y = np.asarray(y).reshape(-1)
    if np.iscomplexobj(a_mat) or np.iscomplexobj(y):
        a_mat = np.concatenate([a_mat.real, a_mat.imag])
        y, noise = np.concatenate([y.real, y.imag]), np.concatenate([noise, noise])
    keep = np.any(a_mat != 0, axis=1)
    return a_mat[keep].astype(np.float64), y[keep].astype(np.float64), noise[keep]


def exact_posterior_mean(mean, cov, a_mat, y, noise_var, x, sigma):
    """``E[x0 | x_sigma = x, y]`` for ``x0 ~ N(mean, cov)``, ``x = x0 + sigma eps``, ``y``.

    Conditioning the joint Gaussian in two steps: ``x0 | x ~ N(m, V)`` with ``m = D(x)``,
    ``V = cov - cov (cov + sigma^2 I)^-1 cov``, then on ``y = A x0 + n``:
    ``m + V A^T (Sigma_y + A V A^T)^-1 (y - A m)``.
    """
    a_r, y_r, noise_r = realify(a_mat, y, noise_var)
    m = denoise(mean, cov, np.asarray(x, np.float64).reshape(-1), sigma)
    v = cov - cov @ np.linalg.solve(cov + sigma**2 * np.eye(len(mean)), cov)
    gain = v @ a_r.T @ np.linalg.inv(np.diag(noise_r) + a_r @ v @ a_r.T)
    return m + gain @ (y_r - a_r @ m)


def exact_posterior_mean_precision(mean, cov, a_mat, y, noise_var, x, sigma):
    """Same quantity from the joint precision (needs ``noise_var > 0``): a check of the oracle.

    ``(cov^-1 + I / sigma^2 + A^T Sigma_y^-1 A)^-1 (cov^-1 mean + x / sigma^2 + A^T Sigma_y^-1 y)``.
    """
    a_r, y_r, noise_r = realify(a_mat, y, noise_var)
    prec_y = a_r.T @ np.diag(1 / noise_r)
    prec = np.linalg.inv(cov) + np.eye(len(mean)) / sigma**2 + prec_y @ a_r
    rhs = np.linalg.solve(cov, mean) + np.asarray(x).reshape(-1) / sigma**2 + prec_y @ y_r
    return np.linalg.solve(prec, rhs)


def observe(rng, A, x0, noise_var):
    """``y = A x0 + n``, ``n`` Gaussian with variance ``noise_var`` per real coordinate."""
    y = np.asarray(A(x0))
    n = rng.normal(size=y.shape)
    if np.iscomplexobj(y):
        n = n + 1j * rng.normal(size=y.shape)
    return jnp.asarray(y + np.sqrt(noise_var) * n * (y != 0), y.dtype)


def counting_denoiser(mean, cov, counts):
    """The Gaussian denoiser with a ``custom_vjp`` that counts, in ``counts``, plain calls
    (``"call"``), forward passes kept for a vjp (``"forward"``) and vjps (``"vjp"``)."""
    linear = LinearDenoiser(jnp.asarray(mean), jnp.asarray(cov))

    @jax.custom_vjp
    def denoise(x, sigma):
        counts["call"] += 1
        return linear(x, sigma)

    def fwd(x, sigma):
        counts["forward"] += 1
        out, vjp_fn = jax.vjp(lambda u: linear(u, sigma), x)
        return out, (vjp_fn, sigma)

    def bwd(res, ct):
        counts["vjp"] += 1
        vjp_fn, sigma = res
        return vjp_fn(ct)[0], jnp.zeros_like(sigma)

    denoise.defvjp(fwd, bwd)
    return denoise
