"""DiTi's counterfactual generation: DDIM inversion, then generation with a mixed feature.

Yue et al. 2024 (Sec. 4.3; reference `eval/counterfactual_generation.py`, docs/methods.md B.6):
invert x0 deterministically to x_T with DDIM (Song et al. 2021, Eq. 12 with sigma = 0),
guided at every step n by the image's own feature masked to the subsets seen at n,
z * m_floor(n k / T); then generate back from x_T with a feature whose chosen subsets are
interpolated towards a second image's, z = z1 + alpha (z2 - z1) on those dims. The guided
noise is eps_θ - sqrt(1 - ab_n) G (`diti.sample_eps`).

One DDIM update from ab to ab' (both directions): x0_hat = (x - sqrt(1 - ab) eps) / sqrt(ab),
x' = sqrt(ab') x0_hat + sqrt(1 - ab') eps. As the reference's `ddim_sample` and `ddim_encode`
(PDAE's `diffusion/ddim.py`), both the inversion and the generation clip
x0_hat to [-1, 1] and then re-derive the noise from the clipped estimate,
eps' = (x - sqrt(ab) clip(x0_hat)) / sqrt(1 - ab), so that x stays on the DDIM line
x = sqrt(ab) clip(x0_hat) + sqrt(1 - ab) eps'. Clipping x0_hat but keeping eps (as this module
did before 2026-12-07, in the generation only) moves x off that line whenever the estimate
clips, which near n = T - 1 (sqrt(ab) ~ 0.006) is almost always: on the digits it cost the
frozen prior's own 50-step round trip 16 dB (22.2 against 38.8 dB, docs/diti.md).

As published (the reference's `lerp_seg` with `lerpT=True`), the generation at weight alpha
starts from the spherical interpolation of the two images' inversions, x_T = slerp(x_T1, x_T2,
alpha), with the same alpha as the feature; alpha = 0 starts from image 1's own inversion.
`slerp_xt=False` keeps x_T1 at every weight, so that only the chosen subsets differ from image
1's reconstruction.

Pure computations on arrays and functions (no I/O): `diti.make_recipe` offers them as the
recipe's `counterfactuals`; `evaluation.counterfactuals` picks the images, draws the strips
and measures them.
"""

import jax
import jax.numpy as jnp
import numpy as np


def ddim_update(x, eps, alpha_bar_from, alpha_bar_to, clip: bool = False):
    """One deterministic DDIM step from noise level ab to ab' (module docstring).

    With `clip`, x0_hat is clipped to [-1, 1] and the noise re-derived from it,
    eps' = (x - sqrt(ab) x0_hat) / sqrt(1 - ab) (eps itself at ab = 1, where x = x0_hat);
    where nothing clips eps' = eps and the step is the unclipped one.
    """
    x0_hat = (x - jnp.sqrt(1.0 - alpha_bar_from) * eps) / jnp.sqrt(alpha_bar_from)
    if clip:
        x0_hat = jnp.clip(x0_hat, -1.0, 1.0)
        noisy = jnp.asarray(alpha_bar_from) < 1.0
        safe = jnp.where(noisy, 1.0 - alpha_bar_from, 1.0)
        eps = jnp.where(noisy, (x - jnp.sqrt(alpha_bar_from) * x0_hat) / jnp.sqrt(safe), eps)
    return jnp.sqrt(alpha_bar_to) * x0_hat + jnp.sqrt(1.0 - alpha_bar_to) * eps


def step_grid(num_steps: int, num_ddim: int) -> np.ndarray:
    """`[S]` increasing integer steps from 0 to T - 1, evenly spaced."""
    if not 2 <= num_ddim <= num_steps:
        raise ValueError(f"need 2 <= DDIM steps <= T = {num_steps}, got {num_ddim}")
    return np.unique(np.round(np.linspace(0, num_steps - 1, num_ddim)).astype(np.int32))


def invert(eps_fn, alpha_bar, x0, z, steps, clip: bool = True):
    """x at n_{S-1} from x0 by guided DDIM up the grid (first step: from ab = 1 to ab_{n_0}).

    `eps_fn(x, n, z)`; `generate` retraces the same levels down to ab = 1; `clip` as in
    `ddim_update` (the reference's `ddim_encode` clips).
    """

    def body(x, pair):
        n, n_next = pair
        return ddim_update(x, eps_fn(x, n, z), alpha_bar[n], alpha_bar[n_next], clip), None

    x = ddim_update(x0, eps_fn(x0, steps[0], z), 1.0, alpha_bar[steps[0]], clip)
    pairs = (jnp.asarray(steps[:-1]), jnp.asarray(steps[1:]))
    return jax.lax.scan(body, x, pairs)[0]


