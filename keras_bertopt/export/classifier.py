"""`TFLiteClassifier`: raw strings -> keras-hub preprocessor -> an exported file -> labels.

Example:

```python
runner = keras_bertopt.export.TFLiteClassifier("model.tflite", model.preprocessor)
runner.predict(["a wonderful film"])   # {"probabilities": (1, 2), "labels": (1,), ...}
runner.evaluate(keras_bertopt.data.demo_dataset("validation"))["accuracy"]
```
"""

from __future__ import annotations

import os
import time
from typing import Any, Mapping, Sequence, Union

import numpy as np

from keras_bertopt.export.cache import PredictionCache, cached_outputs, cached_text_outputs
from keras_bertopt.export.flatbuffer import embedding_rows, read_tflite_bytes
from keras_bertopt.export.inputs import INPUT_NAMES, labelled_examples, preprocess_texts
from keras_bertopt.export.interpreter import Signatures, make_interpreter
from keras_bertopt.export.pool import InterpreterPool, check_workers
from keras_bertopt.texts import text_columns

PathLike = Union[str, "os.PathLike[str]"]

#: Output rows `TFLiteClassifier` keeps for repeated inputs by default.
DEFAULT_CACHE_SIZE = 10_000


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax (NumPy, stable)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def _check_vocabulary(data: bytes, preprocessor: Any, path: str) -> None:
    """A preprocessor whose token ids can exceed every embedding table of the file belongs to
    another model (LiteRT would fail with 'gather index out of bounds', or read garbage)."""
    size = getattr(getattr(preprocessor, "tokenizer", None), "vocabulary_size", None)
    if size is None:
        return
    size, rows = int(size()), embedding_rows(data)
    if rows > 2 and size > rows:
        raise ValueError(
            f"TFLite file {path!r} embeds at most {rows} tokens, but the preprocessor's "
            f"vocabulary has {size}: the preprocessor belongs to another model; pass the one "
            "of the model this file was exported from")


