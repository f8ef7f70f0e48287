"""Conversion: a Keras classifier -> SavedModel signatures -> `tf.lite.TFLiteConverter` bytes.

The part of the task after its preprocessor is traced as a `tf.function` per
signature (int32 ``token_ids``, ``segment_ids``, ``padding_mask`` of shape
[batch, length]; ``padding_mask`` is cast to bool inside), written as a
SavedModel with `keras.export.ExportArchive` (which tracks the Keras variables so
the converter freezes them into constants) and converted with
`tf.lite.TFLiteConverter.from_saved_model`.

Signatures (`signature_lengths`): one ``len_<L>`` signature per length bucket
(the default: 16, 24, 32, 48, 64, 96, ... below the export length and the
export length, each a static shape), or one ``serving_default`` of one fixed
length, or of length None (a dynamic sequence dimension). The converter stores
each weight once; each signature adds only its own small constants.

Converter settings per quantization mode (`CONVERTER_SETTINGS`, applied by
`configure`):

================  ==========================================================
quantization      converter settings
================  ==========================================================
``"none"``        float32
``"float16"``     optimizations=[DEFAULT], supported_types=[float16]
``"dynamic"``     optimizations=[DEFAULT]: int8 weights, float activations
                  (of a QAT model: its learned int8 weights; its activation
                  fake-quant is left out of the trace)
``"int8"`` (QAT)  optimizations=[DEFAULT], no representative data: the
                  converter uses the model's fake-quant ranges
``"int8"``        optimizations=[DEFAULT] + representative_dataset from
(float model)     `representative_data`: post-training full int8 (ops without
                  an int8 kernel stay float)
================  ==========================================================

A new mode is one row in `CONVERTER_SETTINGS` (dotted attribute paths such as
``"target_spec.supported_ops"``) plus its name in `keras_bertopt.export.modes`.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from keras_bertopt.export.float_ops import run_ops_in_float
from keras_bertopt.export.inputs import INPUT_NAMES, real_lengths, trim
from keras_bertopt.quantization.layers import runtime_activations

#: The signature of a single-signature file (what LiteRT and MediaPipe run by default).
DEFAULT_SIGNATURE = "serving_default"


def _default() -> list:
    import tensorflow as tf

    return [tf.lite.Optimize.DEFAULT]


def _float16() -> list:
    import tensorflow as tf

    return [tf.float16]


#: Per mode: converter attribute (dotted path) -> a function returning its value.
CONVERTER_SETTINGS: dict[str, dict[str, Callable[[], Any]]] = {
    "none": {},
    "float16": {"optimizations": _default, "target_spec.supported_types": _float16},
    "dynamic": {"optimizations": _default},
    "int8": {"optimizations": _default},
}


def needs_calibration(quantization: str, qat: bool) -> bool:
    """True when the mode calibrates activation ranges on representative data."""
    return quantization == "int8" and not qat


def signature_lengths(sequence_length: int, length_buckets: Sequence[int] | None,
                      dynamic_length: bool) -> list[tuple[str, int | None]]:
    """(signature key, input length or None) of each signature the file gets.

    Buckets: ``len_<L>`` per bucket up to `sequence_length`, which is always the
    last bucket. Otherwise one ``serving_default`` signature of length None
    (`dynamic_length`) or `sequence_length`.
    """
    if length_buckets:
        lengths = sorted({int(b) for b in length_buckets if b < sequence_length})
        return [(f"len_{length}", length) for length in [*lengths, sequence_length]]
    return [(DEFAULT_SIGNATURE, None if dynamic_length else sequence_length)]


def keep_first_and_last(inputs: dict[str, Any], max_length: int) -> dict[str, Any]:
    """Inputs cut to `max_length` positions inside the graph: the first ``max_length - 1``
    and each row's last real token (its ``[SEP]``), as keras-hub's packer truncates.

    Rows of at most `max_length` tokens pass unchanged (the gather is the identity).
    A dynamic-length file gets this so an input longer than the position table
    (MediaPipe does not truncate) runs as its truncation, never out of range.
    """
    import tensorflow as tf

    width = tf.shape(inputs["token_ids"])[1]
    kept = tf.minimum(width, max_length)
    positions = tf.range(kept)
    real = tf.reduce_sum(tf.cast(tf.cast(inputs["padding_mask"], tf.bool), tf.int32), axis=1)
    # Each row's last kept position reads its last real token when the row is longer.
    last = tf.clip_by_value(tf.maximum(real - 1, kept - 1), 0, width - 1)
    index = tf.where(positions[None, :] == kept - 1, last[:, None], positions[None, :])
    return {k: tf.gather(v, index, batch_dims=1) for k, v in inputs.items()}


def serving_function(model: Any, output: str = "logits", max_length: int | None = None) -> Any:
    """The traced body of every signature: int32 ids in, {output: logits or softmax} out.

    With `max_length` (dynamic-length signatures) longer inputs are cut in the
    graph (`keep_first_and_last`).
    """
    import tensorflow as tf

    def serve(token_ids: Any, segment_ids: Any, padding_mask: Any) -> dict[str, Any]:
        if max_length is not None:
            cut = keep_first_and_last({"token_ids": token_ids, "segment_ids": segment_ids,
                                       "padding_mask": padding_mask}, max_length)
            token_ids, segment_ids = cut["token_ids"], cut["segment_ids"]
            padding_mask = cut["padding_mask"]
        logits = model(
            {
                "token_ids": token_ids,
                "segment_ids": segment_ids,
                "padding_mask": tf.cast(padding_mask, tf.bool),
            },
            training=False,
        )
        if output == "probabilities":
            return {output: tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)}
        return {output: logits}

    return serve


def _count_fake_quant_ops(concrete: Any) -> int:
    graph_def = concrete.graph.as_graph_def()
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes += list(function.node_def)
    return sum(1 for node in nodes if node.op.startswith("FakeQuantWithMinMax"))


def write_saved_model(model: Any, folder: str, signatures: list[tuple[str, int | None]],
                      batch_size: int | None, output: str,
                      max_length: int | None = None) -> int:
    """Trace one endpoint per signature into a SavedModel; returns the fake-quant op count."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    # No `archive.track(model)`: the endpoints take token ids, so the only resources they use
    # are variables, which `add_endpoint` tracks; tracking the model as well makes
    # `write_out` walk every layer looking for lookup tables (seconds per file).
    fake_quant_ops = 0
    for key, length in signatures:
        spec = [tf.TensorSpec([batch_size, length], tf.int32, name=n) for n in INPUT_NAMES]
        serve = serving_function(model, output, max_length if length is None else None)
        endpoint = archive.add_endpoint(key, serve,
                                        input_signature=spec)
        fake_quant_ops = _count_fake_quant_ops(endpoint.get_concrete_function())
    archive.write_out(folder, verbose=False)
    return fake_quant_ops