def generate(eps_fn, alpha_bar, xt, z, steps, clip: bool = True):
    """x0 from x at n_{S-1} by guided DDIM down the grid, then the x0 estimate at n_0."""

    def body(x, pair):
        n, n_prev = pair
        return ddim_update(x, eps_fn(x, n, z), alpha_bar[n], alpha_bar[n_prev], clip), None

    pairs = (jnp.asarray(steps[1:][::-1]), jnp.asarray(steps[:-1][::-1]))
    x = jax.lax.scan(body, xt, pairs)[0]
    return ddim_update(x, eps_fn(x, steps[0], z), alpha_bar[steps[0]], 1.0, clip)


def slerp(a, b, alpha):
    """Spherical interpolation between noise maps, per example over all other axes.

    Maths: with theta the angle between a and b,
    slerp = (sin((1 - alpha) theta) a + sin(alpha theta) b) / sin(theta) (Shoemake 1985; the
    reference's `slerp`): a at alpha = 0, b at alpha = 1, and the norm of a at every alpha when
    a and b are orthogonal with equal norms (independent Gaussian maps nearly are), where the
    straight line would shrink it by sqrt((1 - alpha)^2 + alpha^2). Parallel maps
    (sin(theta) ~ 0, e.g. an image paired with itself) are interpolated linearly.
    """
    flat_a, flat_b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    cos = jnp.sum(flat_a * flat_b, 1) / (
        jnp.linalg.norm(flat_a, axis=1) * jnp.linalg.norm(flat_b, axis=1)
    )
    theta = jnp.arccos(jnp.clip(cos, -1.0, 1.0))[:, None]
    sin = jnp.sin(theta)
    parallel = sin < 1e-6
    safe = jnp.where(parallel, 1.0, sin)
    mix = (jnp.sin((1 - alpha) * theta) * flat_a + jnp.sin(alpha * theta) * flat_b) / safe
    mix = jnp.where(parallel, (1 - alpha) * flat_a + alpha * flat_b, mix)
    return mix.reshape(a.shape)


def mix_features(z1, z2, dims_mask, alpha):
    """z1 with the dims where `dims_mask` is 1 moved to z1 + alpha (z2 - z1): `[B, D]`."""
    return z1 + alpha * dims_mask * (z2 - z1)


def make_counterfactual_fn(encode, eps_fn, alpha_bar, steps, slerp_xt: bool = True):
    """A jitted `(params, x1, x2, dims_mask, alphas) -> [B, A, H, W, C]` counterfactual map.

    Images 1 are generated with the dims of z where `dims_mask` (`[D]`) is 1 interpolated
    towards image 2's feature, for each weight of `alphas` (`[A]`); `x1`, `x2` are
    `[B, H, W, C]` pairs in [-1, 1] and `params` the trained parameters.

    Args:
        encode: `(params, x [B, H, W, C]) -> z [B, D]`.
        eps_fn: `(params, x [B, ...], n scalar int, z [B, D]) -> eps`, the guided noise.
        alpha_bar: `[T]` ab_n of the steps.
        steps: increasing DDIM steps (`step_grid`).
        slerp_xt: start the generation at weight alpha from slerp(x_T1, x_T2, alpha), as
            published (default); False: from x_T1 at every weight.
    """
    steps = np.asarray(steps)

    def run(params, x1, x2, dims_mask, alphas):
        eps = lambda x, n, z: eps_fn(params, x, n, z)  # noqa: E731
        z1, z2 = encode(params, x1), encode(params, x2)
        xt1 = invert(eps, alpha_bar, x1, z1, steps)
        xt2 = invert(eps, alpha_bar, x2, z2, steps) if slerp_xt else xt1

        def one(alpha):
            xt = slerp(xt1, xt2, alpha) if slerp_xt else xt1
            z = mix_features(z1, z2, dims_mask, alpha)
            return generate(eps, alpha_bar, xt, z, steps)

        return jnp.moveaxis(jax.lax.map(one, alphas), 0, 1)

    return jax.jit(run)


def make_reconstruction_fn(encode, eps_fn, alpha_bar, steps):
    """A jitted `(params, x [B, H, W, C]) -> [B, H, W, C]`: guided DDIM inversion of x to x_T,
    then generation back from x_T with the same feature z = E(x) (arguments as in
    `make_counterfactual_fn`; an `eps_fn` that ignores z gives the prior's reconstruction)."""
    steps = np.asarray(steps)

    def run(params, x):
        eps = lambda x, n, z: eps_fn(params, x, n, z)  # noqa: E731
        z = encode(params, x)
        return generate(eps, alpha_bar, invert(eps, alpha_bar, x, z, steps), z, steps)

    return jax.jit(run)
