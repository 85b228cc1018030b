"""MDM on the 32x32 canvases of 2-4 bundled digits (`data.canvases`): the segmentation
task that needs spatial features (docs/methods.md F).

    .venv/bin/python -m launch.train --config=configs/mdm/canvases.py --workdir=runs/mdm_canvases

Everything else is `configs/mdm/digits.py` (the same network, optimiser and step count). The
variants are the digits file's (`tiny`, `mse`, `fixed_t`): the same patch size 4, so a
canvas has 64 mask patches (t = 0.05 masks 4 of them). The evaluation is the canvas
segmentation only (no linear probe: a canvas has no single class), with
`eval.seg_num_labelled` = 10 labelled train canvases (`--config.eval.seg_num_labelled=50`
for the other budget), scored on the `eval.split` canvases ('test'; 'validation' for choices
made on validation).
"""

from diffssl_jax.configs.base import on_canvases
from diffssl_jax.configs.mdm import digits


def get_config(arg: str | None = None):
    return on_canvases(digits, arg, known=("tiny", "mse", "fixed_t"))
