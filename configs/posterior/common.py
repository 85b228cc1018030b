"""The shared keys of every posterior-sampling problem config (`launch/sample.py --problem`).

A problem file (`configs/posterior/digits_inpaint.py`, ...) calls `get_problem_config()`,
overrides what differs and exposes `get_config(arg)` with a `tiny` variant. The runner
(`evaluation.posterior.run_problem`) passes `operator.kind` and the keys of `operator` that
kind takes (`posterior.observation_options`) to `posterior.observe`, and `method.name` with
the group `method.<name>` (that method's own options, e.g. `method.mmps.cg_maxiter`) to
`posterior.posterior_method`.
"""

import ml_collections


def get_problem_config() -> ml_collections.ConfigDict:
    """Every key a problem config has, with its meaning."""
    config = ml_collections.ConfigDict()
    config.name = "problem"  # output files are eval/posterior_<name>.{npz,json}
    config.seed = 0  # masks, observation noise and sampler noise
    config.noise_std = 0.01  # observation noise std (per real/imaginary part for MRI)
    config.num_samples = 4  # posterior samples per observation
    # MMPS only: replay the sampling with every CG solve recorded and write, per sigma, how
    # often the safeguard fired, CG's curvature and the correction sizes (same samples)
    config.record_solves = False

    config.data = ml_collections.ConfigDict()
    config.data.dataset = "digits"  # digits | phantoms | shepp_logan (held-out images)
    config.data.split = "test"  # split of digits / phantoms
    config.data.num_images = 8  # observations (ground-truth images)
    config.data.start = 0  # index of the first image in the split

    config.operator = ml_collections.ConfigDict()
    config.operator.kind = "box"  # box | pixels | superres | blur | mri
    config.operator.box = (4, 4, 8, 8)  # missing box (top, left, height, width), pixels
    config.operator.rate = 0.5  # fraction of pixels removed (pixels)
    config.operator.factor = 2  # average-pooling factor (superres)
    config.operator.acceleration = 4.0  # MRI undersampling factor (mri)
    config.operator.center_fraction = 0.08  # fully sampled central columns (mri)
    config.operator.kernel_size = 5  # Gaussian blur kernel width in pixels (blur)
    config.operator.blur_sigma = 1.0  # Gaussian blur std in pixels (blur; superres if > 0)

    config.method = ml_collections.ConfigDict()
    # mmps | dps | dps_published | pigdm | tmpd | diffpir: reads method.<name>
    config.method.name = "mmps"
    config.method.mmps = ml_collections.ConfigDict()
    config.method.mmps.cg_maxiter = 1  # conjugate-gradient iterations (vjps per step)
    config.method.mmps.cg_rtol = 0.0  # early stop at this relative CG residual (0: never)
    config.method.mmps.cg_max_residual_growth = 10.0  # residual_cap's cap (docs/methods.md E.6)
    config.method.mmps.safeguard = "trust_region"  # | residual_cap | none (a control)
    config.method.mmps.trust_radius = 3.0  # trust_region: cut at r sigma sqrt(d / (1 + s^2))
    config.method.mmps.symmetrise = False  # (J + J^T) / 2 for J^T: k jvps + k vjps
    config.method.dps = ml_collections.ConfigDict()
    config.method.dps.zeta = 1.0  # step size (on the residual norm, per example)
    config.method.dps_published = ml_collections.ConfigDict()  # Chung et al. Alg. 1 (ancestral)
    config.method.dps_published.zeta = 1.0  # step zeta / ||y - A x0_hat|| on ||.||^2, in x
    config.method.pigdm = ml_collections.ConfigDict()
    config.method.pigdm.data_var = 1.0  # prior variance in r^2 = s^2 v / (s^2 + v)
    config.method.tmpd = ml_collections.ConfigDict()
    config.method.tmpd.rel_floor = 1e-3  # floor of the row sums, relative to their mean
    config.method.diffpir = ml_collections.ConfigDict()
    config.method.diffpir.lambda_ = 1.0  # proximal weight (rho = lambda_ s_y^2 / s^2)

    config.sampling = ml_collections.ConfigDict()
    config.sampling.sampler = "ddpm_ancestral"  # ddpm_ancestral | ddim | edm_heun | ...
    config.sampling.num_steps = 100  # sampler steps (one posterior-denoiser call each)
    config.sampling.grid = "karras"  # sigma grid: karras | loglinear
    config.sampling.sigma_min = 0.002  # smallest VE noise level
    config.sampling.sigma_max = 80.0  # largest VE noise level
    return config


def shrink_for_tests(config: ml_collections.ConfigDict) -> None:
    """The `tiny` variant: two images, two samples, four steps."""
    config.data.num_images = 2
    config.num_samples = 2
    config.sampling.num_steps = 4