def representative_dataset(calibration: Mapping[str, np.ndarray],
                           signatures: list[tuple[str, int | None]],
                           batch_size: int | None) -> Callable[[], Iterator[Any]]:
    """Calibration examples for the converter, each at the length its signature runs.

    Dynamic length: one example per call at its real length (what the file will
    see). Fixed length: rows of `batch_size` at that length. Buckets: each example
    in the shortest bucket that holds it, as (signature key, inputs).
    """
    lengths = real_lengths(calibration)
    n = len(lengths)
    rows = batch_size or 1
    key, fixed = signatures[0]

    def generate() -> Iterator[Any]:
        if len(signatures) > 1:
            for i in range(n):
                key_i, length = next(((k, v) for k, v in signatures if v >= lengths[i]),
                                     signatures[-1])
                yield key_i, _rows(calibration, slice(i, i + 1), length)
        elif fixed is None:
            for i in range(n):
                yield _rows(calibration, slice(i, i + 1), max(int(lengths[i]), 1))
        else:
            for start in range(0, n - rows + 1, rows):
                yield _rows(calibration, slice(start, start + rows), fixed)

    return generate


def _rows(calibration: Mapping[str, np.ndarray], rows: slice, length: int) -> dict:
    part = {k: np.asarray(calibration[k][rows]) for k in INPUT_NAMES}
    width = part["token_ids"].shape[1]
    if length > width:
        return {k: np.pad(v, ((0, 0), (0, length - width))).astype(np.int32)
                for k, v in part.items()}
    return trim(part, length)


