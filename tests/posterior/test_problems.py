"""The one inverse-problem type and its builders: exact-count masks, k-space, projections,
shared operators, vmap = loop, zero filling, `observe`, `take`, `check_problem`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffssl_jax.data import manifold
from diffssl_jax.data.phantoms import random_ellipse_phantoms
from diffssl_jax.data.sources import DigitsSource
from diffssl_jax.posterior import observations, operators, problems
from diffssl_jax.posterior.observations import (
    pixel_inpainting,
    random_projections,
    undersampled_mri,
)
from diffssl_jax.posterior.operators import DenseMatrix, PixelMask, UndersampledFourier
from diffssl_jax.posterior.problems import zero_filled


def _pixels(seed, x, rate, noise_std=0.01):
    problem = pixel_inpainting(seed, x, noise_std=noise_std, rate=rate)
    return problem.y, problem.operators


def _mri(seed, x, acceleration=4.0, center_fraction=0.08, noise_std=0.01):
    problem = undersampled_mri(
        seed, x, noise_std=noise_std, acceleration=acceleration, center_fraction=center_fraction
    )
    return problem.y, problem.operators


def _projections(seed, x, noise_std=0.01):
    problem = random_projections(seed, x, noise_std=noise_std)
    return problem.y, problem.operators


@pytest.fixture(scope="module")
def digits():
    return jnp.asarray(DigitsSource("test").images[:24])


@pytest.fixture(scope="module")
def phantoms():
    return jnp.asarray(random_ellipse_phantoms(5, 6, 32))


def _loop(operators, x):
    n = len(jax.tree.leaves(operators)[0])
    return jnp.stack([jax.tree.map(lambda a, i=i: a[i], operators)(x[i]) for i in range(n)])


@pytest.mark.parametrize("rate", [0.25, 0.5, 0.75])
def test_masks_remove_an_exact_count_per_image(digits, rate):
    y, ops = _pixels(0, digits, rate, noise_std=0.0)
    assert isinstance(ops, PixelMask) and ops.mask.shape == digits.shape
    assert ops.mask.dtype == jnp.bool_ and y.shape == digits.shape and y.dtype == digits.dtype
    removed = np.asarray((~ops.mask).sum(axis=(1, 2, 3)))
    np.testing.assert_array_equal(removed, round(rate * 16 * 16))
    assert len({m.tobytes() for m in np.asarray(ops.mask)}) == len(digits)  # all different
    np.testing.assert_array_equal(y, jnp.where(ops.mask, digits, 0.0))


def test_masks_are_shared_across_channels_and_prefix_stable():
    x = jax.random.uniform(jax.random.key(0), (5, 8, 8, 3), minval=-1, maxval=1)
    _, ops = _pixels(7, x, 0.5, noise_std=0.0)
    np.testing.assert_array_equal(ops.mask, jnp.broadcast_to(ops.mask[..., :1], x.shape))
    np.testing.assert_array_equal((~ops.mask).sum(axis=(1, 2, 3)), 32 * 3)
    y2, ops2 = _pixels(7, x[:2], 0.5, noise_std=0.01)
    np.testing.assert_array_equal(ops2.mask, ops.mask[:2])
    y5, _ = _pixels(7, x, 0.5, noise_std=0.01)
    np.testing.assert_array_equal(y2, y5[:2])


def test_mask_noise_is_on_observed_pixels_only(digits):
    y, ops = _pixels(1, digits, 0.5, noise_std=0.1)
    assert float(jnp.abs(jnp.where(ops.mask, 0.0, y)).max()) == 0.0
    residual = np.asarray(y - digits)[np.asarray(ops.mask)]
    assert abs(residual.std() - 0.1) < 0.01 and abs(residual.mean()) < 0.01


@pytest.mark.parametrize("acceleration", [4.0, 8.0])
def test_kspace_shapes_dtypes_and_acceleration(phantoms, acceleration):
    y, ops = _mri(0, phantoms, acceleration, 0.08, noise_std=0.0)
    assert isinstance(ops, UndersampledFourier) and ops.mask.shape == (6, 32)
    assert y.shape == (6, 32, 32) and y.dtype == jnp.complex64
    np.testing.assert_array_equal(ops.mask.sum(axis=1), round(32 / acceleration))
    np.testing.assert_array_equal(ops.mask[:, 15:18], True)  # round(32 * 0.08) = 3 centre columns
    assert float(jnp.abs(jnp.where(ops.mask[:, None, :], 0, y)).max()) == 0.0
    assert len({m.tobytes() for m in np.asarray(ops.mask)}) > 1  # per-image masks


def test_kspace_noise_is_complex_gaussian_on_sampled_entries(phantoms):
    clean, ops = _mri(3, phantoms, 4.0, 0.08, noise_std=0.0)
    y, ops_noisy = _mri(3, phantoms, 4.0, 0.08, noise_std=0.1)
    np.testing.assert_array_equal(ops_noisy.mask, ops.mask)
    sampled = np.broadcast_to(np.asarray(ops.mask)[:, None, :], y.shape)
    noise = np.asarray(y - clean)
    assert np.abs(noise[~sampled]).max() == 0.0
    for part in (noise.real[sampled], noise.imag[sampled]):
        assert abs(part.std() - 0.1) < 0.01 and abs(part.mean()) < 0.01


def test_full_sampling_zero_filled_recovers_the_image(phantoms):
    problem = undersampled_mri(0, phantoms, noise_std=0.0, acceleration=1.0)
    full = problem.replace(operators=UndersampledFourier(mask=jnp.ones((6, 32), bool)))
    np.testing.assert_allclose(zero_filled(full), phantoms, atol=1e-5)


def test_vmap_equals_python_loop(digits, phantoms):
    _, masks = _pixels(0, digits[:6], 0.5)
    _, fourier = _mri(0, phantoms, 4.0)
    x = manifold.randman(0, 6)
    _, dense = _projections(0, x)
    for ops, images in ((masks, digits[:6]), (fourier, phantoms), (dense, x)):
        batched = jax.vmap(lambda op, xi: op(xi))(ops, images)
        np.testing.assert_allclose(batched, _loop(ops, images), atol=1e-6)
        np.testing.assert_array_equal(problems.measure(ops, images), batched)


def test_zero_filled_equals_the_adjoint_for_noise_free_data(digits, phantoms):
    masked = pixel_inpainting(0, digits, noise_std=0.0, rate=0.75)
    np.testing.assert_array_equal(zero_filled(masked), masked.y)
    np.testing.assert_array_equal(problems.observation_image(masked), masked.y)
    problem = undersampled_mri(0, phantoms, noise_std=0.0, acceleration=4.0)
    k, fourier = problem.y, problem.operators
    zf = zero_filled(problem)
    np.testing.assert_array_equal(problems.observation_image(problem), zf)
    assert zf.shape == phantoms.shape and zf.dtype == jnp.float32
    struct = jax.ShapeDtypeStruct((32, 32, 1), jnp.float32)
    adjoint = jnp.stack(
        [jax.tree.map(lambda a, i=i: a[i], fourier).adjoint(k[i], struct) for i in range(6)]
    )
    np.testing.assert_allclose(zf, adjoint, atol=1e-6)
    inverse_fft = [
        jnp.fft.fftshift(jnp.fft.ifft2(jnp.fft.ifftshift(k[i]), norm="ortho")).real
        for i in range(6)
    ]
    np.testing.assert_allclose(zf[..., 0], jnp.stack(inverse_fft), atol=1e-5)
    assert float(jnp.abs(zf - phantoms).mean()) > 0.01  # 4x undersampling loses information


def test_linear_projections_wrap_the_manifold():
    x = manifold.randman(0, 256)
    problem = random_projections(4, x, noise_std=0.0)
    y, ops = problem.y, problem.operators
    assert isinstance(ops, DenseMatrix) and ops.matrix.shape == (256, 2, 5) and y.shape == (256, 2)
    np.testing.assert_allclose(jnp.linalg.norm(ops.matrix, axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(y, jnp.einsum("nmd,nd->nm", ops.matrix, x), atol=1e-5)
    zf = zero_filled(problem)
    np.testing.assert_allclose(zf, jnp.einsum("nmd,nm->nd", ops.matrix, y), atol=1e-5)
    noisy, _ = _projections(4, x)
    assert 0.005 < float(jnp.std(noisy - y)) < 0.015


def test_float64_is_kept():
    with jax.enable_x64(True):
        x = jnp.asarray(random_ellipse_phantoms(0, 2, 16), jnp.float64)
        y, _ = _pixels(0, x, 0.5)
        mri = undersampled_mri(0, x, noise_std=0.01, acceleration=4.0, center_fraction=0.125)
        assert y.dtype == jnp.float64 and mri.y.dtype == jnp.complex128
        assert zero_filled(mri).dtype == jnp.float64


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x: _pixels(0, x, 1.0), "rate"),
        (lambda x: _pixels(0, x, -0.1), "rate"),
        (lambda x: _pixels(0, x, 0.5, noise_std=-1.0), "noise_std"),
        (lambda x: _pixels(0, x[0], 0.5), "\\[N, H, W, C\\]"),
        (lambda x: _pixels(0, x.astype(jnp.int32), 0.5), "real floats"),
        (lambda x: _pixels(0, x.at[0, 0, 0, 0].set(jnp.nan), 0.5), "NaN"),
        (lambda x: _pixels(-3, x, 0.5), "seed"),
        (lambda x: _mri(0, jnp.tile(x, 3), 4.0), "\\[N, H, W, 1\\]"),
        (lambda x: _mri(0, x, 0.5), "acceleration"),
        (lambda x: _mri(0, x, 8.0, 0.5), "center_fraction"),
        (lambda x: _mri(0, x, 4.0, noise_std=-0.1), "noise_std"),
        (lambda x: observations.super_resolution(0, x, noise_std=0.0, factor=3), "must divide"),
        (lambda x: observations.deblurring(0, x, noise_std=-1.0), "noise_std"),
        (lambda x: observations.box_inpainting(0, x, noise_std=0.0, box=(6, 6, 4, 4)), "fit"),
        (lambda x: _projections(0, x), "\\[N, D\\]"),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call(jnp.zeros((2, 8, 8, 1)))


# --- the toy's projections (moved from data/manifold.py) ---


def test_projection_matrices_have_unit_rows():
    A = observations.projection_matrices(0, 1000)
    assert A.shape == (1000, 2, 5)
    np.testing.assert_allclose(jnp.linalg.norm(A, axis=-1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(observations.projection_matrices(0, 1000), A)
    assert float(jnp.abs(A.mean())) < 0.05 and 0.35 < float(A.std()) < 0.55  # std ~ 1/sqrt(5)


def test_random_projections_are_projection_plus_noise():
    x = manifold.randman(0, 4096)
    problem = random_projections(2, x, noise_std=0.0)
    A = np.asarray(problem.operators.matrix, np.float64)
    np.testing.assert_array_equal(
        A, observations.projection_matrices(jax.random.split(jax.random.key(2))[0], 4096)
    )
    clean = np.einsum("nmd,nd->nm", A, np.asarray(x, np.float64))
    np.testing.assert_allclose(problem.y, clean, atol=1e-5)
    residual = np.asarray(random_projections(2, x).y) - clean
    assert residual.shape == (4096, 2) and abs(residual.std() - 0.01) < 0.001
    assert abs(residual.mean()) < 0.001


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: observations.projection_matrices(0, 4, obs_dim=0), ">= 1"),
        (lambda: random_projections(0, jnp.zeros((4, 5)), noise_std=-0.1), "noise_std"),
        (lambda: random_projections(0, jnp.zeros((0, 5))), "non-empty"),
    ],
)
def test_bad_projections_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- observe, take, shared operators, check_problem ---


def test_observe_is_the_builder_of_its_kind(digits, phantoms):
    key = jax.random.key(5)
    pairs = [
        (
            observations.observe("pixels", key, digits, noise_std=0.1, rate=0.5),
            pixel_inpainting(key, digits, noise_std=0.1, rate=0.5),
        ),
        (
            observations.observe("mri", 3, phantoms, noise_std=0.1),
            undersampled_mri(3, phantoms, noise_std=0.1),
        ),
        (
            observations.observe("superres", 1, digits, noise_std=0.1, factor=4),
            observations.super_resolution(1, digits, noise_std=0.1, factor=4),
        ),
    ]
    for observed, built in pairs:
        np.testing.assert_array_equal(observed.y, built.y)
        assert observed.truth is not None and observed.noise_var == pytest.approx(0.01)
    np.testing.assert_array_equal(pairs[0][0].ids, np.arange(len(digits)))
    assert set(observations.KINDS) == {"box", "pixels", "superres", "blur", "mri", "projections"}
    assert observations.observation_options("mri") == {"acceleration": 4.0, "center_fraction": 0.08}


def test_superres_with_blur_blurs_then_pools(digits):
    blurred = observations.observe("superres", 1, digits, noise_std=0.0, blur_sigma=1.0)
    plain = observations.observe("superres", 1, digits, noise_std=0.0)
    assert isinstance(blurred.operators, operators.BlurDownsample)
    kernel = operators.gaussian_kernel(5, 1.0)
    expected = jax.vmap(lambda x: operators.BoxDownsample(2)(operators.Blur(kernel)(x)))(digits)
    np.testing.assert_allclose(blurred.y, expected, atol=1e-6)
    assert not np.allclose(blurred.y, plain.y, atol=1e-3)
    assert problems.observation_image(blurred).shape == digits.shape


@pytest.mark.parametrize(
    "kind, options, match",
    [
        ("inpaint", {}, "unknown observation kind 'inpaint'; valid kinds are"),
        ("box", {"rate": 0.5}, "box observations take the options \\['box'\\], not \\['rate'\\]"),
        ("superres", {"factor": 2, "box": (0, 0, 2, 2)}, "not \\['box'\\]"),
        ("superres", {"blur_sigma": -1.0}, "blur_sigma is a standard deviation"),
    ],
)
def test_observe_rejects_unknown_kinds_and_options(digits, kind, options, match):
    with pytest.raises(ValueError, match=match):
        observations.observe(kind, 0, digits, noise_std=0.0, **options)
    with pytest.raises(ValueError, match="unknown observation kind"):
        observations.observation_options("inpaint")


def test_take_slices_every_per_observation_field(digits):
    problem = pixel_inpainting(0, digits[:6], noise_std=0.1, rate=0.5)
    part = problem.take(2, 5)
    assert part.num_observations == 3 and part.shape == problem.shape
    for whole, cut in (
        (problem.y, part.y),
        (problem.operators.mask, part.operators.mask),
        (problem.truth, part.truth),
        (problem.ids, part.ids),
    ):
        np.testing.assert_array_equal(cut, whole[2:5])
    A, y, noise = part.observation(0)
    np.testing.assert_array_equal(A.mask, problem.operators.mask[2])
    np.testing.assert_array_equal(y, problem.y[2])
    assert noise == problem.noise_var
    per_observation = problem.replace(noise_var=jnp.arange(6.0).reshape(6, 1, 1, 1) / 100)
    assert per_observation.per_observation_noise
    cut = per_observation.take(2, 5).noise_var
    np.testing.assert_array_equal(cut, per_observation.noise_var[2:5])
    shared = observations.super_resolution(0, digits[:6], noise_std=0.1, factor=2)
    assert shared.take(1, 3).operators is shared.operators and shared.take(1, 3).y.shape[0] == 2


@pytest.mark.parametrize(
    "build",
    [
        lambda x: observations.super_resolution(0, x, noise_std=0.1, factor=2),
        lambda x: observations.deblurring(0, x, noise_std=0.1, kernel_size=3, blur_sigma=1.0),
    ],
)
def test_shared_operators_sample_like_their_stacked_copies(build):
    """One operator for every observation (no leading axis) gives the samples of the same
    operator broadcast to one per observation; N(0, I) prior, MMPS."""
    from diffssl_jax.posterior.methods import posterior_method
    from diffssl_jax.posterior.sampling import sample_posterior
    from diffssl_jax.sampling import samplers

    x = jax.random.uniform(jax.random.key(1), (3, 4, 4, 1), minval=-1, maxval=1)
    problem = build(x)
    assert problem.shared_operator and problems.check_problem(problem) == 3
    stacked = problem.replace(operators=problem.stacked_operators(), shared_operator=False)
    assert problems.check_problem(stacked) == 3
    np.testing.assert_array_equal(
        problems.measure(stacked.operators, x), jax.vmap(problem.operators)(x)
    )
    kwargs = dict(
        rng=jax.random.key(0),
        sigmas=samplers.sigma_grid("karras", 8, 0.01, 10.0),
        num_per_observation=2,
    )
    method = posterior_method("mmps", cg_maxiter=3)
    shared_samples = sample_posterior(method, standard_normal, problem, **kwargs)
    stacked_samples = sample_posterior(method, standard_normal, stacked, **kwargs)
    assert shared_samples.shape == (3, 2, 4, 4, 1)
    np.testing.assert_allclose(shared_samples, stacked_samples, rtol=1e-5, atol=1e-5)
    # Each observation's samples are its own: the operator is applied to the right y.
    assert not np.allclose(shared_samples[0], shared_samples[1])


def standard_normal(x, sigma):
    """The exact denoiser of `N(0, I)`: `E[x0 | x0 + sigma eps = x] = x / (1 + sigma^2)`."""
    return x / (1.0 + sigma**2)


def _nan_y(problem):
    return problem.replace(y=problem.y.at[1, 0].set(jnp.nan))


@pytest.mark.parametrize(
    "corrupt, match",
    [
        (lambda p: p.replace(y=p.y[:0]), "y must be a non-empty \\[N, ...\\] array"),
        (lambda p: p.replace(y=p.y.astype(jnp.int32)), "y must be a floating or complex array"),
        (lambda p: p.replace(y=p.y[:2]), "operators and y disagree: y has 2 observations"),
        (_nan_y, "y contains 1 NaN or inf value\\(s\\).*drop or repair"),
        (lambda p: p.replace(noise_var=jnp.asarray(jnp.nan)), "noise_var contains 1 NaN"),
        (lambda p: p.replace(noise_var=-1.0), "noise_var must be finite and >= 0"),
        (lambda p: p.replace(shape=(3,)), "operator maps|cannot act"),
        (lambda p: p.replace(truth=p.truth[:, :1]), "truth must be \\[N, \\*shape\\]"),
    ],
)
def test_check_problem_says_what_disagrees(corrupt, match):
    x = manifold.randman(0, 4)
    problem = random_projections(0, x)
    assert problems.check_problem(problem) == 4
    with pytest.raises(ValueError, match=match):
        problems.check_problem(corrupt(problem))
