"""Predict on new text: a shipped classifier file and raw sentences in, labels out.

* `find_preprocessor(path)`: the keras-hub preprocessor a .tflite file needs,
  found the one way every command looks for it (an explicit source, the
  recipe run folder the file sits in, or the vocabulary in the file's MediaPipe
  metadata: a shipped file alone is enough).
* `Predictor(path)`: a .tflite or .keras classifier that maps raw texts (or
  sentence pairs) to labels, label names and probabilities, with interpreters on
  several threads (`workers`) and a cache of repeated inputs (`cache_size`).
* `predict_file(path, input, output)`: a TXT / TSV / CSV / JSON-lines file of
  texts to a JSON-lines file of predictions in input order, streaming (files
  larger than memory work), written atomically.

Example:

```python
from keras_bertopt.predict import Predictor, predict_file

predictor = Predictor("run/export/final_dynamic.tflite", workers=2)
predictor.predict(["a wonderful film", "a dull mess"])["label_names"]
summary = predict_file(predictor, "tickets.txt", "predictions.jsonl")
summary["examples_per_second"], summary["cache_hits"]
```
"""

from __future__ import annotations

import itertools
import json
import os
import time
import warnings
from typing import Any, Callable, Iterable, Iterator, Sequence, Union

import numpy as np

from keras_bertopt.files import atomic_output
from keras_bertopt.text_files import iter_texts

PathLike = Union[str, "os.PathLike[str]"]

#: Texts read, predicted and written per step of `predict_file`.
CHUNK_SIZE = 256


def load_model(path: PathLike) -> Any:
    """A saved `.keras` classifier (every keras_bertopt layer registered), uncompiled.

    Raises:
        ValueError: the file does not load as a Keras model (Keras's first line,
            without colour codes), or holds a model without a text preprocessor.
    """
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"expected a .keras model file, got {path!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model {path!r} does not exist")
    import keras

    from keras_bertopt import pruning, quantization  # noqa: F401  (register custom objects)
    from keras_bertopt.console import plain_text

    try:
        with warnings.catch_warnings():
            # keras-hub tasks compile themselves when built, so the rebuilt model has an
            # optimizer; our files are saved without one (each stage compiles its own).
            warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
            model = keras.saving.load_model(path, compile=False)
    except Exception as err:
        raise ValueError(f"model {path!r} cannot be loaded as a Keras model: "
                         f"{type(err).__name__}: {plain_text(str(err)).split(chr(10))[0]}"
                         ) from None
    if getattr(getattr(model, "preprocessor", None), "tokenizer", None) is None:
        raise ValueError(
            f"model {path!r} holds a {type(model).__name__} without a text preprocessor; "
            "expected a keras-hub BERT classifier saved with its preprocessor (as "
            "`keras-bertopt run` writes <stage>/model.keras)")
    return model


def _run_folder_model(path: str) -> str | None:
    """A recipe file <run>/export/<name>.tflite -> <run>/<stage>/model.keras, if there (the
    stage as the run's state.json records it)."""
    from keras_bertopt.recipe.state import exported_model

    return exported_model(path)


def find_preprocessor(path: PathLike, preprocessor: Any = None,
                      sequence_length: int | None = None) -> Any:
    """The keras-hub preprocessor to run the .tflite file at `path` with.

    Looked for in this order:

    1. `preprocessor`: a preprocessor object, a ``.keras`` model (its
       preprocessor), a Hugging Face checkpoint folder, or ``"tiny"`` (the demo
       vocabulary);
    2. the recipe run folder the file was exported into
       (``<run>/export/<stage>_<mode>.tflite`` -> ``<run>/<stage>/model.keras``, the
       stage read from the run's ``state.json``);
    3. the vocabulary in the file's MediaPipe metadata (``metadata=True``).

    Args:
        path: the .tflite file.
        preprocessor: see 1; None to look at 2 and 3.
        sequence_length: the packing length for checkpoint folders, ``"tiny"``
            and metadata (default: the file's longest length; 128 when dynamic).

    Raises:
        ValueError: nothing found, naming what to pass.
    """
    from keras_bertopt.export.metadata import embedded_files, metadata_preprocessor

    path = os.fspath(path)
    source = preprocessor if preprocessor is not None else _run_folder_model(path)
    if source is None:
        if "vocab.txt" in embedded_files(path):
            return metadata_preprocessor(path, sequence_length)
        raise ValueError(
            f"{path!r} carries no MediaPipe metadata and is not in a recipe's export/ folder: "
            "pass its preprocessor (a .keras model, a Hugging Face checkpoint folder or 'tiny')"
        )
    if not isinstance(source, (str, os.PathLike)):
        return source
    source = os.fspath(source)
    if source.endswith(".keras"):
        return load_model(source).preprocessor
    import keras_hub

    from keras_bertopt import models

    length = sequence_length or 128
    if source == "tiny":
        return models.build_classifier(models.TinyConfig(), 2, length).preprocessor
    source = models.check_checkpoint_dir(source)
    return keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        source, sequence_length=length)


