import numpy as np
import pytest

from tseg.runtime.metrics import ConfusionMatrix


def test_confusion_matrix_iou_and_nanmean_over_present_classes():
    truth = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 0]])
    cm = ConfusionMatrix(4)
    cm.update(truth, pred)
    scores = cm.compute()
    # class 0: tp 3, fp 1, fn 1 -> 3/5; class 1: tp 3, fp 1, fn 1 -> 3/5; classes 2, 3 absent
    assert scores.iou[:2] == pytest.approx((0.6, 0.6))
    assert np.isnan(scores.iou[2]) and np.isnan(scores.iou[3])
    assert scores.miou == pytest.approx(0.6)
    assert scores.pixel_accuracy == pytest.approx(6 / 8)


def test_confusion_matrix_ignore_index_and_merge():
    a = ConfusionMatrix(3, ignore_index=255)
    a.update(np.array([0, 255, 2]), np.array([0, 1, 1]))
    b = ConfusionMatrix(3, ignore_index=255)
    b.update(np.array([2]), np.array([2]))
    a.merge(b)
    assert a.matrix.sum() == 3
    assert a.compute().iou[2] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shapes differ"):
        a.update(np.zeros(3), np.zeros(4))
