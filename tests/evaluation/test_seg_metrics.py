"""Segmentation metrics against hand-computed examples and the reference definitions."""

import numpy as np
import pytest

from diffssl_jax.evaluation import seg_metrics as sm

PRED = np.array([[0, 1, 1], [2, 2, 0]])
TARGET = np.array([[0, 1, 2], [2, 255, 1]])


def test_confusion_matrix_hand_example_skips_ignored_pixels():
    conf = sm.confusion_matrix(PRED, TARGET, num_classes=3, ignore_label=255)
    np.testing.assert_array_equal(conf, [[1, 0, 0], [1, 1, 0], [0, 1, 1]])
    doubled = sm.confusion_matrix(PRED, TARGET, 3) + sm.confusion_matrix(PRED, TARGET, 3)
    assert doubled.sum() == 10


def test_per_class_iou_and_miou_hand_example():
    conf = sm.confusion_matrix(PRED, TARGET, num_classes=3)
    np.testing.assert_allclose(sm.per_class_iou(conf), [1 / 2, 1 / 3, 1 / 2])
    assert sm.miou(conf) == pytest.approx(4 / 9)
    conf4 = sm.confusion_matrix(PRED, TARGET, num_classes=4)
    iou4 = sm.per_class_iou(conf4)
    assert np.isnan(iou4[3])
    assert sm.miou(conf4, classes="all") == pytest.approx(1 / 3)  # absent class counts 0
    assert sm.miou(conf4, classes="present") == pytest.approx(4 / 9)
    with pytest.raises(ValueError, match="classes"):
        sm.miou(conf4, classes="some")


def _ddpm_segmentation_compute_iou(preds, gts, num_classes):
    """Independent re-statement of ddpm-segmentation `compute_iou` (src/utils.py)."""
    ious = []
    for c in range(num_classes):
        inter = sum(((p == c) & (g == c)).sum() for p, g in zip(preds, gts, strict=True))
        union = sum(((p == c) | (g == c)).sum() for p, g in zip(preds, gts, strict=True))
        ious.append(inter / (1e-8 + union))
    return np.mean(ious)


def test_miou_matches_ddpm_segmentation_definition():
    rng = np.random.default_rng(0)
    preds = rng.integers(0, 5, size=(4, 16, 16))
    gts = np.where(rng.random((4, 16, 16)) < 0.7, preds, rng.integers(0, 4, size=(4, 16, 16)))
    conf = sum(sm.confusion_matrix(p, g, num_classes=6) for p, g in zip(preds, gts, strict=True))
    assert sm.miou(conf) == pytest.approx(_ddpm_segmentation_compute_iou(preds, gts, 6))


def test_dice_and_derived_iou():
    assert sm.dice_foreground([[0, 1, 1, 0]], [[0, 1, 0, 1]]) == pytest.approx(0.5)
    assert sm.dice_foreground([[0, 3, 0]], [[0, 1, 0]]) == 1.0  # any label > 0 is foreground
    assert sm.dice_foreground(np.zeros((2, 2), int), np.zeros((2, 2), int)) == 1.0
    assert sm.derived_iou_from_dice(0.5) == pytest.approx(1 / 3)
    np.testing.assert_allclose(sm.derived_iou_from_dice([0.0, 1.0, 0.8]), [0.0, 1.0, 2 / 3])
    # docs/methods.md A.6: 81.01 Dice <-> 68.1 derived IoU.
    assert sm.derived_iou_from_dice(0.8101) == pytest.approx(0.6808, abs=1e-4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sm.derived_iou_from_dice(1.2)


def test_aji_hand_examples():
    target = np.array([[1, 1, 1, 1, 0, 0, 2, 2, 0, 0]])
    pred = np.array([[0, 1, 1, 1, 1, 0, 0, 0, 3, 3]])
    # G1-S1: I=3, U=5; G2 unmatched: U += 2; S3 unpaired: U += 2.
    assert sm.aji(pred, target) == pytest.approx(3 / 9)
    # One prediction paired with two targets is counted twice (Kumar et al. / get_fast_aji).
    assert sm.aji(np.array([[5, 5, 5, 5, 5]]), np.array([[1, 1, 0, 2, 2]])) == pytest.approx(0.4)
    # Highest IoU wins; the losing prediction is unpaired and enlarges the union.
    assert sm.aji(np.array([[1, 1, 1, 2]]), np.array([[1, 1, 1, 1]])) == pytest.approx(3 / 5)
    assert sm.aji(np.zeros((1, 3), int), np.array([[0, 1, 1]])) == 0.0
    assert sm.aji(np.zeros((2, 2), int), np.zeros((2, 2), int)) == 1.0


def test_aji_on_binary_single_instance_maps_is_foreground_iou():
    rng = np.random.default_rng(1)
    for _ in range(5):
        pred = (rng.random((12, 12)) < 0.4).astype(int)
        target = (rng.random((12, 12)) < 0.5).astype(int)
        iou = (pred & target).sum() / (pred | target).sum()
        assert sm.aji_binary(pred, target) == pytest.approx(iou)
        assert sm.aji_binary(pred, target) == pytest.approx(
            sm.derived_iou_from_dice(sm.dice_foreground(pred, target))
        )


def test_label_instances_connectivity():
    binary = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    assert sm.label_instances(binary, connectivity=1).max() == 2
    assert sm.label_instances(binary, connectivity=2).max() == 1
    inst = sm.label_instances(np.array([[1, 1, 0, 1]]))
    np.testing.assert_array_equal(inst, [[1, 1, 0, 2]])
    with pytest.raises(ValueError, match="connectivity"):
        sm.label_instances(binary, connectivity=3)


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="shapes differ"):
        sm.confusion_matrix(np.zeros((2, 3), int), np.zeros((3, 2), int), 2)
    with pytest.raises(ValueError, match="outside"):
        sm.confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="integer"):
        sm.dice_foreground(np.zeros(3), np.zeros(3, int))
    with pytest.raises(ValueError, match="square"):
        sm.per_class_iou(np.zeros((2, 3)))
