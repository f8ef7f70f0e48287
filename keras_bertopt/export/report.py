"""`ExportReport`: what `to_tflite` wrote and how the file compares with the Keras model."""

from __future__ import annotations

import dataclasses
import math
from typing import Any


def _plain(value: Any) -> Any:
    """JSON-able copy of `value` (numpy scalars to Python, NaN/inf to None)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclasses.dataclass
class ExportReport:
    """The result of `keras_bertopt.export.to_tflite`.

    File facts (always filled):
        path, quantization ("none" | "float16" | "dynamic" | "int8"),
        quantize_aware (the model was a QAT model), sequence_length (the
        longest input the file is for), layout ("dynamic": the file runs at
        each input's own length; "fixed": every input padded to
        sequence_length; "buckets": one signature per length in
        length_buckets), batch_size (1, or None for a dynamic batch),
        size_bytes, gzip_bytes (gzip -9 of the file), seconds (wall time).
        output: "logits", or "probabilities" (softmax in the file: with
        metadata). metadata: MediaPipe TextClassifier metadata embedded, with
        `labels` as the class names.
        ops: per TFLite op type, how many ops run in each numeric kind:
            ``{"FULLY_CONNECTED": {"int8": 14, "hybrid": 0, "float": 0, ...}}``;
            "int8" = integer activations (full integer kernel), "hybrid" = float
            activations with int8 weights (dynamic range), "float" = float
            activations and weights, "convert" = QUANTIZE/DEQUANTIZE, "other" =
            integer/bool bookkeeping (shapes, masks, ids).
        op_signatures: ``"FULLY_CONNECTED(INT8,INT8,INT32)" -> count``, the op
            with the dtypes of its inputs ("-" for an absent optional input).
        int8_ops, hybrid_ops, float_ops: totals of the kinds above.
        fake_quant_ops: fake-quant ops seen in the traced Keras graph (QAT).
        weight_sparsity: fraction of exact zeros in the constant weights that
            feed FULLY_CONNECTED / BATCH_MATMUL / CONV ops (directly or through
            DEQUANTIZE), read from the file's buffers; all_weight_sparsity: the
            same over every constant tensor of rank >= 2 (embeddings included);
            weight_params: element count behind weight_sparsity.
        weights: per matmul weight tensor in the file: name, dtype (FLOAT32,
            INT8, FLOAT16), shape, sparsity.

    Verification (None when `verify=False`):
        num_samples, sample_source ("representative_data" | "sample_data" |
        "random"), max_abs_logit_diff / mean_abs_logit_diff and label_agreement
        of the TFLite logits vs the Keras model on the same int32 inputs,
        latency_ms (median of `latency_runs` batch-1 invocations of the file,
        after warm-up, one example at its full width), num_threads;
        mediapipe_agreement: share of `mediapipe_samples` raw sample texts
        on which MediaPipe's TextClassifier gives TFLiteClassifier's label
        (metadata files with text samples only). With an output of
        "probabilities" the *_logit_diff fields compare probabilities.
    """

    path: str
    quantization: str
    quantize_aware: bool
    sequence_length: int
    batch_size: int | None
    size_bytes: int
    gzip_bytes: int
    ops: dict[str, dict[str, int]]
    op_signatures: dict[str, int]
    int8_ops: int
    hybrid_ops: int
    float_ops: int
    weight_sparsity: float
    all_weight_sparsity: float
    weight_params: int
    fake_quant_ops: int = 0
    layout: str = "fixed"
    length_buckets: list[int] | None = None
    output: str = "logits"
    metadata: bool = False
    labels: list[str] | None = None
    mediapipe_samples: int = 0
    mediapipe_agreement: float | None = None
    weights: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    num_samples: int = 0
    sample_source: str | None = None
    max_abs_logit_diff: float | None = None
    mean_abs_logit_diff: float | None = None
    label_agreement: float | None = None
    latency_ms: float | None = None
    latency_runs: int = 0
    num_threads: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return _plain(dataclasses.asdict(self))

    def __str__(self) -> str:
        kb = self.size_bytes / 1024
        lines = [
            f"TFLite export {self.path} ({self.quantization}"
            f"{', QAT' if self.quantize_aware else ''}): {kb:.1f} KiB, "
            f"gzip {self.gzip_bytes / 1024:.1f} KiB, batch "
            f"{self.batch_size if self.batch_size else 'dynamic'} x length "
            f"{_length_text(self)}, output {self.output}",
            f"  ops: {self.int8_ops} int8, {self.hybrid_ops} hybrid (int8 weights), "
            f"{self.float_ops} float",
        ]
        for name in ("FULLY_CONNECTED", "BATCH_MATMUL"):
            if name in self.ops:
                kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.ops[name].items()) if v)
                lines.append(f"    {name}: {kinds}")
        lines.append(
            f"  weight sparsity in file: {self.weight_sparsity:.1%} of "
            f"{self.weight_params:,} matmul weights ({self.all_weight_sparsity:.1%} of all)"
        )
        if self.label_agreement is not None:
            lines.append(
                f"  vs Keras on {self.num_samples} {self.sample_source} samples: label agreement "
                f"{self.label_agreement:.1%}, max |logit diff| {self.max_abs_logit_diff:.3g}"
            )
        if self.latency_ms is not None:
            lines.append(
                f"  latency batch 1: {self.latency_ms:.2f} ms (median of {self.latency_runs})"
            )
        if self.metadata:
            agreement = ("not checked (no raw sample texts)" if self.mediapipe_agreement is None
                         else f"{self.mediapipe_agreement:.1%} label agreement with "
                         f"TFLiteClassifier on {self.mediapipe_samples} texts")
            lines.append(f"  MediaPipe metadata (labels {self.labels}): {agreement}")
        return "\n".join(lines)


def _length_text(report: ExportReport) -> str:
    if report.layout == "dynamic":
        return f"dynamic (up to {report.sequence_length})"
    if report.layout == "buckets":
        return f"buckets {report.length_buckets}"
    return str(report.sequence_length)
