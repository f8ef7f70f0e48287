"""Classification metrics from a confusion matrix (pure NumPy, no Keras).

The one place these numbers are computed: `callbacks.ValidationMetrics` (during
`fit`), the recipe's evaluate stage and ``keras-bertopt evaluate`` all use it.
The formulas are scikit-learn's (`precision_recall_fscore_support` with
``zero_division=0`` and `matthews_corrcoef`), so the numbers agree with
`sklearn.metrics` for the same labels, predictions and sample weights.

Example:

```python
m = keras_bertopt.metrics.label_metrics(labels=[1, 0, 1], predictions=[1, 1, 1], num_classes=2)
m["accuracy"], m["f1"], m["confusion_matrix"]
```
"""

from __future__ import annotations

from typing import Any

import numpy as np


def predicted_labels(outputs: Any, threshold: float = 0.5) -> np.ndarray:
    """Class ids from model outputs: argmax over the last axis, or a threshold on one score.

    Args:
        outputs: logits or probabilities of shape (n, num_classes), or scores of
            shape (n,) / (n, 1) for a single-output binary model.
        threshold: the decision threshold for single scores (0.5 for
            probabilities; pass 0.0 for logits).
    """
    outputs = np.asarray(outputs)
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        return np.argmax(outputs, axis=1)
    return (outputs.reshape(-1) > threshold).astype(np.int64)


def confusion_matrix(
    y_true: Any, y_pred: Any, num_classes: int, sample_weight: Any = None
) -> np.ndarray:
    """Counts (or summed weights) with rows = true class, columns = predicted class.

    Raises:
        ValueError: shapes differ, or a label is outside ``[0, num_classes)``.
    """
    y_true = np.asarray(y_true).reshape(-1).astype(np.int64)
    y_pred = np.asarray(y_pred).reshape(-1).astype(np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"`y_true` and `y_pred` must have the same length, got {y_true.shape[0]} "
            f"and {y_pred.shape[0]}"
        )
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"`{name}` must hold class ids in [0, {num_classes}); got values "
                f"from {values.min()} to {values.max()}"
            )
    weights = None if sample_weight is None else np.asarray(sample_weight, np.float64).reshape(-1)
    if weights is not None and weights.shape != y_true.shape:
        raise ValueError(
            f"`sample_weight` must have one weight per example ({y_true.shape[0]}), "
            f"got {weights.shape[0]}"
        )
    matrix = np.zeros((num_classes, num_classes), dtype=np.float64)
    np.add.at(matrix, (y_true, y_pred), 1.0 if weights is None else weights)
    return matrix


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = np.asarray(numerator, np.float64)
    denominator = np.asarray(denominator, np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def per_class(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support (true count) of a confusion matrix."""
    matrix = np.asarray(matrix, np.float64)
    tp = np.diag(matrix)
    predicted = matrix.sum(axis=0)
    actual = matrix.sum(axis=1)
    precision = _safe_divide(tp, predicted)
    recall = _safe_divide(tp, actual)
    f1 = _safe_divide(2 * tp, predicted + actual)  # = 2PR/(P+R), 0 when both are 0
    return {"precision": precision, "recall": recall, "f1": f1, "support": actual}


def matthews_corrcoef(matrix: np.ndarray) -> float:
    """Matthews correlation (multi-class R_K statistic; sklearn's formula); 0 if undefined."""
    matrix = np.asarray(matrix, np.float64)
    t_sum = matrix.sum(axis=1)
    p_sum = matrix.sum(axis=0)
    correct = np.trace(matrix)
    total = matrix.sum()
    cov_ytyp = correct * total - np.dot(t_sum, p_sum)
    cov_ypyp = total**2 - np.dot(p_sum, p_sum)
    cov_ytyt = total**2 - np.dot(t_sum, t_sum)
    if cov_ypyp * cov_ytyt == 0:
        return 0.0
    return float(cov_ytyp / np.sqrt(cov_ytyt * cov_ypyp))


def classification_metrics(matrix: np.ndarray, positive_label: int = 1) -> dict[str, float]:
    """All the numbers `ValidationMetrics` logs, from one confusion matrix.

    Keys: ``accuracy``; ``precision``, ``recall``, ``f1`` (for two classes: of
    `positive_label`, sklearn's ``average="binary"``; for more: the macro
    average); ``precision_macro``, ``recall_macro``, ``f1_macro`` (unweighted
    mean over classes); ``f1_micro`` (from pooled counts; for single-label
    problems it equals accuracy); ``mcc`` (Matthews correlation).
    """
    matrix = np.asarray(matrix, np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 2:
        raise ValueError(
            f"`matrix` must be a square confusion matrix of >= 2 classes, got {matrix.shape}"
        )
    n = matrix.shape[0]
    if not 0 <= positive_label < n:
        raise ValueError(f"`positive_label` must be in [0, {n}), got {positive_label!r}")
    stats = per_class(matrix)
    total = matrix.sum()
    accuracy = float(np.trace(matrix) / total) if total else 0.0
    macro = {k: float(np.mean(stats[k])) for k in ("precision", "recall", "f1")}
    tp = np.trace(matrix)
    micro_f1 = float(_safe_divide(2 * tp, matrix.sum(axis=0).sum() + matrix.sum(axis=1).sum()))
    if n == 2:
        headline = {k: float(stats[k][positive_label]) for k in ("precision", "recall", "f1")}
    else:
        headline = dict(macro)
    return {
        "accuracy": accuracy,
        **headline,
        "precision_macro": macro["precision"],
        "recall_macro": macro["recall"],
        "f1_macro": macro["f1"],
        "f1_micro": micro_f1,
        "mcc": matthews_corrcoef(matrix),
    }


def label_metrics(labels: Any, predictions: Any, num_classes: int) -> dict[str, Any]:
    """`classification_metrics` of integer labels and predictions, for reports (JSON-able).

    Adds ``examples`` (the count) and ``confusion_matrix`` (nested lists of
    ints, rows = true class) to the keys of `classification_metrics`.

    Raises:
        ValueError: `labels` and `predictions` are empty or of different lengths,
            or hold ids outside ``[0, num_classes)``.
    """
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    p = np.asarray(predictions, dtype=np.int64).reshape(-1)
    if y.shape != p.shape or y.size == 0:
        raise ValueError(
            f"`labels` and `predictions` must be non-empty and of equal length, "
            f"got {y.size} and {p.size}"
        )
    matrix = confusion_matrix(y, p, num_classes)
    return {
        "examples": int(y.size),
        **classification_metrics(matrix),
        "confusion_matrix": matrix.astype(np.int64).tolist(),
    }
