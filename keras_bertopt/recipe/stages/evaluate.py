"""Stage ``evaluate``: every Keras model and every TFLite file on the held-out splits.

`keras_labels` and `tflite_labels` are also what ``keras-bertopt evaluate`` runs.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from keras_bertopt.files import gzip_size
from keras_bertopt.metrics import label_metrics
from keras_bertopt.recipe.sections import StageSection, rule

if TYPE_CHECKING:
    from keras_bertopt.recipe.context import StageContext


class EvaluateConfig(StageSection):
    """Held-out evaluation of every Keras stage and every TFLite file on `splits`."""

    splits: list[Literal["train", "validation", "test"]] = Field(
        default_factory=lambda: ["validation"])

    @model_validator(mode="after")
    def _splits(self) -> EvaluateConfig:
        rule(not self.enabled or bool(self.splits), "splits", "at least one split",
             self.splits)
        rule(len(set(self.splits)) == len(self.splits), "splits", "no repeated splits",
             self.splits)
        return self


SECTION = EvaluateConfig


def check(config: Any) -> None:
    """Every split to evaluate is in the data."""
    ev = config.evaluate
    for split in ev.splits if ev.enabled else []:
        if not config.data.has_split(split):
            raise ValueError(
                f"config key 'evaluate.splits' asks for {split!r} but 'data.{split}' is not set")


def keras_labels(model: Any, texts: Any, batch_size: int = 64) -> Any:
    """Predicted labels of a Keras classifier (with its preprocessor) on raw `texts`."""
    import numpy as np

    from keras_bertopt import data

    ds = data.from_examples(texts, [0] * _count(texts), batch_size).map(lambda x, y: x)
    return np.argmax(np.asarray(model.predict(ds, verbose=0)), axis=-1)


def _count(texts: Any) -> int:
    return len(texts[0]) if isinstance(texts, tuple) else len(texts)


def tflite_labels(classifier: Any, texts: Any) -> Any:
    """Predicted labels of a `keras_bertopt.export.TFLiteClassifier` on raw `texts`."""
    import numpy as np

    return np.asarray(classifier.predict(texts)["labels"]).reshape(-1)


def _evaluate_models(ctx: StageContext, predictions: dict[tuple[str, str], Any]) -> list[dict]:
    from keras_bertopt import pruning

    out = []
    for stage in ctx.trained:
        model = ctx.models.load(stage)
        path = ctx.paths.model(stage)
        entry: dict[str, Any] = {
            "stage": stage, "size_bytes": os.path.getsize(path), "gzip_bytes": gzip_size(path),
            "sparsity": pruning.sparsity_report(model).sparsity, "metrics": {},
        }
        for split in ctx.section.splits:
            texts, labels = ctx.data.eval_examples(split)
            predicted = keras_labels(model, texts, ctx.data.batch_size)
            predictions[(stage, split)] = predicted
            entry["metrics"][split] = label_metrics(labels, predicted,
                                                    ctx.config.model.num_classes)
        out.append(entry)
    return out


def _evaluate_exports(ctx: StageContext, predictions: dict[tuple[str, str], Any]) -> list[dict]:
    import numpy as np

    from keras_bertopt import export

    out = []
    preprocessor = None
    for item in ctx.results.get("export", {}).get("files", []):
        if preprocessor is None:
            preprocessor = ctx.models.load(item["stage"]).preprocessor
        entry = dict(item, metrics={}, agreement_with_keras={})
        classifier = export.TFLiteClassifier(ctx.paths(item["file"]), preprocessor)
        for split in ctx.section.splits:
            texts, labels = ctx.data.eval_examples(split)
            start = time.perf_counter()
            predicted = tflite_labels(classifier, texts)
            metrics = label_metrics(labels, predicted, ctx.config.model.num_classes)
            metrics["seconds"] = time.perf_counter() - start
            entry["metrics"][split] = metrics
            ref = predictions.get((item["stage"], split))
            if ref is not None:
                entry["agreement_with_keras"][split] = float(np.mean(ref == predicted))
        out.append(entry)
    return out


def run(ctx: StageContext) -> dict[str, Any]:
    """Accuracy / F1 / confusion matrix per model and file, and TFLite-vs-Keras label agreement."""
    predictions: dict[tuple[str, str], Any] = {}
    models = _evaluate_models(ctx, predictions)
    exports = _evaluate_exports(ctx, predictions)
    return {"models": models, "exports": exports, "splits": list(ctx.section.splits)}
