"""Classification metric math against values computed by hand with scikit-learn's formulas."""

import numpy as np
import pytest

from keras_bertopt.metrics import (
    classification_metrics,
    confusion_matrix,
    matthews_corrcoef,
    predicted_labels,
)

# Binary: TP=3 (idx 0,1,3), FN=2 (idx 2,9), FP=1 (idx 5), TN=4 (idx 4,6,7,8).
Y_TRUE = [1, 1, 1, 1, 0, 0, 0, 0, 0, 1]
Y_PRED = [1, 1, 0, 1, 0, 1, 0, 0, 0, 0]


def test_binary_metrics_match_hand_computation():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 2)
    np.testing.assert_array_equal(cm, [[4, 1], [2, 3]])
    m = classification_metrics(cm, positive_label=1)
    expected = {
        "accuracy": 7 / 10,
        "precision": 3 / 4,  # TP / (TP + FP)
        "recall": 3 / 5,  # TP / (TP + FN)
        "f1": 2 * 3 / (2 * 3 + 1 + 2),
        # class 0: precision 4/6, recall 4/5, F1 8/11
        "precision_macro": (3 / 4 + 4 / 6) / 2,
        "recall_macro": (3 / 5 + 4 / 5) / 2,
        "f1_macro": (6 / 9 + 8 / 11) / 2,
        "f1_micro": 7 / 10,
        # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))
        "mcc": (3 * 4 - 1 * 2) / np.sqrt(4 * 5 * 5 * 6),
    }
    assert set(m) == set(expected)
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, abs=1e-12), key
    # positive_label=0 swaps the headline numbers to class 0.
    m0 = classification_metrics(cm, positive_label=0)
    assert m0["precision"] == pytest.approx(4 / 6)
    assert m0["recall"] == pytest.approx(4 / 5)
    assert m0["mcc"] == pytest.approx(m["mcc"])


def test_multiclass_and_weighted_metrics():
    # rows true, columns predicted
    cm = np.array([[3, 1, 0], [1, 2, 1], [0, 1, 4]], dtype=float)
    m = classification_metrics(cm)
    assert m["accuracy"] == pytest.approx(9 / 13)
    assert m["precision"] == pytest.approx((3 / 4 + 2 / 4 + 4 / 5) / 3)  # macro for > 2 classes
    assert m["recall_macro"] == pytest.approx((3 / 4 + 2 / 4 + 4 / 5) / 3)
    assert m["f1_micro"] == pytest.approx(9 / 13)
    # sklearn multiclass MCC: (c*s - t.p) / sqrt((s^2 - p.p)(s^2 - t.t)), t = p = [4, 4, 5]
    assert m["mcc"] == pytest.approx((9 * 13 - 57) / np.sqrt((169 - 57) * (169 - 57)))

    weighted = confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2], 3, sample_weight=[2.0, 0.5, 1.0, 3.0])
    np.testing.assert_allclose(weighted, [[2.0, 0.5, 0], [0, 1.0, 0], [0, 0, 3.0]])


def test_degenerate_cases_follow_zero_division_zero():
    cm = confusion_matrix([1, 1, 1], [1, 1, 1], 2)  # only one class present
    m = classification_metrics(cm)
    assert m["accuracy"] == 1.0 and m["precision"] == 1.0 and m["recall"] == 1.0
    assert m["precision_macro"] == pytest.approx(0.5)  # class 0: 0/0 -> 0
    assert matthews_corrcoef(cm) == 0.0  # undefined -> 0, as sklearn


def test_predicted_labels_and_errors():
    np.testing.assert_array_equal(predicted_labels([[0.1, 2.0], [3.0, -1.0]]), [1, 0])
    np.testing.assert_array_equal(predicted_labels([[0.7], [0.2]]), [1, 0])
    np.testing.assert_array_equal(predicted_labels([0.3, -0.2], threshold=0.0), [1, 0])
    with pytest.raises(ValueError, match="y_true.*class ids"):
        confusion_matrix([0, 3], [0, 1], 2)
    with pytest.raises(ValueError, match="same length"):
        confusion_matrix([0, 1], [0], 2)
    with pytest.raises(ValueError, match="positive_label"):
        classification_metrics(np.eye(2), positive_label=2)
    with pytest.raises(ValueError, match="square"):
        classification_metrics(np.ones((2, 3)))
