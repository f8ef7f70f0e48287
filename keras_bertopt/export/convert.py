"""`to_tflite`: a keras-hub classifier (float, pruned or QAT) -> a verified TFLite file.

The part of the task after its preprocessor is traced as a `tf.function` with a
fixed signature (int32 ``token_ids``, ``segment_ids``, ``padding_mask`` of shape
[batch, sequence_length]; ``padding_mask`` is cast to bool inside), written as
a SavedModel with `keras.export.ExportArchive` (which tracks the Keras
variables so the converter freezes them into constants) and converted with
`tf.lite.TFLiteConverter.from_saved_model`:

================  ==========================================================
quantization      converter settings
================  ==========================================================
``"none"``        float32
``"float16"``     optimizations=[DEFAULT], supported_types=[float16]
``"dynamic"``     optimizations=[DEFAULT]: int8 weights, float activations
``"int8"`` (QAT)  optimizations=[DEFAULT], no representative data: the
                  converter uses the model's fake-quant ranges, with the
                  settings its `QuantizationConfig.converter_options()` asks
                  for (strict QDQ by default)
``"int8"``        optimizations=[DEFAULT] + representative_dataset from
(float model)     `representative_data`: post-training full int8 (ops without
                  an int8 kernel stay float)
================  ==========================================================

The file is written to a temporary name beside `path` and renamed
(`keras_bertopt.files.atomic_output`), so a failed export leaves nothing at
`path`. Afterwards the file is loaded with ai-edge-litert, run on sample
inputs, compared with the Keras model and timed (see `ExportReport`).

Example:

```python
report = keras_bertopt.export.to_tflite(
    model, "model_int8.tflite", quantization="int8",
    representative_data=keras_bertopt.data.demo_dataset("train").take(4))
print(report)   # size, int8 vs float ops, agreement with Keras, latency
```
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any, Mapping, Sequence, Union

import numpy as np

from keras_bertopt.export.modes import QUANTIZATION_MODES
from keras_bertopt.export.report import ExportReport
from keras_bertopt.export.runner import (
    INPUT_NAMES,
    _is_text_list,
    _signature,
    check_inputs,
    inspect_tflite,
    make_interpreter,
    measure_latency,
    preprocess_texts,
    run_logits,
)
from keras_bertopt.files import gzip_size

PathLike = Union[str, "os.PathLike[str]"]


# --------------------------------------------------------------------------- model facts
def is_quantize_aware(model: Any) -> bool:
    """True for a model from `keras_bertopt.quantization.quantize_aware`."""
    try:
        from keras_bertopt.quantization import is_quantize_aware as check
    except ImportError:  # the QAT package is optional for export
        check = None
    if check is not None:
        return bool(check(model))
    return bool(getattr(model, "quantize_aware", False))


def _qat_converter_options(model: Any) -> dict[str, Any]:
    """Converter settings a QAT model's graph needs (its `QuantizationConfig` decides)."""
    from keras_bertopt.quantization import qat_converter_options

    return qat_converter_options(model)


