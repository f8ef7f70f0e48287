"""Measured latency of candidate files, paired against the float32 fixed-length file.

Each file is exported as it would ship (`to_tflite`'s real-length layout, the
target device's quantization) and timed the way an app calls it: one
validation sentence per call, batch 1, one interpreter thread, each sentence at
its real length. All files are loaded at once and every sentence runs through
every file back to back, the order rotating per sentence, so a change of load on
a shared machine hits every file alike. A file's ratio is the median, over
sentences and rounds, of its time divided by the reference file's time on the
same sentence.

Example:

```python
reference = export_reference(model, "ref.tflite")
files = {"L3": export_candidate(small, "l3.tflite", "dynamic")}
timing = time_files(files, reference, model.preprocessor, texts)
timing["L3"]["ratio"], timing["L3"]["median_ms"]
```
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any, Mapping, Sequence

import numpy as np

REFERENCE = "float32_fixed_length"


def export_reference(model: Any, path: str) -> str:
    """The float32 file at the preprocessor's fixed length (what ratios are relative to)."""
    from keras_bertopt.export import to_tflite

    to_tflite(model, path, "none", length_buckets=None, verify=False, latency_runs=0)
    return path


def export_candidate(model: Any, path: str, quantization: str,
                     representative_data: Any = None) -> str:
    """`model` as it ships: real-length layout, `quantization` ("dynamic", "int8", ...)."""
    from keras_bertopt.export import to_tflite

    to_tflite(model, path, quantization, representative_data=representative_data,
              verify=False, latency_runs=0)
    return path


def paired_times(runners: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                 rounds: int) -> dict[str, np.ndarray]:
    """ms per (round, sentence) for each runner, every sentence through every runner.

    `runners` are `TFLiteClassifier`s; `arrays` the preprocessed sentences (int32
    token_ids / segment_ids / padding_mask rows). Runners go back to back per
    sentence, the order rotated by one each sentence and reversed every other round.
    """
    keys = list(runners)
    n = len(arrays["token_ids"])
    rows = [{k: v[i:i + 1] for k, v in arrays.items()} for i in range(n)]
    for runner in runners.values():  # warm every bucket plan up
        for row in rows[:3]:
            runner.predict_logits(row)
    times = {key: np.zeros((rounds, n)) for key in keys}
    for r in range(rounds):
        order = keys if r % 2 == 0 else keys[::-1]
        for i, row in enumerate(rows):
            shift = i % len(keys)
            for key in order[shift:] + order[:shift]:
                start = time.perf_counter()
                runners[key].predict_logits(row)
                times[key][r, i] = (time.perf_counter() - start) * 1000.0
    return times


def time_files(
    files: Mapping[str, str],
    reference: str,
    preprocessor: Any,
    texts: Sequence[str],
    *,
    rounds: int = 1,
    max_sentences: int = 200,
) -> dict[str, dict[str, float]]:
    """Time `files` paired with the `reference` file on `texts` (batch 1, one thread).

    Args:
        files: name -> .tflite path.
        reference: the float32 fixed-length file (`export_reference`).
        preprocessor: the model's preprocessor (its `sequence_length` is the
            reference file's fixed length).
        texts: validation sentences (the first `max_sentences` are used).
        rounds: passes over the sentences.
        max_sentences: most sentences timed.

    Returns:
        name -> ``{"median_ms", "mean_ms", "ratio"}``, plus the reference under
        `REFERENCE` (ratio 1.0).

    Raises:
        ValueError: no texts, `rounds` < 1, or a name equal to `REFERENCE`.
    """
    from keras_bertopt.export import TFLiteClassifier, preprocess_texts

    texts = list(texts)[:max_sentences]
    if not texts:
        raise ValueError("`texts` must hold at least one validation sentence to time")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"`rounds` must be an integer >= 1, got {rounds!r}")
    if REFERENCE in files:
        raise ValueError(f"`files` must not use the reserved name {REFERENCE!r}")
    paths = {REFERENCE: reference, **files}
    missing = [p for p in paths.values() if not os.path.isfile(p)]
    if missing:
        raise ValueError(f"`files`: no file at {missing[0]!r}")
    runners = {k: TFLiteClassifier(p, preprocessor, num_threads=1) for k, p in paths.items()}
    times = paired_times(runners, preprocess_texts(preprocessor, texts), rounds)
    base = times[REFERENCE]
    return {key: {"median_ms": round(float(np.median(t)), 4),
                  "mean_ms": round(float(statistics.fmean(t.ravel())), 4),
                  "ratio": round(float(np.median(t / base)), 4)}
            for key, t in times.items()}
