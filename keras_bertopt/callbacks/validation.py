"""`ValidationMetrics`: accuracy, precision, recall, F1, MCC and a confusion matrix."""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import keras
import numpy as np

from keras_bertopt.callbacks._summary import ScalarWriter
from keras_bertopt.metrics import (
    classification_metrics,
    confusion_matrix,
    predicted_labels,
)
from keras_bertopt.padding import concatenate_padded


def _is_tf_dataset(data: Any) -> bool:
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover - the package requires TensorFlow
        return False
    return isinstance(data, tf.data.Dataset)


def _to_numpy(value: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(value))


def plot_confusion_matrix(
    matrix: Any, path: str, class_names: Sequence[str] | None = None, title: str = ""
) -> str:
    """Save a confusion-matrix heat map as PNG (matplotlib, Agg backend); returns `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_bertopt.files import atomic_output

    matrix = np.asarray(matrix)
    n = matrix.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * n, 1.0 + 0.6 * n), dpi=100)
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    peak = matrix.max() if matrix.size else 0
    for i in range(n):
        for j in range(n):
            value = matrix[i, j]
            text = f"{int(value)}" if float(value).is_integer() else f"{value:.2f}"
            color = "white" if peak and value > peak / 2 else "black"
            ax.text(j, i, text, ha="center", va="center", color=color)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


@keras.saving.register_keras_serializable(package="keras_bertopt")
class ValidationMetrics(keras.callbacks.Callback):
    """At epoch end, predicts on `data` and logs classification metrics.

    Keys added to `logs` (with the default ``prefix="val_"``): ``val_accuracy``,
    ``val_precision``, ``val_recall``, ``val_f1`` (binary: of
    `positive_label`; more classes: macro average), ``val_precision_macro``,
    ``val_recall_macro``, ``val_f1_macro``, ``val_f1_micro`` (equals accuracy
    for single-label data) and ``val_mcc`` (Matthews correlation, the CoLA
    metric). Formulas are scikit-learn's with ``zero_division=0``. Put this
    callback before `EarlyStopping` / `ModelCheckpoint` in the list so they see
    the keys. The last confusion matrix (rows true, columns predicted) is
    `self.confusion_matrix`; each epoch's is in `self.history`.

    Example:

    ```python
    import keras, keras_bertopt as kb

    model = kb.models.build_classifier(kb.models.TinyConfig(), 2, 32)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    metrics = kb.callbacks.ValidationMetrics(
        kb.data.demo_dataset("validation"), output_dir="runs/demo", plot=True)
    model.fit(kb.data.demo_dataset("train"), epochs=3, callbacks=[
        metrics,
        keras.callbacks.EarlyStopping(monitor="val_f1", mode="max", patience=1),
        keras.callbacks.ModelCheckpoint("runs/demo/best.keras", monitor="val_f1",
                                        mode="max", save_best_only=True),
    ])
    ```

    Args:
        data: what `fit(validation_data=...)` accepts: a `tf.data.Dataset` of
            ``(x, y)`` or ``(x, y, sample_weight)`` batches, or an ``(x, y)`` /
            ``(x, y, sample_weight)`` tuple of arrays or lists (raw strings for a
            task with a preprocessor). Not part of `get_config`.
        num_classes: number of classes (default: from the model's output width;
            2 for a single-score output).
        positive_label: class whose precision/recall/F1 are the headline numbers
            for binary problems.
        threshold: decision threshold for a single-score (n, 1) output (0.5 for
            probabilities; 0.0 for logits).
        batch_size: prediction batch size (a dataset's batches are read once
            into memory, then predicted with `model.predict`).
        prefix: prefix of the log keys.
        output_dir: if set, writes ``confusion_matrix.json`` there after each
            evaluation (and ``confusion_matrix.png`` with ``plot=True``).
        plot: also write the PNG heat map (needs `output_dir`).
        class_names: labels for the JSON and the plot.
        every_n_epochs: evaluate every N epochs (other epochs log nothing new).
        log_dir: optional TensorBoard directory.
    """

    def __init__(
        self,
        data: Any,
        *,
        num_classes: int | None = None,
        positive_label: int = 1,
        threshold: float = 0.5,
        batch_size: int = 32,
        prefix: str = "val_",
        output_dir: str | os.PathLike[str] | None = None,
        plot: bool = False,
        class_names: Sequence[str] | None = None,
        every_n_epochs: int = 1,
        log_dir: str | None = None,
    ) -> None:
        super().__init__()
        if not _is_tf_dataset(data):
            if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
                raise ValueError(
                    "`data` must be a tf.data.Dataset of (x, y) batches or an (x, y) / "
                    f"(x, y, sample_weight) tuple, got {type(data).__name__}"
                )
            x0, y0 = data[0], data[1]

            def sized(v: Any) -> bool:
                return isinstance(v, dict) or hasattr(v, "shape") or hasattr(v, "__len__")

            if not (sized(x0) and sized(y0)) or isinstance(y0, (str, bytes)):
                raise ValueError(
                    "`data` as a tuple must be (x, y) or (x, y, sample_weight) with x and y "
                    f"arrays or lists; got element types {type(x0).__name__}, "
                    f"{type(y0).__name__}"
                )
            if (
                not isinstance(x0, dict)
                and hasattr(x0, "__len__")
                and hasattr(y0, "__len__")
                and len(x0) != len(y0)
            ):
                raise ValueError(
                    f"`data` x and y must have the same length, got {len(data[0])} and "
                    f"{len(data[1])}"
                )
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 2):
            raise ValueError(f"`num_classes` must be an integer >= 2, got {num_classes!r}")
        if not isinstance(positive_label, int) or positive_label < 0:
            raise ValueError(f"`positive_label` must be a class id >= 0, got {positive_label!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}")
        if not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ValueError(f"`every_n_epochs` must be a positive integer, got {every_n_epochs!r}")
        if plot and output_dir is None:
            raise ValueError("`plot=True` needs `output_dir` to write confusion_matrix.png into")
        if output_dir is not None and not isinstance(output_dir, (str, os.PathLike)):
            raise ValueError(f"`output_dir` must be a directory path, got {output_dir!r}")
        self.data = data
        self.num_classes = num_classes
        self.positive_label = positive_label
        self.threshold = float(threshold)
        self.batch_size = batch_size
        self.prefix = prefix
        self.output_dir = None if output_dir is None else os.fspath(output_dir)
        self.plot = bool(plot)
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.every_n_epochs = every_n_epochs
        self._writer = ScalarWriter(log_dir)
        self.log_dir = self._writer.log_dir
        self._cached: tuple[Any, np.ndarray, np.ndarray | None] | None = None
        self.confusion_matrix: np.ndarray | None = None
        self.metrics: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []

    # ---- evaluation ---------------------------------------------------------------------------
    def _materialize(self) -> tuple[Any, np.ndarray, np.ndarray | None]:
        """(x, y, w) of `data` as arrays, read once (one pass keeps them aligned)."""
        if self._cached is not None:
            return self._cached
        if _is_tf_dataset(self.data):
            xs, ys, ws = [], [], []
            for batch in self.data:
                x, y, w = keras.utils.unpack_x_y_sample_weight(batch)
                if y is None:
                    raise ValueError("`data` batches must carry labels: (x, y) or (x, y, w)")
                xs.append(keras.tree.map_structure(_to_numpy, x))
                ys.append(_to_numpy(y).reshape(-1))
                ws.append(None if w is None else _to_numpy(w).reshape(-1))
            if not xs:
                raise ValueError("`data` is empty: nothing to evaluate")
            has_w = [w is not None for w in ws]
            if any(has_w) and not all(has_w):
                raise ValueError("`data` has sample weights in some batches only")
            x = concatenate_padded(xs)  # batches may be padded to different widths
            y = np.concatenate(ys)
            w = np.concatenate(ws) if all(has_w) else None
        else:
            x = self.data[0]
            y = np.asarray(self.data[1]).reshape(-1)
            w = np.asarray(self.data[2]).reshape(-1) if len(self.data) == 3 else None
        self._cached = (x, y, w)
        return self._cached

    def _predict(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(outputs, labels, weights) over `data`.

        A dataset is read once and kept in memory (validation sets are small), so
        predictions and labels stay aligned even if the dataset reshuffles, and
        `model.predict` does the work (it distributes batches correctly under a
        `tf.distribute` strategy, which `predict_on_batch` does not).
        """
        x, y, w = self._materialize()
        outputs = _to_numpy(self.model.predict(x, batch_size=self.batch_size, verbose=0))
        if outputs.shape[0] != y.shape[0]:
            raise ValueError(
                f"the model returned {outputs.shape[0]} predictions for {y.shape[0]} labels"
            )
        return outputs, y, w

    def evaluate(self) -> dict[str, float]:
        """Predict on `data` now; update `confusion_matrix` and `metrics`; return the metrics."""
        outputs, labels, weights = self._predict()
        num_classes = self.num_classes
        if num_classes is None:
            num_classes = outputs.shape[1] if outputs.ndim == 2 and outputs.shape[1] > 1 else 2
        predictions = predicted_labels(outputs, self.threshold)
        matrix = confusion_matrix(labels, predictions, num_classes, weights)
        self.confusion_matrix = matrix
        self.metrics = classification_metrics(matrix, self.positive_label)
        return self.metrics

    def _save(self, epoch: int) -> None:
        if self.output_dir is None:
            return
        from keras_bertopt.files import write_text

        names = self.class_names or [str(i) for i in range(self.confusion_matrix.shape[0])]
        matrix = self.confusion_matrix
        as_ints = np.all(np.equal(np.mod(matrix, 1), 0))
        record = {
            "epoch": epoch,
            "labels": names,
            "rows": "true",
            "columns": "predicted",
            "matrix": (matrix.astype(np.int64) if as_ints else matrix).tolist(),
            "metrics": self.metrics,
        }
        write_text(
            os.path.join(self.output_dir, "confusion_matrix.json"),
            json.dumps(record, indent=2) + "\n",
        )
        if self.plot:
            plot_confusion_matrix(
                matrix,
                os.path.join(self.output_dir, "confusion_matrix.png"),
                names,
                title=f"epoch {epoch + 1}",
            )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if (epoch + 1) % self.every_n_epochs:
            return
        metrics = self.evaluate()
        values = {self.prefix + k: v for k, v in metrics.items()}
        if logs is not None:
            logs.update(values)
        self.history.append(
            {"epoch": epoch, **metrics, "confusion_matrix": self.confusion_matrix.tolist()}
        )
        self._writer.write(values, epoch, "epoch_")
        self._save(epoch)

    def on_train_end(self, logs: dict | None = None) -> None:
        self._writer.close()

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments except `data` (pass it again to `from_config`)."""
        return {
            "num_classes": self.num_classes,
            "positive_label": self.positive_label,
            "threshold": self.threshold,
            "batch_size": self.batch_size,
            "prefix": self.prefix,
            "output_dir": self.output_dir,
            "plot": self.plot,
            "class_names": self.class_names,
            "every_n_epochs": self.every_n_epochs,
            "log_dir": self.log_dir,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], data: Any = None) -> ValidationMetrics:
        config = dict(config)
        data = config.pop("data", data)
        if data is None:
            raise ValueError(
                "ValidationMetrics.from_config needs the validation `data` "
                "(it is not part of the config): from_config(config, data=...)"
            )
        return cls(data, **config)
