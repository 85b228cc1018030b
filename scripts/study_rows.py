"""The rows of `compare_representations.py` and their configs (no flags: tests import it)."""

import importlib

# Pretraining steps at batch 64: 64,000 digits, or 32,000 canvases of 4x the pixels each.
STEPS = {"digits": 1000, "canvases": 500, "roadmap": 1000, "long": 2000}
TS = (0.0, 0.05, 0.25)
# task -> row -> (label, config name with variants, extra t candidates)
ROWS = {
    "digits": {
        "mdm": ("MDM (SSIM loss)", "mdm/digits", ()),
        "mdm_fixed_t": ("MDM, fixed t = 0.75", "mdm/digits:fixed_t", (0.75,)),
        "ddpm": ("DDPM", "ddpm/digits", ()),
        "mae": ("MAE", "mae/digits", ()),
        "ldae": ("l-DAE", "ldae/digits", ()),
    },
    "canvases": {
        "mdm": ("MDM (SSIM loss)", "mdm/canvases", ()),
        "ddpm": ("DDPM", "ddpm/canvases", ()),
        "mae": ("MAE", "mae/canvases", ()),
        "ldae": ("l-DAE", "ldae/canvases", ()),
    },
    "long": {  # the two leading rows of the digits table at twice the budget
        "ddpm": ("DDPM, 2x budget", "ddpm/digits", ()),
        "mae": ("MAE, 2x budget", "mae/digits", ()),
    },
    "roadmap": {
        "eps": ("patch-wise PCA, predict eps", "ldae/digits:eps", ()),
        "clean_latent": ("predict clean latent", "ldae/digits:clean_latent", ()),
        "no_scaling": ("remove input scaling", "ldae/digits:no_scaling", ()),
        "ldae": ("l-DAE (Eq. 4 weights)", "ldae/digits", ()),
        "single": ("l-DAE, one noise level", "ldae/digits:ldae,single", ()),
        "eps_pixel": ("eps, pixel tokenizer (d = D = 16)", "ldae/digits:eps,pixel", ()),
        **{f"eps_d{d}": (f"eps, d = {d}", f"ldae/digits:eps,d{d}", ()) for d in (1, 2, 8, 16)},
    },
}
SEED_0_ONLY = ()  # rows run at pretraining seed 0 only (none now)
SEEDED_TASKS = ("digits", "canvases")  # tasks whose rows run at every `--seeds`; others seed 0
BASELINES = {"random_init": "random-init U-Net (DDPM config)", "raw_pixels": "raw pixels"}
# Segmentation: the sweep's smaller ensembles, then the protocol of docs/methods.md A.6.
SEG_SWEEP = {"seg_num_models": 3, "seg_seeds": 2}
SEG_SWEEP_EPOCHS = 30
SEG_LABELLED = {"digits": (20,), "long": (20,), "canvases": (10, 50)}


def row_config(task: str, row: str, seed: int):
    """The row's config: its shipped config at `STEPS` steps and pretraining `seed` (the
    baselines: the DDPM config of the task's data)."""
    name, _, variants = ROWS[task][row if row in ROWS[task] else "ddpm"][1].partition(":")
    module = importlib.import_module("diffssl_jax.configs." + name.replace("/", "."))
    config = module.get_config(variants or None)
    config.train.num_steps = STEPS[task]
    config.train.checkpoint_every_steps = min(500, STEPS[task])
    config.train.sample_every_steps = 0
    config.seed = seed
    return config
