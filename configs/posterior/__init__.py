"""Inverse-problem configs for `launch/sample.py --problem=...` (a prior comes from --workdir).

Every key of the `posterior` problem, its meaning and unit, is in `get_problem_base`.
"""

import ml_collections


def get_problem_base() -> ml_collections.ConfigDict:
    """The problem keys shared by every inverse problem (methods.md E.2-E.3, F)."""
    p = ml_collections.ConfigDict()
    p.kind = "inpaint_box"  # inpaint_box | inpaint_random | superres | mri
    p.box = 6  # inpaint_box: side of the centred missing square, pixels
    p.rate = 0.5  # inpaint_random: fraction of pixels removed per image
    p.factor = 2  # superres: box-averaging factor
    p.acceleration = 4.0  # mri: undersampling factor (columns kept = W / acceleration)
    p.center_fraction = 0.08  # mri: fully sampled central columns, fraction of W
    p.noise_std = 0.01  # observation noise std (per real/imaginary part for MRI)
    p.method = "mmps"  # mmps | dps | pigdm | tmpd | diffpir
    p.cg_maxiter = 1  # mmps: CG iterations (vjps) per denoiser call; the paper's default
    p.zeta = 1.0  # dps: step size on the normalised gradient (Chung et al. 2023)
    p.lambda_ = 1.0  # diffpir: data-proximal weight (Zhu et al. 2023)
    p.sampler = "ddpm_ancestral"  # reverse process (sampling.samplers)
    p.num_steps = 100  # reverse-process steps
    p.num_observations = 8  # held-out test images observed and solved
    p.num_samples = 4  # posterior samples per observation (their mean is scored)
    p.ground_truth = "test"  # "test": the prior data's test split; "shepp_logan" (MRI)
    p.seed = 0  # observations use key(seed), samples fold_in(key(seed), 1)
    return p


def shrink_problem_for_tests(p: ml_collections.ConfigDict) -> None:
    """The `tiny` variant: seconds on 2 CPU cores."""
    p.num_steps = 3
    p.num_observations = 2
    p.num_samples = 2
