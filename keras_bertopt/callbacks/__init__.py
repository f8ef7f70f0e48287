"""Metrics callbacks for `model.fit`: throughput, learning rate, sparsity, validation metrics.

Each is a small `keras.callbacks.Callback` that writes its numbers into `logs`
(so `History`, `CSVLogger`, `EarlyStopping` and `ModelCheckpoint` see them) and,
given `log_dir`, to TensorBoard:

* `Throughput`: ``examples_per_second``, ``tokens_per_second`` (real tokens
  from `padding_mask`; see `Throughput.count_tokens`).
* `LearningRateLogger`: ``learning_rate`` actually applied (and per group).
* `SparsityLogger`: ``sparsity`` of variables selected by path.
* `ValidationMetrics(data)`: ``val_accuracy``, ``val_precision``,
  ``val_recall``, ``val_f1``, ``val_mcc`` (+ ``_macro``/``_micro``) and the
  confusion matrix.
"""

from keras_bertopt.callbacks.learning_rate import LearningRateLogger, applied_learning_rates
from keras_bertopt.callbacks.sparsity import SparsityLogger, sparsity_of
from keras_bertopt.callbacks.throughput import Throughput
from keras_bertopt.callbacks.validation import ValidationMetrics, plot_confusion_matrix
from keras_bertopt.metrics import (
    classification_metrics,
    confusion_matrix,
    matthews_corrcoef,
    predicted_labels,
)

__all__ = [
    "LearningRateLogger",
    "SparsityLogger",
    "Throughput",
    "ValidationMetrics",
    "applied_learning_rates",
    "classification_metrics",
    "confusion_matrix",
    "matthews_corrcoef",
    "plot_confusion_matrix",
    "predicted_labels",
    "sparsity_of",
]
