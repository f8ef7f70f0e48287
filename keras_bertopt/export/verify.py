"""Verification: run the exported file on sample inputs and compare it with the Keras model.

`compare_with_keras` fills the `ExportReport` verification fields: label
agreement and the largest output difference between the file (each example run
at the length the file runs it: its real length for a dynamic-length file) and
the Keras model on the same int32 inputs, plus the batch-1 latency.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from keras_bertopt.export.classifier import softmax
from keras_bertopt.export.inputs import INPUT_NAMES
from keras_bertopt.export.interpreter import Signatures, measure_latency, run_logits


def keras_logits(model: Any, inputs: Mapping[str, np.ndarray], batch_size: int = 32) -> np.ndarray:
    """Logits of the Keras model (the part after its preprocessor) on int32 inputs."""
    out = []
    n = len(inputs["token_ids"])
    for start in range(0, n, batch_size):
        x = {k: np.asarray(inputs[k][start:start + batch_size]) for k in INPUT_NAMES}
        x["padding_mask"] = x["padding_mask"].astype(bool)
        out.append(np.asarray(model(x, training=False)))
    return np.concatenate(out, axis=0)


def compare_with_keras(model: Any, signatures: Signatures, samples: Mapping[str, np.ndarray],
                       output: str) -> dict[str, Any]:
    """Agreement of the file with the Keras model on `samples` (in the file's output space).

    Returns:
        ``{"num_samples", "max_abs_logit_diff", "mean_abs_logit_diff",
        "label_agreement"}``; the differences are of probabilities when the
        file outputs probabilities.
    """
    expected = keras_logits(model, samples).astype(np.float64)
    if output == "probabilities":
        expected = softmax(expected)
    got = run_logits(signatures, samples).astype(np.float64)
    diff = np.abs(got - expected)
    return {
        "num_samples": int(len(expected)),
        "max_abs_logit_diff": float(diff.max()),
        "mean_abs_logit_diff": float(diff.mean()),
        "label_agreement": float(np.mean(got.argmax(-1) == expected.argmax(-1))),
    }


def time_file(content: bytes, samples: Mapping[str, np.ndarray], runs: int,
              num_threads: int | None) -> float:
    """Median batch-1 latency (ms) of the file on the first sample at its full width."""
    one = {k: v[:1] for k, v in samples.items()}
    return measure_latency(content, runs=runs, warmup=2, num_threads=num_threads,
                           inputs=one)["median_ms"]
