"""Stage ``evaluate``: every Keras model and every TFLite file on the held-out splits."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from keras_bertopt.files import gzip_size
from keras_bertopt.metrics import label_metrics

if TYPE_CHECKING:
    from keras_bertopt.recipe.runner import Recipe


def _evaluate_models(recipe: Recipe, keras_labels: dict[tuple[str, str], Any]) -> list[dict]:
    import numpy as np

    from keras_bertopt import pruning

    num_classes = recipe.config.model.num_classes
    out = []
    for stage in recipe.model_stages_done():
        model = recipe.load_model(stage)
        path = recipe.path(stage, "model.keras")
        entry: dict[str, Any] = {
            "stage": stage, "size_bytes": os.path.getsize(path), "gzip_bytes": gzip_size(path),
            "sparsity": pruning.sparsity_report(model).sparsity, "metrics": {},
        }
        for split in recipe.config.evaluate.splits:
            texts, labels = recipe.data.eval_examples(split)
            ds = recipe.data.dataset(texts, labels, shuffle=False, repeat=False)
            logits = model.predict(ds.map(lambda x, y: x), verbose=0)
            predicted = np.argmax(np.asarray(logits), axis=-1)
            keras_labels[(stage, split)] = predicted
            entry["metrics"][split] = label_metrics(labels, predicted, num_classes)
        out.append(entry)
    return out


def _evaluate_exports(recipe: Recipe, keras_labels: dict[tuple[str, str], Any]) -> list[dict]:
    import numpy as np

    from keras_bertopt import export

    num_classes = recipe.config.model.num_classes
    out = []
    preprocessor = None
    for item in recipe.state["stages"].get("export", {}).get("files", []):
        if preprocessor is None:
            preprocessor = recipe.load_model(item["stage"]).preprocessor
        runner = export.TFLiteClassifier(recipe.path(item["file"]), preprocessor)
        entry = dict(item)
        entry["metrics"] = {}
        entry["agreement_with_keras"] = {}
        for split in recipe.config.evaluate.splits:
            texts, labels = recipe.data.eval_examples(split)
            start = time.perf_counter()
            predicted = np.asarray(runner.predict(texts)["labels"]).reshape(-1)
            seconds = time.perf_counter() - start
            metrics = label_metrics(labels, predicted, num_classes)
            metrics["seconds"] = seconds
            entry["metrics"][split] = metrics
            ref = keras_labels.get((item["stage"], split))
            if ref is not None:
                entry["agreement_with_keras"][split] = float(np.mean(ref == predicted))
        out.append(entry)
    return out


def run(recipe: Recipe) -> dict[str, Any]:
    """Accuracy / F1 / confusion matrix per model and file, and TFLite-vs-Keras label agreement."""
    keras_labels: dict[tuple[str, str], Any] = {}
    models = _evaluate_models(recipe, keras_labels)
    exports = _evaluate_exports(recipe, keras_labels)
    return {"models": models, "exports": exports,
            "splits": list(recipe.config.evaluate.splits)}
