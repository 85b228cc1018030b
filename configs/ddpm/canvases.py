"""DDPM on the 32x32 canvases of 2-4 bundled digits (`data.canvases`): the segmentation
task that needs spatial features (docs/methods.md F).

    .venv/bin/python -m launch.train --config=configs/ddpm/canvases.py --workdir=runs/ddpm_canvases
    .venv/bin/python -m launch.evaluate --workdir=runs/ddpm_canvases \
        --config.eval.seg_num_labelled=50 --out=runs/ddpm_canvases/eval/results_50.json

Everything else is `configs/ddpm/digits.py` (the same U-Net, optimiser and step count): at
32x32 its channel_mult (1, 2, 2) works at 32, 16 and 8 pixels, and the default feature blocks
(the two finest resolutions) are the 32x32 and 16x16 decoder blocks. The evaluation is the
canvas segmentation only (no linear probe: a canvas has no single class), with
`eval.seg_num_labelled` = 10 labelled train canvases (50 with the override above), scored on
the `eval.split` canvases ('test'; 'validation' for choices made on validation).

Variants (`--config=configs/ddpm/canvases.py:tiny`): `tiny` is the digits file's `tiny`.
"""

from diffssl_jax.configs.base import on_canvases
from diffssl_jax.configs.ddpm import digits


def get_config(arg: str | None = None):
    return on_canvases(digits, arg, known=("tiny",))
