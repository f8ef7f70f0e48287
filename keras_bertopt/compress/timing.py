"""Measured latency of candidate files, paired against the float32 fixed-length file.

Each file is exported as it would ship (`to_tflite`'s real-length layout, the
target device's quantization) and timed the way an app calls it: one
validation sentence per call, batch 1, one interpreter thread, each sentence at
its real length, in a fresh process that holds only the LiteRT interpreters
(`time_in_fresh_process`). All files are loaded at once and every sentence runs through
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

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Mapping, Sequence

import numpy as np

REFERENCE = "float32_fixed_length"


def export_reference(model: Any, path: str, sequence_length: int | None = None) -> str:
    """The float32 file at one fixed length (what ratios are relative to).

    `sequence_length`: that length, e.g. 128 for the fixed-128 file MediaPipe's
    text tasks ran before; None: the preprocessor's `sequence_length`.
    """
    from keras_bertopt.export import to_tflite

    to_tflite(model, path, "none", length_buckets=None, sequence_length=sequence_length,
              verify=False, latency_runs=0)
    return path


def export_candidate(model: Any, path: str, quantization: str,
                     representative_data: Any = None) -> str:
    """`model` as it ships: real-length layout, `quantization` ("dynamic", "int8", ...)."""
    from keras_bertopt.export import to_tflite

    to_tflite(model, path, quantization, representative_data=representative_data,
              verify=False, latency_runs=0)
    return path


def paired_times(runners: Mapping[str, Any], arrays: Mapping[str, Mapping[str, np.ndarray]],
                 rounds: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """ms per (round, sentence) and the predicted label per sentence for each runner.

    `runners` are `TFLiteClassifier`s (anything with `predict_logits(row)`);
    `arrays[name]` the sentences preprocessed for runner `name` (int32 token_ids /
    segment_ids / padding_mask rows, the same sentences in the same order for every
    runner). Runners go back to back per sentence, the order rotated by one each
    sentence and reversed every other round.
    """
    keys = list(runners)
    n = len(arrays[keys[0]]["token_ids"])
    rows = {key: [{k: v[i:i + 1] for k, v in arrays[key].items()} for i in range(n)]
            for key in keys}
    for key, runner in runners.items():  # warm every bucket plan up
        for row in rows[key][:3]:
            runner.predict_logits(row)
    times = {key: np.zeros((rounds, n)) for key in keys}
    labels = {key: np.zeros(n, np.int64) for key in keys}
    for r in range(rounds):
        order = keys if r % 2 == 0 else keys[::-1]
        for i in range(n):
            shift = i % len(keys)
            for key in order[shift:] + order[:shift]:
                row = rows[key][i]
                start = time.perf_counter()
                logits = runners[key].predict_logits(row)
                times[key][r, i] = (time.perf_counter() - start) * 1000.0
                labels[key][i] = int(np.argmax(logits[0]))
    return times, labels


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
        reference: the float32 fixed-length file (`export_reference`), run at its
            own length whatever the preprocessor's.
        preprocessor: the model's preprocessor (its `sequence_length` is the
            longest input a real-length file gets).
        texts: validation sentences (the first `max_sentences` are used).
        rounds: passes over the sentences.
        max_sentences: most sentences timed.

    Returns:
        name -> ``{"median_ms", "mean_ms", "ratio"}``, plus the reference under
        `REFERENCE` (ratio 1.0).

    Raises:
        ValueError: no texts, `rounds` < 1, or a name equal to `REFERENCE`.
    """
    from keras_bertopt.export import preprocess_texts

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
    runners = {k: _runner(p, preprocessor) for k, p in paths.items()}
    arrays: dict[int, dict[str, np.ndarray]] = {}
    for runner in runners.values():
        if runner.sequence_length not in arrays:
            arrays[runner.sequence_length] = preprocess_texts(runner.preprocessor, texts)
    times, _ = time_in_fresh_process(
        paths, {k: arrays[r.sequence_length] for k, r in runners.items()}, rounds)
    base = times[REFERENCE]
    return {key: {"median_ms": round(float(np.median(t)), 4),
                  "mean_ms": round(float(statistics.fmean(t.ravel())), 4),
                  "ratio": round(float(np.median(t / base)), 4)}
            for key, t in times.items()}


def time_in_fresh_process(
    files: Mapping[str, str],
    arrays: Mapping[str, Mapping[str, np.ndarray]],
    rounds: int = 1,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """`paired_times` of `files` (name -> .tflite path), each on one one-thread interpreter,
    in a new Python process that imports LiteRT and NumPy only (`timing_worker`).

    A process that has trained a model runs a small file measurably slower than a fresh
    one while a large file keeps its time, so ratios are timed away from the caller.
    `arrays[name]`: int32 ``token_ids`` / ``segment_ids`` / ``padding_mask`` rows for
    file `name`, the same sentences in the same order for every file. Returns
    ``(times, labels)``: ms per (round, sentence) and the predicted label per sentence.

    Raises:
        RuntimeError: the timing process failed (its stderr is in the message).
    """
    import keras_bertopt

    root = os.path.dirname(os.path.dirname(os.path.abspath(keras_bertopt.__file__)))
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    with tempfile.TemporaryDirectory(prefix="kbo_timing_") as folder:
        with open(os.path.join(folder, "request.json"), "w", encoding="utf-8") as f:
            json.dump({"files": {k: os.path.abspath(p) for k, p in files.items()},
                       "rounds": rounds}, f)
        np.savez(os.path.join(folder, "arrays.npz"),
                 **{f"{name}/{k}": v for name, rows in arrays.items() for k, v in rows.items()})
        done = subprocess.run([sys.executable, "-m", "keras_bertopt.compress.timing_worker",
                               folder], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"timing the files in a fresh process failed "
                               f"(exit {done.returncode}): {done.stderr.strip()[-2000:]}")
        with np.load(os.path.join(folder, "times.npz")) as times, \
                np.load(os.path.join(folder, "labels.npz")) as labels:
            return {k: times[k] for k in files}, {k: labels[k] for k in files}


def _runner(path: str, preprocessor: Any) -> Any:
    """A one-thread `TFLiteClassifier` for `path`; a fixed-length file gets a copy of
    `preprocessor` packing to the file's length."""
    from keras_bertopt.export import TFLiteClassifier
    from keras_bertopt.export.interpreter import Signatures, make_interpreter

    signatures = Signatures.load(make_interpreter(path, 1), path)
    length = signatures.lengths[0] if signatures.layout == "fixed" else None
    if length is not None and length != getattr(preprocessor, "sequence_length", length):
        preprocessor = type(preprocessor)(tokenizer=preprocessor.tokenizer,
                                          sequence_length=length)
    return TFLiteClassifier(path, preprocessor, num_threads=1)