def _softmax(logits: np.ndarray) -> np.ndarray:
    from keras_bertopt.export.classifier import softmax

    return softmax(logits.astype(np.float64)).astype(np.float32)


class Predictor:
    """Raw texts -> labels, label names and probabilities with a .tflite or .keras classifier.

    Args:
        model: a .tflite file (from `to_tflite`) or a .keras classifier with
            its preprocessor.
        preprocessor: for .tflite files, see `find_preprocessor`.
        sequence_length: see `find_preprocessor`.
        workers: .tflite interpreters run side by side on threads (None: one
            per core); a .keras model uses TensorFlow's own threads.
        cache_size: outputs kept for repeated inputs (0: none), keyed on token ids.
        batch_size: texts per call on dynamic-batch files and .keras models.
        labels: class names (default: the file's metadata labels, else "0", "1", ...).

    Example:

    ```python
    out = Predictor("model.tflite", preprocessor="model.keras").predict(["great fun"])
    out["labels"], out["label_names"], out["probabilities"]
    ```
    """

    def __init__(self, model: PathLike, *, preprocessor: Any = None,
                 sequence_length: int | None = None, workers: int | None = None,
                 cache_size: int | None = None, batch_size: int = 32,
                 labels: Sequence[str] | None = None) -> None:
        from keras_bertopt.export.classifier import DEFAULT_CACHE_SIZE, TFLiteClassifier
        from keras_bertopt.export.pool import check_workers

        self.path = os.fspath(model)
        if not self.path.endswith((".tflite", ".keras")):
            raise ValueError(f"`model` must be a .tflite or .keras file, got {self.path!r}")
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"`model` {self.path!r} does not exist")
        check_workers(workers)
        cache_size = DEFAULT_CACHE_SIZE if cache_size is None else cache_size
        if self.path.endswith(".tflite"):
            from keras_bertopt.export.metadata import metadata_labels

            self.runner = TFLiteClassifier(
                self.path, find_preprocessor(self.path, preprocessor, sequence_length),
                num_threads=1, workers=workers, batch_size=batch_size, cache_size=cache_size)
            self.cache = self.runner.cache
            self.num_classes = self.runner.num_classes
            labels = labels if labels is not None else metadata_labels(self.path)
        else:
            if preprocessor is not None:
                raise ValueError("`preprocessor` is for .tflite files; a .keras model brings "
                                 f"its own, got preprocessor={preprocessor!r}")
            self._keras_model(cache_size, batch_size)
        self.label_names = self._check_labels(labels)

    def _keras_model(self, cache_size: int, batch_size: int) -> None:
        from keras_bertopt.export.cache import PredictionCache

        self.runner = None
        self.model = load_model(self.path)
        if getattr(self.model, "preprocessor", None) is None:
            raise ValueError(f"{self.path!r} has no preprocessor: save the keras-hub task "
                             "with its preprocessor to predict on raw text")
        self.cache = PredictionCache(cache_size)
        self.batch_size = batch_size
        self.num_classes = int(self.model.output_shape[-1])

    def _check_labels(self, labels: Sequence[str] | None) -> list[str]:
        if labels is None:
            return [str(i) for i in range(self.num_classes)]
        labels = [str(x) for x in labels]
        if len(labels) != self.num_classes:
            raise ValueError(f"`labels` must name {self.num_classes} classes, got {labels!r}")
        return labels

    def predict(self, texts: Any) -> dict[str, Any]:
        """Classify texts (a list of strings, or a ``(first, second)`` pair of lists).

        Returns:
            ``{"labels": (n,) int64, "label_names": [str], "probabilities":
            (n, classes) float32, "cache_hits": int, "cache_misses": int}``.
        """
        if self.runner is not None:
            out = self.runner.predict(texts)
            probabilities = out["probabilities"]
            hits, misses = out["cache_hits"], out["cache_misses"]
        else:
            probabilities, hits, misses = self._keras_probabilities(texts)
        labels = np.argmax(probabilities, axis=-1)
        return {"labels": labels, "label_names": [self.label_names[i] for i in labels],
                "probabilities": probabilities, "cache_hits": hits, "cache_misses": misses}

    def _keras_probabilities(self, texts: Any) -> tuple[np.ndarray, int, int]:
        from keras_bertopt.export.cache import cached_outputs
        from keras_bertopt.export.inputs import preprocess_texts
        from keras_bertopt.export.verify import keras_logits

        hits, misses = self.cache.hits, self.cache.misses
        feeds = preprocess_texts(self.model.preprocessor, texts, batch_size=self.batch_size)
        logits = cached_outputs(self.cache, feeds,
                                lambda rows: keras_logits(self.model, rows, self.batch_size))
        return _softmax(logits), self.cache.hits - hits, self.cache.misses - misses

    def close(self) -> None:
        """Stop the interpreter threads."""
        if self.runner is not None:
            self.runner.pool.close()

    def __repr__(self) -> str:
        return f"Predictor({self.path!r}, cache_size={self.cache.max_size})"


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _batch(items: Sequence[Any]) -> Any:
    """Texts as `predict` takes them: a list, or a (first, second) tuple of lists for pairs."""
    if isinstance(items[0], tuple):
        return [a for a, _ in items], [b for _, b in items]
    return list(items)


