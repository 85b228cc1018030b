"""Evaluation of trained workdirs: features, probes, segmentation, digit tasks, samples.

`load_features(workdir)` reads frozen features; `evaluate_representation(workdir)` runs the
linear probe and label-efficient segmentation of docs/methods.md F and writes
`workdir/eval/results.json` (what `launch/evaluate.py` calls).
"""

from diffssl_jax.evaluation.digit_tasks import digit_attributes, digit_segmentation_labels
from diffssl_jax.evaluation.features import (
    FeatureExtractor,
    load_features,
    random_init_features,
    raw_pixel_features,
)
from diffssl_jax.evaluation.representation import evaluate_representation

__all__ = [
    "FeatureExtractor",
    "digit_attributes",
    "digit_segmentation_labels",
    "evaluate_representation",
    "load_features",
    "random_init_features",
    "raw_pixel_features",
]