def configure(converter: Any, quantization: str, dataset: Callable | None,
              converter_options: Mapping[str, Any] | None,
              sparse_weights: bool = False) -> None:
    """Apply the mode's `CONVERTER_SETTINGS`, the calibration data and the user's options."""
    import tensorflow as tf

    for path, value in CONVERTER_SETTINGS[quantization].items():
        target, *parts = [converter, *path.split(".")]
        for part in parts[:-1]:
            target = getattr(target, part)
        setattr(target, parts[-1], value())
    if sparse_weights:
        converter.optimizations = [*converter.optimizations,
                                   tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    if dataset is not None:
        converter.representative_dataset = dataset
    for name, value in (converter_options or {}).items():
        setattr(converter, name, value)


def convert(
    model: Any,
    quantization: str,
    signatures: list[tuple[str, int | None]],
    *,
    batch_size: int | None,
    output: str = "logits",
    calibration: Mapping[str, np.ndarray] | None = None,
    converter_options: Mapping[str, Any] | None = None,
    keep_float_ops: Sequence[str] = (),
    qat: bool = False,
    sparse_weights: bool = False,
    max_length: int | None = None,
) -> tuple[bytes, int]:
    """The TFLite flatbuffer of `model`; returns (bytes, fake-quant ops in the traced graph).

    `max_length`: the longest input a dynamic-length signature runs (longer
    ones are cut in the file, `keep_first_and_last`).

    Raises:
        ValueError: a quantize-aware model whose traced graph has no fake-quant
            ops is exported as "int8" (there would be no ranges to use).
    """
    import tensorflow as tf

    folder = tempfile.mkdtemp(prefix="keras_bertopt_savedmodel_")
    try:
        # A QAT model in a dynamic-range file: its learned int8 weights, activations
        # quantized by LiteRT at run time, so no activation fake-quant is traced.
        runtime = qat and quantization == "dynamic"
        with runtime_activations() if runtime else contextlib.nullcontext():
            fake_quant_ops = write_saved_model(model, folder, signatures, batch_size, output,
                                               max_length)
        if quantization == "int8" and qat and fake_quant_ops == 0:
            raise ValueError(
                "`model` is a quantize-aware model but its traced graph has no fake-quant ops, "
                "so quantization='int8' would have no ranges to use"
            )
        converter = tf.lite.TFLiteConverter.from_saved_model(
            folder, signature_keys=[key for key, _ in signatures])
        dataset = None
        if calibration is not None:
            dataset = representative_dataset(calibration, signatures, batch_size)
        configure(converter, quantization, dataset, converter_options, sparse_weights)
        if keep_float_ops and not qat:
            # Selective post-training quantization: the denylisted op types stay float.
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter,
                debug_dataset=converter.representative_dataset,
                debug_options=tf.lite.experimental.QuantizationDebugOptions(
                    denylisted_ops=list(keep_float_ops)
                ),
            )
            content = debugger.get_nondebug_quantized_model()
        else:
            content = converter.convert()
        if keep_float_ops and qat:
            # QAT: the converter has no op denylist without calibration; rewrite the file.
            content, _ = run_ops_in_float(content, keep_float_ops)
        return content, fake_quant_ops
    finally:
        shutil.rmtree(folder, ignore_errors=True)