def _records(lines: Sequence[int], out: dict[str, Any]) -> Iterator[str]:
    for i, line in enumerate(lines):
        yield json.dumps({
            "line": int(line),
            "label": int(out["labels"][i]),
            "label_name": out["label_names"][i],
            "probabilities": [round(float(p), 6) for p in out["probabilities"][i]],
        }) + "\n"


def predict_file(
    model: Union[PathLike, Predictor],
    input: PathLike,
    output: PathLike,
    *,
    text_columns: Any = "sentence",
    format: str | None = None,
    chunk_size: int = CHUNK_SIZE,
    progress: Callable[[int, float], None] | None = None,
    **predictor_kwargs: Any,
) -> dict[str, Any]:
    """Predict every text of a file and write one JSON line per text, in input order.

    Each output line is ``{"line": input line number, "label": int,
    "label_name": str, "probabilities": [float, ...]}``. The input streams in
    chunks of `chunk_size`; the output is written to a temporary name and
    renamed when every line is done (a failure leaves no partial file).

    Args:
        model: a `Predictor`, or a .tflite / .keras path (then
            `predictor_kwargs` go to `Predictor`).
        input: a .txt (one text per line) / .tsv / .csv / .jsonl file
            (`keras_bertopt.text_files`).
        output: the .jsonl file to write.
        text_columns: the text column, or two for sentence pairs (not .txt).
        format: the input format; default: from its extension.
        chunk_size: texts per step.
        progress: called as ``progress(texts done, seconds)`` after each step.

    Returns:
        ``{"examples", "seconds", "examples_per_second", "cache_hits",
        "cache_misses", "output"}``.

    Raises:
        FileNotFoundError / ValueError: bad arguments, or an unreadable input
            line (naming the file and line); errors in the first chunk come
            before the model is loaded.
    """
    output = os.fspath(output)
    if not output.endswith(".jsonl"):
        raise ValueError(f"`output` must be a .jsonl file, got {output!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"`chunk_size` must be an integer >= 1, got {chunk_size!r}")
    chunks = _chunks(iter_texts(input, text_columns, format=format), chunk_size)
    if isinstance(model, Predictor) and predictor_kwargs:
        raise ValueError(f"{sorted(predictor_kwargs)} apply when `model` is a path; "
                         "`model` is already a Predictor")
    first = next(chunks)  # bad columns or first lines fail here, before any model work
    predictor = model if isinstance(model, Predictor) else Predictor(model, **predictor_kwargs)
    start, done, hits, misses = time.perf_counter(), 0, 0, 0
    try:
        with atomic_output(output) as tmp, open(tmp, "w", encoding="utf-8") as f:
            for chunk in itertools.chain([first], chunks):
                lines = [line for line, _ in chunk]
                out = predictor.predict(_batch([text for _, text in chunk]))
                f.writelines(_records(lines, out))
                done, hits, misses = (done + len(chunk), hits + out["cache_hits"],
                                      misses + out["cache_misses"])
                if progress is not None:
                    progress(done, time.perf_counter() - start)
    finally:
        if predictor is not model:
            predictor.close()
    seconds = time.perf_counter() - start
    return {"examples": done, "seconds": seconds,
            "examples_per_second": done / seconds if seconds > 0 else float("nan"),
            "cache_hits": hits, "cache_misses": misses, "output": output}