def max_sequence_length(model: Any) -> int | None:
    """The longest sequence the model's position table takes (None if unknown)."""
    backbone = getattr(model, "backbone", None)
    value = getattr(backbone, "max_sequence_length", None)
    if value:
        return int(value)
    for layer in getattr(model, "_flatten_layers", lambda: [])():
        value = getattr(layer, "max_sequence_length", None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _vocabulary_size(model: Any) -> int:
    backbone = getattr(model, "backbone", None)
    size = getattr(backbone, "vocabulary_size", None)
    if size:
        return int(size)
    for layer in getattr(model, "_flatten_layers", lambda: [])():
        if layer.name == "token_embedding" and getattr(layer, "input_dim", None):
            return int(layer.input_dim)
    return 100


# --------------------------------------------------------------------------- host data
def collect_inputs(
    data: Any,
    preprocessor: Any,
    sequence_length: int,
    limit: int,
    argument: str = "representative_data",
) -> dict[str, np.ndarray]:
    """Up to `limit` examples of `data` as int32 arrays of shape [n, sequence_length].

    `data` is one of: a list/array of raw strings; a ``(texts, labels)`` tuple;
    a dict of token_ids/segment_ids/padding_mask arrays; a list of such dicts;
    or a `tf.data.Dataset` (or iterable) whose elements are string batches,
    ``(text, label[, weight])`` batches or dicts of ids. Raw strings go through
    `preprocessor` on the host, packed to `sequence_length`.
    """
    chunks: list[dict[str, np.ndarray]] = []
    count = 0

    def add(x: Any) -> None:
        nonlocal count
        if isinstance(x, Mapping):
            arrays = {k: np.asarray(x[k]) for k in INPUT_NAMES if k in x}
            if len(arrays) != len(INPUT_NAMES):
                raise ValueError(
                    f"`{argument}` dicts must hold {list(INPUT_NAMES)}, got {sorted(x)}"
                )
            arrays = {k: (v[None] if v.ndim == 1 else v).astype(np.int32)
                      for k, v in arrays.items()}
        else:
            texts = _as_texts(x, argument)
            if preprocessor is None:
                raise ValueError(
                    f"`{argument}` holds raw strings but the model has no `preprocessor`: pass "
                    "dicts of token_ids/segment_ids/padding_mask instead"
                )
            arrays = preprocess_texts(preprocessor, texts, sequence_length=sequence_length)
        bad = {k: v.shape for k, v in arrays.items() if v.ndim != 2
               or v.shape[1] != sequence_length}
        if bad:
            raise ValueError(
                f"`{argument}` inputs must have shape [batch, {sequence_length}], got {bad}"
            )
        take = min(limit - count, len(arrays["token_ids"]))
        chunks.append({k: v[:take] for k, v in arrays.items()})
        count += take

    if isinstance(data, tuple) and len(data) in (2, 3) and _is_text_list(data[0]) \
            and not _is_text_list(data[1]):
        data = data[0]  # (texts, labels)
    if isinstance(data, (str, bytes)) or _is_text_list(data) or isinstance(data, Mapping):
        add(data)
    else:
        iterator = data.as_numpy_iterator() if hasattr(data, "as_numpy_iterator") else data
        try:
            iterator = iter(iterator)
        except TypeError:
            raise ValueError(
                f"`{argument}` must be raw strings, a tf.data.Dataset, dicts of token ids or an "
                f"iterable of them; got {type(data).__name__}"
            ) from None
        for element in iterator:
            if count >= limit:
                break
            if isinstance(element, tuple) and len(element) in (2, 3) \
                    and not _looks_like_texts(element):
                element = element[0]  # (x, y[, sample_weight])
            add(element)
    if count == 0:
        raise ValueError(f"`{argument}` yielded no examples")
    return {k: np.concatenate([c[k] for c in chunks]) for k in INPUT_NAMES}


def _looks_like_texts(element: tuple) -> bool:
    """A tuple of two string batches is a sentence pair, not (text, label)."""
    return len(element) == 2 and all(
        np.asarray(e).dtype.kind in "USO" for e in element
    )


def _as_texts(x: Any, argument: str) -> Any:
    if isinstance(x, (str, bytes)):
        return [x.decode() if isinstance(x, bytes) else x]
    if isinstance(x, tuple) and len(x) == 2:  # sentence pairs
        return tuple(_as_texts(part, argument) for part in x)
    array = np.asarray(x)
    if array.dtype.kind not in "USO":
        raise ValueError(
            f"`{argument}` must hold raw strings or dicts of token ids, got an array of "
            f"{array.dtype}"
        )
    return [v.decode() if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]


def _random_inputs(model: Any, sequence_length: int, n: int, seed: int = 0) -> dict:
    """Synthetic examples (random ids, random real lengths) when no data is given."""
    rng = np.random.default_rng(seed)
    vocab = _vocabulary_size(model)
    lengths = rng.integers(2, sequence_length + 1, size=n)
    mask = (np.arange(sequence_length)[None, :] < lengths[:, None]).astype(np.int32)
    ids = rng.integers(min(5, vocab - 1), vocab, size=(n, sequence_length)).astype(np.int32)
    return {"token_ids": ids * mask, "segment_ids": np.zeros_like(ids), "padding_mask": mask}


def keras_logits(model: Any, inputs: Mapping[str, np.ndarray], batch_size: int = 32) -> np.ndarray:
    """Logits of the Keras model (the part after its preprocessor) on int32 inputs."""
    out = []
    n = len(inputs["token_ids"])
    for start in range(0, n, batch_size):
        x = {k: np.asarray(inputs[k][start:start + batch_size]) for k in INPUT_NAMES}
        x["padding_mask"] = x["padding_mask"].astype(bool)
        out.append(np.asarray(model(x, training=False)))
    return np.concatenate(out, axis=0)


# --------------------------------------------------------------------------- conversion
def _serving_function(model: Any) -> Any:
    import tensorflow as tf

    def serve(token_ids: Any, segment_ids: Any, padding_mask: Any) -> dict[str, Any]:
        logits = model(
            {
                "token_ids": token_ids,
                "segment_ids": segment_ids,
                "padding_mask": tf.cast(padding_mask, tf.bool),
            },
            training=False,
        )
        return {"logits": logits}

    return serve


def _count_fake_quant_ops(concrete: Any) -> int:
    graph_def = concrete.graph.as_graph_def()
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes += list(function.node_def)
    return sum(1 for node in nodes if node.op.startswith("FakeQuantWithMinMax"))


def _convert(
    model: Any,
    quantization: str,
    qat: bool,
    sequence_length: int,
    batch_size: int | None,
    calibration: Mapping[str, np.ndarray] | None,
    converter_options: Mapping[str, Any] | None,
    keep_float_ops: Sequence[str] = (),
) -> tuple[bytes, int]:
    import keras
    import tensorflow as tf

    spec = [tf.TensorSpec([batch_size, sequence_length], tf.int32, name=n)
            for n in INPUT_NAMES]
    archive = keras.export.ExportArchive()
    archive.track(model)
    endpoint = archive.add_endpoint("serving_default", _serving_function(model),
                                    input_signature=spec)
    fake_quant_ops = _count_fake_quant_ops(endpoint.get_concrete_function())
    if quantization == "int8" and qat and fake_quant_ops == 0:
        raise ValueError(
            "`model` is a quantize-aware model but its traced graph has no fake-quant ops, so "
            "quantization='int8' would have no ranges to use"
        )
    folder = tempfile.mkdtemp(prefix="keras_bertopt_savedmodel_")
    try:
        archive.write_out(folder, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        if quantization != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantization == "int8" and not qat:
            n = len(calibration["token_ids"])
            rows = batch_size or 1

            def representative_dataset() -> Any:
                for start in range(0, n - rows + 1, rows):
                    yield {k: calibration[k][start:start + rows] for k in INPUT_NAMES}

            converter.representative_dataset = representative_dataset
        options = dict(_qat_converter_options(model)) if quantization == "int8" and qat else {}
        options.update(converter_options or {})
        for name, value in options.items():
            setattr(converter, name, value)
        if keep_float_ops:
            # Selective post-training quantization: the denylisted op types stay float.
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter,
                debug_dataset=converter.representative_dataset,
                debug_options=tf.lite.experimental.QuantizationDebugOptions(
                    denylisted_ops=list(keep_float_ops)
                ),
            )
            return debugger.get_nondebug_quantized_model(), fake_quant_ops
        return converter.convert(), fake_quant_ops
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def to_tflite(
    model: Any,
    path: PathLike,
    quantization: str = "none",
    representative_data: Any = None,
    sequence_length: int | None = None,
    *,
    batch_size: int | None = 1,
    sample_data: Any = None,
    num_samples: int = 32,
    calibration_samples: int = 256,
    verify: bool = True,
    latency_runs: int = 10,
    num_threads: int | None = None,
    converter_options: Mapping[str, Any] | None = None,
    keep_float_ops: Sequence[str] = (),
) -> ExportReport:
    """Export a keras-hub text classifier (the part after its preprocessor) to TFLite.

    Args:
        model: a keras-hub task (e.g. `BertTextClassifier`, a pruned one, or a
            `keras_bertopt.quantization.quantize_aware` model) callable on
            ``{token_ids, segment_ids, padding_mask}`` and returning logits.
        path: the .tflite file to write (atomically).
        quantization: ``"none"`` (float32), ``"float16"``, ``"dynamic"``
            (int8 weights) or ``"int8"`` (QAT ranges for a QAT model,
            post-training full int8 calibrated on `representative_data` otherwise).
        representative_data: examples for int8 calibration of a float model and
            for verification: raw strings, a ``(texts, labels)`` tuple, a
            `tf.data.Dataset` of string or (text, label) batches, or dicts of
            token ids. Strings are run through ``model.preprocessor`` on the host.
        sequence_length: the exported input length; default: the
            preprocessor's `sequence_length` (128 without a preprocessor). Must
            not exceed the model's position table.
        batch_size: 1 (fixed, what phones run) or None (a dynamic batch).
        sample_data: verification examples (same forms as
            `representative_data`); default: `representative_data`, else random
            token ids.
        num_samples: examples compared with the Keras model.
        calibration_samples: most examples used for int8 calibration.
        verify: load and run the file, compare with Keras and time it.
        latency_runs: timed batch-1 runs (median reported); 0 skips timing.
        num_threads: interpreter threads for verification and timing.
        converter_options: extra `tf.lite.TFLiteConverter` attributes to set
            (e.g. ``{"experimental_new_quantizer": True}``).
        keep_float_ops: TFLite op types (e.g. ``("BATCH_MATMUL",)``) left in
            float by post-training int8 of a float model (selective
            quantization with `tf.lite.experimental.QuantizationDebugger`).
            Measured: LiteRT's int8 BATCH_MATMUL on two activations (attention
            scores and context) is slower than float on x86, so keeping it
            float makes the PTQ file faster.

    Returns:
        An `ExportReport` (`str()` for a summary, `.to_dict()` for JSON).

    Raises:
        ValueError: unknown `quantization`; ``"int8"`` of a float model
            without `representative_data`; `sequence_length` beyond the model's
            maximum; bad `batch_size`, `num_samples`, `converter_options`,
            `representative_data` or `sample_data` -- all before any
            conversion. Conversion, loading and verification errors propagate;
            no file is left at `path` then (an older file there is kept).
    """
    from keras_bertopt.files import atomic_output

    if quantization not in QUANTIZATION_MODES:
        raise ValueError(
            f"`quantization` must be one of {list(QUANTIZATION_MODES)}, got {quantization!r}"
        )
    if not callable(model):
        raise ValueError(f"`model` must be a Keras model, got {type(model).__name__}")
    qat = is_quantize_aware(model)
    if quantization == "int8" and not qat and representative_data is None:
        raise ValueError(
            "quantization='int8' of a float model needs `representative_data` (raw strings, a "
            "tf.data.Dataset of text batches or dicts of token ids) to calibrate activation "
            "ranges; or pass a keras_bertopt.quantization.quantize_aware model"
        )
    preprocessor = getattr(model, "preprocessor", None)
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
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"`batch_size` must be a positive integer or None, got {batch_size!r}")
    for name, value in (("num_samples", num_samples), ("calibration_samples",
                                                        calibration_samples)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}")
    if not isinstance(latency_runs, int) or latency_runs < 0:
        raise ValueError(f"`latency_runs` must be an integer >= 0, got {latency_runs!r}")
    keep_float_ops = (keep_float_ops,) if isinstance(keep_float_ops, str) else tuple(
        keep_float_ops or ()
    )
    if keep_float_ops:
        from keras_bertopt.export.runner import _enum_names, _schema

        known = set(_enum_names(_schema().BuiltinOperator).values())
        unknown = [op for op in keep_float_ops if op not in known]
        if unknown:
            raise ValueError(
                f"`keep_float_ops` has unknown TFLite op types {unknown} (expected names such "
                "as 'BATCH_MATMUL', 'FULLY_CONNECTED', 'SOFTMAX')"
            )
        if quantization != "int8" or qat:
            raise ValueError(
                "`keep_float_ops` applies to quantization='int8' of a float model only (post-"
                f"training int8); got quantization={quantization!r}"
                f"{' of a quantize-aware model' if qat else ''}"
            )
    if converter_options is not None:
        import tensorflow as tf

        probe = tf.lite.TFLiteConverter([], None)
        unknown = [k for k in converter_options if not isinstance(k, str) or not hasattr(probe, k)]
        if unknown:
            raise ValueError(f"`converter_options` has unknown converter attributes {unknown}")

    start = time.perf_counter()
    calibration = None
    if quantization == "int8" and not qat:
        calibration = collect_inputs(representative_data, preprocessor, sequence_length,
                                     calibration_samples)
    samples, source = None, None
    if verify:  # host-side data first: bad sample data fails before the conversion
        if sample_data is not None:
            samples = collect_inputs(sample_data, preprocessor, sequence_length, num_samples,
                                     "sample_data")
            source = "sample_data"
        elif calibration is not None:
            samples = {k: v[:num_samples] for k, v in calibration.items()}
            source = "representative_data"
        elif representative_data is not None:
            samples = collect_inputs(representative_data, preprocessor, sequence_length,
                                     num_samples)
            source = "representative_data"
        else:
            samples, source = _random_inputs(model, sequence_length, num_samples), "random"
    path = os.fspath(path)
    # Everything up to the verification happens before the rename: a file that fails to
    # convert, load or run never reaches `path`.
    with atomic_output(path) as tmp:
        content, fake_quant_ops = _convert(model, quantization, qat, sequence_length,
                                           batch_size, calibration, converter_options,
                                           keep_float_ops)
        with open(tmp, "wb") as f:
            f.write(content)
        facts = inspect_tflite(content)
        interpreter = make_interpreter(content, num_threads)
        _, runner = _signature(interpreter, f"the exported file {path!r}")
        length, file_batch, output = check_inputs(runner, f"the exported file {path!r}")
        report = ExportReport(
            path=path,
            quantization=quantization,
            quantize_aware=qat,
            sequence_length=length,
            batch_size=file_batch,
            size_bytes=len(content),
            gzip_bytes=gzip_size(tmp),
            ops=facts["ops"],
            op_signatures=facts["op_signatures"],
            int8_ops=facts["int8_ops"],
            hybrid_ops=facts["hybrid_ops"],
            float_ops=facts["float_ops"],
            weight_sparsity=facts["weight_sparsity"],
            all_weight_sparsity=facts["all_weight_sparsity"],
            weight_params=facts["weight_params"],
            fake_quant_ops=fake_quant_ops,
            weights=facts["weights"],
            num_threads=num_threads,
        )
        if samples is not None:
            expected = keras_logits(model, samples)
            got = run_logits((runner, file_batch, output), samples)
            diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
            report.num_samples = int(len(expected))
            report.sample_source = source
            report.max_abs_logit_diff = float(diff.max())
            report.mean_abs_logit_diff = float(diff.mean())
            report.label_agreement = float(np.mean(got.argmax(-1) == expected.argmax(-1)))
            if latency_runs:
                one = {k: v[:1] for k, v in samples.items()}
                timing = measure_latency(content, runs=latency_runs, warmup=2,
                                         num_threads=num_threads, inputs=one)
                report.latency_ms = timing["median_ms"]
                report.latency_runs = latency_runs
    report.seconds = time.perf_counter() - start
    return report