class TFLiteClassifier:
    """Classify raw strings with an exported TFLite file and a keras-hub preprocessor.

    The preprocessor (e.g. ``model.preprocessor`` of the exported keras-hub
    task) runs on the host in TensorFlow; its int32 ids go to the file. Each
    sentence runs at the length it needs: a dynamic-length file at the
    sentence's own token count, a bucketed file in the shortest bucket that
    holds it, a fixed-length file at its one length. Never longer than the
    preprocessor's `sequence_length` (longer sentences are truncated by the
    preprocessor, as in Keras). Batch-1 files run one sentence per call,
    dynamic-batch files `batch_size` sentences of similar length per call.
    With ``workers > 1`` that many interpreters run side by side on threads
    (`keras_bertopt.export.pool.InterpreterPool`). Outputs of repeated inputs
    come from a cache keyed on their token ids
    (`keras_bertopt.export.cache.PredictionCache`): texts that tokenize alike
    run once; `cache_hits` / `cache_misses` count them.

    Args:
        path: a file written by `keras_bertopt.export.to_tflite`.
        preprocessor: a keras-hub text-classifier preprocessor; for a
            fixed-length file its `sequence_length` must equal the file's, for
            a bucketed file not exceed the longest bucket.
        num_threads: threads inside each interpreter (None: the runtime's default).
        batch_size: sentences per call for dynamic-batch files.
        workers: interpreters run side by side on threads (None: one per core).
        cache_size: output rows kept for repeated inputs (0: no cache).

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: `path` is not a TFLite file, its inputs are not int32
            token_ids/segment_ids/padding_mask, or the preprocessor's sequence
            length does not fit the file.

    Example:

    ```python
    runner = TFLiteClassifier("model.tflite", model.preprocessor)
    out = runner.predict(["a wonderful film", "a dull mess"])
    out["labels"], out["probabilities"]
    ```
    """

    def __init__(
        self,
        path: PathLike,
        preprocessor: Any,
        *,
        num_threads: int | None = None,
        batch_size: int = 32,
        workers: int | None = 1,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.path = os.fspath(path)
        _check_vocabulary(read_tflite_bytes(self.path), preprocessor, self.path)
        if preprocessor is None or not callable(preprocessor):
            raise ValueError(
                "`preprocessor` must be a keras-hub text-classifier preprocessor (e.g. "
                f"model.preprocessor), got {type(preprocessor).__name__}"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}")
        workers = check_workers(workers)
        #: The cache of repeated inputs (`PredictionCache`; size 0: off).
        self.cache = PredictionCache(cache_size)
        where = f"TFLite file {self.path!r}"
        try:
            self.interpreter = make_interpreter(self.path, num_threads)
        except (ValueError, RuntimeError) as error:
            raise ValueError(f"{where} cannot be loaded by LiteRT: {error}") from error
        self.signatures = Signatures.load(self.interpreter, where)
        #: The interpreters that run the file (`InterpreterPool`, `workers` of them).
        self.pool = InterpreterPool(self.path, workers, num_threads=num_threads,
                                    first=self.signatures)
        #: The file's batch size (None: dynamic batch).
        self.file_batch_size = self.signatures.batch_size
        #: "dynamic", "fixed" or "buckets" (see `keras_bertopt.export.interpreter`).
        self.layout = self.signatures.layout
        #: The longest input a call gets (the preprocessor's packing length).
        self.sequence_length = self._check_length(preprocessor, where)
        first = self.signatures.entries[0]
        shape = first.runner.get_output_details()[first.output].get("shape_signature")
        #: Number of classes (the file's output width).
        self.num_classes = int(shape[-1]) if shape is not None and len(shape) else 0
        self.preprocessor = preprocessor
        self.batch_size = batch_size
        self.num_threads = num_threads

    def _check_length(self, preprocessor: Any, where: str) -> int:
        length = getattr(preprocessor, "sequence_length", None)
        lengths = self.signatures.lengths
        if self.layout == "fixed" and length is not None and int(length) != lengths[0]:
            raise ValueError(
                f"{where} takes sequences of length {lengths[0]} but `preprocessor` packs to "
                f"{length}: pass a preprocessor built with sequence_length={lengths[0]}"
            )
        if self.layout == "buckets" and length is not None and int(length) > max(lengths):
            raise ValueError(
                f"{where} has length buckets {lengths} but `preprocessor` packs to {length}: "
                f"pass a preprocessor built with sequence_length <= {max(lengths)}"
            )
        if length is None:
            if self.layout == "dynamic":
                raise ValueError(
                    f"{where} has a dynamic length: `preprocessor` must have a "
                    "`sequence_length` (the longest input to run)"
                )
            return max(lengths)
        return int(length)

    # ------------------------------------------------------------------ inference
    def encode(self, texts: Any) -> dict[str, np.ndarray]:
        """int32 token_ids / segment_ids / padding_mask of `texts` from the preprocessor."""
        return preprocess_texts(self.preprocessor, texts, batch_size=max(self.batch_size, 32),
                                sequence_length=self.sequence_length)

    def predict_logits(self, inputs: Mapping[str, Any]) -> np.ndarray:
        """The file's outputs on int32 `{token_ids, segment_ids, padding_mask}` arrays.

        Each row runs at its real length (the sum of its padding_mask) where
        the file allows it; rows must be `sequence_length` wide at most. Rows
        the cache holds are not run again.
        """
        missing = [k for k in INPUT_NAMES if k not in inputs]
        if missing:
            raise ValueError(f"`inputs` lacks {missing}; expected keys {list(INPUT_NAMES)}")
        feeds = {k: np.asarray(inputs[k]).astype(np.int32) for k in INPUT_NAMES}
        fixed = self.layout == "fixed"
        bad = [k for k, v in feeds.items() if v.ndim != 2 or (
            v.shape[1] != self.sequence_length if fixed else v.shape[1] > self.sequence_length)]
        if bad:
            expected = "" if fixed else "at most "
            raise ValueError(
                f"`inputs` {bad} must have shape [batch, {expected}{self.sequence_length}], got "
                f"{[feeds[k].shape for k in bad]}"
            )
        if len(feeds["token_ids"]) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        return cached_outputs(self.cache, feeds,
                              lambda rows: self.pool.run_logits(rows, self.batch_size))

    @property
    def cache_hits(self) -> int:
        """Inputs answered from the cache so far (or by an identical input in the same call)."""
        return self.cache.hits

    @property
    def cache_misses(self) -> int:
        """Inputs the file ran on so far."""
        return self.cache.misses

    def predict(self, texts: Any) -> dict[str, np.ndarray]:
        """Classify raw strings.

        Args:
            texts: a string, a list/array of strings, or a pair of equal-length
                lists for sentence-pair tasks.

        Returns:
            ``{"probabilities": (n, classes) float32, "labels": (n,) int64,
            "logits": (n, classes), "cache_hits": int, "cache_misses": int}``
            (the counts of this call). For a file exported with
            ``metadata=True`` (probabilities out) "probabilities" is the
            file's output and "logits" its log; otherwise "probabilities" is
            the softmax of the logits.
        """
        hits, misses = self.cache.hits, self.cache.misses
        out = self._outputs(texts).astype(np.float64)
        if self.outputs_probabilities:
            probabilities = out
            logits = np.log(np.maximum(out, np.finfo(np.float64).tiny))
        else:
            probabilities, logits = softmax(out), out
        return {
            "probabilities": probabilities.astype(np.float32),
            "labels": np.argmax(out, axis=-1),
            "logits": logits.astype(np.float32),
            "cache_hits": self.cache.hits - hits,
            "cache_misses": self.cache.misses - misses,
        }

    def _outputs(self, texts: Any) -> np.ndarray:
        """The file's outputs on raw texts; with the cache on, exact repeats skip the tokenizer."""
        if isinstance(texts, (str, bytes)) or len(texts) == 0:
            return self.predict_logits(self.encode(texts))

        def run(columns: list[list[str]]) -> tuple[dict, np.ndarray]:
            feeds = self.encode(columns[0] if len(columns) == 1 else tuple(columns))
            return feeds, self.predict_logits(feeds)

        columns = text_columns(texts)
        if self.cache.max_size == 0:
            return run(columns)[1]
        return cached_text_outputs(self.cache, columns, run)

    @property
    def outputs_probabilities(self) -> bool:
        """True when the file's output is softmax probabilities (output name 'probabilities')."""
        return self.signatures.entries[0].output == "probabilities"

    def evaluate(self, data: Any, labels: Sequence[int] | None = None) -> dict[str, Any]:
        """Accuracy of the file on labelled raw text.

        Args:
            data: a `tf.data.Dataset` of (text, label) batches (as
                `keras_bertopt.data` returns), an ``(texts, labels)`` tuple, or
                a list of texts with `labels` given. Sentence pairs: batches of
                ``((first, second), label)``, or ``(firsts, seconds)`` for texts.
            labels: the labels when `data` is a list of texts.

        Returns:
            ``{"accuracy", "num_examples", "seconds", "examples_per_second",
            "labels" (predicted)}``.
        """
        texts, truth = labelled_examples(data, labels)
        start = time.perf_counter()
        predicted = self.predict(texts)["labels"]
        seconds = time.perf_counter() - start
        truth = np.asarray(truth).reshape(-1)
        return {
            "accuracy": float(np.mean(predicted == truth)) if len(truth) else float("nan"),
            "num_examples": int(len(truth)),
            "seconds": seconds,
            "examples_per_second": len(truth) / seconds if seconds > 0 else float("nan"),
            "labels": predicted,
        }

    def __repr__(self) -> str:
        batch = self.file_batch_size if self.file_batch_size else "dynamic"
        return (f"TFLiteClassifier({self.path!r}, {self.layout} length, "
                f"sequence_length={self.sequence_length}, batch={batch}, "
                f"workers={self.pool.workers}, cache_size={self.cache.max_size})")


def evaluate(path: PathLike, preprocessor: Any, data: Any,
             labels: Sequence[int] | None = None, **kwargs: Any) -> dict[str, Any]:
    """`TFLiteClassifier(path, preprocessor, **kwargs).evaluate(data, labels)`."""
    return TFLiteClassifier(path, preprocessor, **kwargs).evaluate(data, labels)
