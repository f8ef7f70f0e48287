"""`to_tflite`: a keras-hub classifier (float, pruned or QAT) -> a verified TFLite file.

`to_tflite` reads as its steps: check every argument (`_plan`), gather host
data (`_host_data`), convert (`keras_bertopt.export.converter`), embed MediaPipe
metadata (`keras_bertopt.export.metadata`), inspect the flatbuffer
(`keras_bertopt.export.flatbuffer`), verify against Keras and time it
(`keras_bertopt.export.verify`), and report (`ExportReport`).

By default (`keras_bertopt.export.layout`) the file has one signature of
input shape [1, -1]: MediaPipe Tasks, LiteRT and `TFLiteClassifier` run each
sentence at its own length, and inputs longer than `sequence_length` are cut
inside the file. With `mediapipe` installed and an uncased tokenizer it also
carries MediaPipe TextClassifier metadata (and outputs probabilities), so the
same file runs on raw text in MediaPipe on Android, iOS and the web.
Post-training int8 stays at one fixed length (its calibration). Static layouts
for GPU delegates, NNAPI and NPUs: ``length_buckets=None,
dynamic_length=False`` (fixed) or ``length_buckets="default"`` (buckets).

The file is written to a temporary name beside `path` and renamed
(`keras_bertopt.files.atomic_output`), so a failed export leaves nothing at
`path`.

Example:

```python
report = keras_bertopt.export.to_tflite(
    model, "model_int8.tflite", quantization="int8",
    representative_data=keras_bertopt.data.demo_dataset("train").take(4))
print(report)   # size, int8 vs float ops, agreement with Keras, latency
```
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Mapping, Sequence, Union

import numpy as np

from keras_bertopt.export import converter
from keras_bertopt.export import metadata as mediapipe_metadata
from keras_bertopt.export.flatbuffer import builtin_op_names, inspect_tflite
from keras_bertopt.export.inputs import collect_inputs, random_inputs, texts_of
from keras_bertopt.export.interpreter import Signatures, make_interpreter
from keras_bertopt.export.layout import resolve_layout
from keras_bertopt.export.model_facts import (
    is_quantize_aware,
    max_sequence_length,
    vocabulary_size,
)
from keras_bertopt.export.modes import QUANTIZATION_MODES
from keras_bertopt.export.report import ExportReport
from keras_bertopt.export.verify import compare_with_keras, time_file
from keras_bertopt.files import gzip_size

PathLike = Union[str, "os.PathLike[str]"]

#: Op types a QAT model's int8 file runs in float32 by default (`keep_float_ops="auto"`).
QAT_FLOAT_OPS = ("BATCH_MATMUL", "GELU")

@dataclasses.dataclass
class _Plan:
    """Every checked argument of one `to_tflite` call."""

    quantization: str
    qat: bool
    preprocessor: Any
    sequence_length: int
    signatures: list[tuple[str, int | None]]
    batch_size: int | None
    output: str
    labels: list[str] | None
    keep_float_ops: tuple[str, ...]


def to_tflite(
    model: Any,
    path: PathLike,
    quantization: str = "none",
    representative_data: Any = None,
    sequence_length: int | None = None,
    *,
    length_buckets: Sequence[int] | str | None = "auto",
    dynamic_length: bool | str = "auto",
    metadata: bool | str = "auto",
    labels: Sequence[str] | None = None,
    batch_size: int | None = 1,
    sample_data: Any = None,
    num_samples: int = 32,
    calibration_samples: int = 256,
    verify: bool = True,
    latency_runs: int = 10,
    num_threads: int | None = None,
    converter_options: Mapping[str, Any] | None = None,
    keep_float_ops: Sequence[str] | str = "auto",
    sparse_weights: bool = False,
) -> ExportReport:
    """Export a keras-hub text classifier (the part after its preprocessor) to TFLite.

    Args:
        model: a keras-hub task (e.g. `BertTextClassifier`, a pruned one, or a
            `keras_bertopt.quantization.quantize_aware` model) callable on
            ``{token_ids, segment_ids, padding_mask}`` and returning logits.
        path: the .tflite file to write (atomically).
        quantization: ``"none"`` (float32), ``"float16"``, ``"dynamic"``
            (int8 weights, activations quantized at run time; of a QAT model:
            the int8 weights it learned, its activation ranges unused) or
            ``"int8"`` (QAT ranges for a QAT model, post-training full int8
            calibrated on `representative_data` otherwise).
        representative_data: examples for int8 calibration of a float model and
            for verification: raw strings, a ``(texts, labels)`` tuple, a
            `tf.data.Dataset` of string or (text, label) batches, or dicts of
            token ids. Strings are run through ``model.preprocessor`` on the host.
        sequence_length: the longest input the file is for (its last length
            bucket, or its one fixed length); default: the preprocessor's
            `sequence_length` (128 without a preprocessor). Must not exceed the
            model's position table.
        length_buckets: ``"auto"`` (default): one signature (dynamic or fixed
            length, see `dynamic_length`). ``"default"`` (``DEFAULT_LENGTH_BUCKETS``:
            16, 24, 32, 48, 64, 96, ...) or a list of lengths: one static
            signature (``len_<L>``) per length below `sequence_length`, plus
            `sequence_length`; `TFLiteClassifier` runs each input in the
            shortest bucket that holds it (static-shape delegates; no metadata).
            None: one signature.
        dynamic_length: ``"auto"`` (default): True with ``length_buckets="auto"``
            for every mode but post-training int8 (whose calibration is per
            static shape) and ``fully_integer`` QAT (integer-only accelerators).
            True: one ``[batch, -1]`` signature; each input runs at its own
            length, and inputs longer than `sequence_length` keep their first
            ``sequence_length - 1`` tokens and their last (``[SEP]``), in the
            file itself. False: a fixed length (with
            ``length_buckets=None``), what GPU delegates and NPUs take.
        metadata: embed MediaPipe TextClassifier metadata (the tokenizer's
            vocabulary and `labels`, see `keras_bertopt.export.metadata`) and
            output softmax probabilities (MediaPipe's scores). ``"auto"``
            (default): when `mediapipe` is installed, the file has one
            signature of batch 1, the tokenizer is uncased WordPiece and the
            model is not ``fully_integer`` (the probabilities are float).
            True needs `mediapipe`.
        labels: class names, one per class (with ``metadata=True``; default
            with ``"auto"``: ``"0"``, ``"1"``, ...).
        batch_size: 1 (fixed, what phones run) or None (a dynamic batch).
        sample_data: verification examples (same forms as
            `representative_data`); default: `representative_data`, else random
            token ids.
        num_samples: examples compared with the Keras model (and MediaPipe).
        calibration_samples: most examples used for int8 calibration.
        verify: load and run the file, compare with Keras (and MediaPipe) and time it.
        latency_runs: timed batch-1 runs (median reported); 0 skips timing.
        num_threads: interpreter threads for verification and timing.
        converter_options: extra `tf.lite.TFLiteConverter` attributes to set
            (e.g. ``{"experimental_new_quantizer": True}``).
        keep_float_ops: TFLite op types (e.g. ``("BATCH_MATMUL",)``) that run in
            float32 in an ``"int8"`` file. Post-training int8 of a float model
            leaves them float during calibration (selective quantization with
            `tf.lite.experimental.QuantizationDebugger`); a QAT model's file is
            rewritten after conversion (`keras_bertopt.export.float_ops`).
            ``"auto"`` (default): ``QAT_FLOAT_OPS`` (``BATCH_MATMUL``, ``GELU``)
            for a QAT model; none for a float one or a ``fully_integer`` QAT
            model. LiteRT's int8 BATCH_MATMUL on two activations (attention
            scores x values) has no XNNPack kernel and is slower than the float
            one; an int8 GELU is not delegated to
            XNNPack either and splits its graph once per layer (the file's
            GELU reads and writes the same int8 values through a
            DEQUANTIZE / QUANTIZE pair).
        sparse_weights: write pruned weights in LiteRT's sparse formats
            (``tf.lite.Optimize.EXPERIMENTAL_SPARSITY``), which its built-in
            FULLY_CONNECTED runs with sparse kernels: float 1x4 blocks and int8
            1x16 blocks (`MagnitudePruning(pattern="block", block_shape=(4, 1))`
            / ``(16, 1)``); smaller and, for block-pruned dynamic-range files,
            faster (docs/benchmarks.md, "Sparse kernels").

    Returns:
        An `ExportReport` (`str()` for a summary, `.to_dict()` for JSON).

    Raises:
        ValueError: unknown `quantization`; ``"int8"`` of a float model
            without `representative_data`; `sequence_length` or a bucket beyond
            the model's position table; bad `batch_size`, `num_samples`,
            `length_buckets`, `dynamic_length`, `metadata`, `labels` or
            tokenizer for ``metadata=True``,
            `converter_options`, `representative_data` or `sample_data` -- all
            before any conversion. Conversion, loading and verification errors
            propagate; no file is left at `path` then (an older file there is
            kept).
    """
    from keras_bertopt.files import atomic_output

    plan = _plan(model, quantization, representative_data, sequence_length, length_buckets,
                 dynamic_length, metadata, labels, batch_size, keep_float_ops)
    _check_counts(num_samples=num_samples, calibration_samples=calibration_samples,
                  latency_runs=latency_runs, converter_options=converter_options)
    if not isinstance(sparse_weights, bool):
        raise ValueError(f"`sparse_weights` must be True or False, got {sparse_weights!r}")
    start = time.perf_counter()
    calibration, samples, source = _host_data(model, plan, representative_data, sample_data,
                                              num_samples, calibration_samples, verify)
    path = os.fspath(path)
    # Everything up to the verification happens before the rename: a file that fails to
    # convert, load or run never reaches `path`.
    with atomic_output(path) as tmp:
        content, fake_quant_ops = converter.convert(
            model, plan.quantization, plan.signatures, batch_size=plan.batch_size,
            output=plan.output, calibration=calibration, converter_options=converter_options,
            keep_float_ops=plan.keep_float_ops, qat=plan.qat, sparse_weights=sparse_weights,
            max_length=plan.sequence_length)
        if plan.labels is not None:
            content = mediapipe_metadata.attach_metadata(content, plan.preprocessor, plan.labels)
        with open(tmp, "wb") as f:
            f.write(content)
        signatures = Signatures.load(make_interpreter(content, num_threads),
                                     f"the exported file {path!r}")
        report = _describe(path, tmp, content, plan, signatures, fake_quant_ops, num_threads)
        if samples is not None:
            report.sample_source = source
            for key, value in compare_with_keras(model, signatures, samples, plan.output).items():
                setattr(report, key, value)
            if latency_runs:
                report.latency_ms = time_file(content, samples, latency_runs, num_threads)
                report.latency_runs = latency_runs
            texts = texts_of(sample_data if sample_data is not None else representative_data,
                             num_samples)
            if plan.labels is not None and texts:
                _check_mediapipe(report, tmp, plan, texts, num_threads)
    report.seconds = time.perf_counter() - start
    return report


def _plan(model: Any, quantization: str, representative_data: Any, sequence_length: Any,
          length_buckets: Any, dynamic_length: Any, metadata: bool, labels: Any,
          batch_size: Any, keep_float_ops: Any) -> _Plan:
    """Check the arguments that shape the file (before any work); raise ValueError naming them."""
    if quantization not in QUANTIZATION_MODES:
        raise ValueError(
            f"`quantization` must be one of {list(QUANTIZATION_MODES)}, got {quantization!r}"
        )
    if not callable(model):
        raise ValueError(f"`model` must be a Keras model, got {type(model).__name__}")
    qat = is_quantize_aware(model)
    if converter.needs_calibration(quantization, qat) and representative_data is None:
        raise ValueError(
            "quantization='int8' of a float model needs `representative_data` (raw strings, a "
            "tf.data.Dataset of text batches or dicts of token ids) to calibrate activation "
            "ranges; or pass a keras_bertopt.quantization.quantize_aware model"
        )
    preprocessor = getattr(model, "preprocessor", None)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"`batch_size` must be a positive integer or None, got {batch_size!r}")
    qat_config = getattr(model, "quantization_config", None)
    fully_integer = bool(getattr(qat_config, "fully_integer", False))
    layout = resolve_layout(quantization, qat, preprocessor, _num_classes(model),
                            length_buckets=length_buckets, dynamic_length=dynamic_length,
                            metadata=metadata, labels=labels, batch_size=batch_size,
                            fully_integer=fully_integer and quantization == "int8")
    sequence_length = _sequence_length(model, preprocessor, sequence_length)
    if qat and quantization == "int8" and getattr(qat_config, "activations", "") == "dynamic":
        raise ValueError(
            "`model` was trained with QuantizationConfig(activations='dynamic'): it learned no "
            "activation ranges for quantization='int8'; export it with quantization='dynamic' "
            "(its int8 weights, activations quantized at run time)"
        )
    if qat and quantization == "dynamic" and fully_integer:
        raise ValueError("a fully_integer QAT model exports with quantization='int8', "
                         "not 'dynamic'")
    kept = _keep_float_ops(keep_float_ops, quantization, qat, fully_integer)
    return _Plan(
        quantization=quantization, qat=qat, preprocessor=preprocessor,
        sequence_length=sequence_length,
        signatures=converter.signature_lengths(sequence_length, layout.length_buckets,
                                               layout.dynamic_length),
        batch_size=batch_size, output="probabilities" if layout.metadata else "logits",
        labels=layout.labels, keep_float_ops=kept,
    )


def _sequence_length(model: Any, preprocessor: Any, sequence_length: Any) -> int:
    if sequence_length is None:
        sequence_length = int(getattr(preprocessor, "sequence_length", None) or 128)
    if not isinstance(sequence_length, (int, np.integer)) or sequence_length < 2:
        raise ValueError(f"`sequence_length` must be an integer >= 2, got {sequence_length!r}")
    sequence_length = int(sequence_length)
    limit = max_sequence_length(model)
    if limit is not None and sequence_length > limit:
        raise ValueError(
            f"`sequence_length` {sequence_length} exceeds the model's maximum sequence length "
            f"{limit} (its position embedding table)"
        )
    return sequence_length


def _keep_float_ops(keep_float_ops: Any, quantization: str, qat: bool,
                    fully_integer: bool) -> tuple[str, ...]:
    if isinstance(keep_float_ops, str) and keep_float_ops == "auto":
        return QAT_FLOAT_OPS if quantization == "int8" and qat and not fully_integer else ()
    kept = (keep_float_ops,) if isinstance(keep_float_ops, str) else tuple(keep_float_ops or ())
    if not kept:
        return kept
    unknown = [op for op in kept if op not in builtin_op_names()]
    if unknown:
        raise ValueError(
            f"`keep_float_ops` has unknown TFLite op types {unknown} (expected 'auto' or names "
            "such as 'BATCH_MATMUL', 'FULLY_CONNECTED', 'SOFTMAX')"
        )
    if quantization != "int8":
        raise ValueError(
            "`keep_float_ops` applies to quantization='int8' only (the other modes have no "
            f"int8 activations); got quantization={quantization!r}"
        )
    return kept


def _check_counts(*, num_samples: Any, calibration_samples: Any, latency_runs: Any,
                  converter_options: Mapping[str, Any] | None) -> None:
    for name, value in (("num_samples", num_samples), ("calibration_samples",
                                                        calibration_samples)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}")
    if not isinstance(latency_runs, int) or latency_runs < 0:
        raise ValueError(f"`latency_runs` must be an integer >= 0, got {latency_runs!r}")
    if converter_options is not None:
        import tensorflow as tf

        probe = tf.lite.TFLiteConverter([], None)
        unknown = [k for k in converter_options if not isinstance(k, str) or not hasattr(probe, k)]
        if unknown:
            raise ValueError(f"`converter_options` has unknown converter attributes {unknown}")


def _num_classes(model: Any) -> int:
    num_classes = getattr(model, "num_classes", None)
    if num_classes is None:
        output = getattr(model, "output_shape", None) or (None, None)
        num_classes = output[-1]
    return int(num_classes) if num_classes else 0


def _host_data(model: Any, plan: _Plan, representative_data: Any, sample_data: Any,
               num_samples: int, calibration_samples: int, verify: bool) -> tuple:
    """(calibration arrays or None, verification arrays or None, their source)."""
    length, pre = plan.sequence_length, plan.preprocessor
    calibration = None
    if converter.needs_calibration(plan.quantization, plan.qat):
        calibration = collect_inputs(representative_data, pre, length, calibration_samples)
    if not verify:
        return calibration, None, None
    # Host-side data first: bad sample data fails before the conversion.
    if sample_data is not None:
        return calibration, collect_inputs(sample_data, pre, length, num_samples,
                                           "sample_data"), "sample_data"
    if calibration is not None:
        return calibration, {k: v[:num_samples] for k, v in calibration.items()}, \
            "representative_data"
    if representative_data is not None:
        return calibration, collect_inputs(representative_data, pre, length, num_samples), \
            "representative_data"
    return calibration, random_inputs(vocabulary_size(model), length, num_samples), "random"


def _describe(path: str, tmp: str, content: bytes, plan: _Plan, signatures: Signatures,
              fake_quant_ops: int, num_threads: int | None) -> ExportReport:
    facts = inspect_tflite(content)
    return ExportReport(
        path=path, quantization=plan.quantization, quantize_aware=plan.qat,
        sequence_length=plan.sequence_length, batch_size=signatures.batch_size,
        size_bytes=len(content), gzip_bytes=gzip_size(tmp), ops=facts["ops"],
        op_signatures=facts["op_signatures"], int8_ops=facts["int8_ops"],
        hybrid_ops=facts["hybrid_ops"], float_ops=facts["float_ops"],
        weight_sparsity=facts["weight_sparsity"],
        all_weight_sparsity=facts["all_weight_sparsity"],
        weight_params=facts["weight_params"], fake_quant_ops=fake_quant_ops,
        weights=facts["weights"], num_threads=num_threads, layout=signatures.layout,
        length_buckets=signatures.lengths if signatures.layout == "buckets" else None,
        output=plan.output, metadata=plan.labels is not None, labels=plan.labels,
    )


def _check_mediapipe(report: ExportReport, tmp: str, plan: _Plan, texts: list[str],
                     num_threads: int | None) -> None:
    """MediaPipe's TextClassifier vs TFLiteClassifier on the same raw texts."""
    from keras_bertopt.export.classifier import TFLiteClassifier

    ours = TFLiteClassifier(tmp, plan.preprocessor, num_threads=num_threads).predict(texts)
    theirs = mediapipe_metadata.mediapipe_labels(tmp, texts, plan.labels)
    report.mediapipe_samples = len(texts)
    report.mediapipe_agreement = float(np.mean(np.asarray(theirs) == ours["labels"]))
