import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tseg.runtime.data.metrics import ConfusionMatrix
from tseg.runtime.errors import TsegError


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
        a.update(np.zeros(3, np.int64), np.zeros(4, np.int64))


@pytest.mark.parametrize(
    ("truth", "prediction", "message"),
    [
        ([0, 3, 1], [0, 1, 1], r"truth label\(s\) 3 are not classes: need labels in \[0, 3\) \(or the ignore index"),
        ([0, -1, 1], [0, 1, 1], r"truth label\(s\) -1 are not classes"),
        ([0, 254, 7], [0, 1, 1], r"truth label\(s\) 7, 254 are not classes: .* 2 pixel\(s\) are out of range"),
        ([0, 255, 1], [0, 3, 1], r"prediction label\(s\) 3 are not classes: need labels in \[0, 3\),"),
        ([0, 1, 1], [0, -2, 1], r"prediction label\(s\) -2 are not classes"),
    ],
)
def test_labels_that_are_not_classes_are_refused_not_dropped(truth, prediction, message):
    cm = ConfusionMatrix(3, ignore_index=255)
    with pytest.raises(TsegError, match=message):
        cm.update(np.array(truth), np.array(prediction))
    assert cm.matrix.sum() == 0


def test_prediction_at_an_ignored_pixel_must_still_be_a_class():
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(np.array([255], np.uint8), np.array([1], np.uint8))
    assert cm.matrix.sum() == 0
    with pytest.raises(TsegError, match=r"prediction label\(s\) 9"):
        cm.update(np.array([255]), np.array([9]))
    no_ignore = ConfusionMatrix(3)
    with pytest.raises(TsegError, match=r"truth label\(s\) 255 are not classes: need labels in \[0, 3\),"):
        no_ignore.update(np.array([255]), np.array([0]))


def test_non_integer_labels_are_refused_and_empty_ones_are_fine():
    cm = ConfusionMatrix(3)
    for truth, prediction in [(np.array([0.0]), np.array([0])), (np.array([0]), np.array([True]))]:
        with pytest.raises(TsegError, match=r"need integer (truth|prediction) labels, got an array of (float64|bool)"):
            cm.update(truth, prediction)
    cm.update(np.zeros((0, 4), np.int64), np.zeros((0, 4), np.uint8))
    assert cm.matrix.sum() == 0
    with pytest.raises(TsegError, match="num_classes must be an integer >= 1"):
        ConfusionMatrix(0)
    with pytest.raises(TsegError, match="cannot merge a 4-class confusion matrix into a 3-class one"):
        cm.merge(ConfusionMatrix(4))


def _naive(truth, prediction, num_classes, ignore_index):
    matrix = np.zeros((num_classes, num_classes), np.int64)
    for t, p in zip(truth.ravel().tolist(), prediction.ravel().tolist(), strict=True):
        if t != ignore_index:
            matrix[t, p] += 1
    return matrix


@st.composite
def labelled_batches(draw):
    """num_classes, ignore_index, and 1-4 (truth, prediction) batches of random shapes."""
    num_classes = draw(st.integers(1, 6))
    ignore_index = draw(st.sampled_from([None, 255, num_classes, -1]))
    values = list(range(num_classes)) + ([] if ignore_index is None else [ignore_index])
    batches = []
    for _ in range(draw(st.integers(1, 4))):
        shape = draw(st.tuples(st.integers(0, 5), st.integers(1, 7)))
        dtype = draw(st.sampled_from([np.int64, np.int32, np.int16] + ([np.uint8] if ignore_index != -1 else [])))
        size = shape[0] * shape[1]
        truth = np.array(draw(st.lists(st.sampled_from(values), min_size=size, max_size=size)), dtype).reshape(shape)
        classes = st.integers(0, num_classes - 1)
        prediction = np.array(draw(st.lists(classes, min_size=size, max_size=size)), dtype).reshape(shape)
        batches.append((truth, prediction))
    return num_classes, ignore_index, batches


@settings(max_examples=150, deadline=None)
@given(labelled_batches())
def test_confusion_matrix_equals_a_naive_count_and_batches_add_up(case):
    num_classes, ignore_index, batches = case
    per_batch = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    expected = np.zeros((num_classes, num_classes), np.int64)
    for truth, prediction in batches:
        per_batch.update(truth, prediction)
        expected += _naive(truth, prediction, num_classes, ignore_index)
    np.testing.assert_array_equal(per_batch.matrix, expected)
    whole = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    whole.update(
        np.concatenate([t.ravel().astype(np.int64) for t, _ in batches]),
        np.concatenate([p.ravel().astype(np.int64) for _, p in batches]),
    )
    np.testing.assert_array_equal(whole.matrix, per_batch.matrix)
    scores = whole.compute()
    for c in range(num_classes):
        union = expected[c, :].sum() + expected[:, c].sum() - expected[c, c]
        assert np.isnan(scores.iou[c]) if union == 0 else scores.iou[c] == pytest.approx(expected[c, c] / union)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 6), st.lists(st.integers(-300, 300), min_size=1, max_size=30))
def test_any_label_outside_the_classes_is_refused(num_classes, truth):
    cm = ConfusionMatrix(num_classes, ignore_index=255)
    truth = np.array(truth)
    bad = ((truth < 0) | (truth >= num_classes)) & (truth != 255)
    if bad.any():
        with pytest.raises(TsegError, match=r"truth label\(s\) .* are not classes"):
            cm.update(truth, np.zeros_like(truth))
        assert cm.matrix.sum() == 0
    else:
        cm.update(truth, np.zeros_like(truth))
        assert cm.matrix.sum() == (truth != 255).sum()
