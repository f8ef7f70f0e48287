"""Run and inspect TFLite (LiteRT) text-classifier files on the host.

* `TFLiteClassifier(path, preprocessor)`: raw strings -> keras-hub preprocessor
  -> the TFLite file -> probabilities and labels; `evaluate` for accuracy.
* `inspect_tflite(path)`: op counts by numeric kind (int8 / hybrid / float) read
  from the flatbuffer, and the sparsity of the weights stored in the file.
* `measure_latency(path)`: median batch-1 latency of one invocation.

Example:

```python
runner = keras_bertopt.export.TFLiteClassifier("model.tflite", model.preprocessor)
runner.predict(["a wonderful film"])   # {"probabilities": (1, 2), "labels": (1,), ...}
runner.evaluate(keras_bertopt.data.demo_dataset("validation"))["accuracy"]
keras_bertopt.export.measure_latency("model.tflite", runs=50)["median_ms"]
```
"""

from __future__ import annotations

import collections
import os
import statistics
import time
from typing import Any, Iterable, Mapping, Sequence, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

#: The input names every exported file has (int32, shape [batch, sequence_length]).
INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")
#: The flatbuffer file identifier of a TFLite model (bytes 4..8 of the file).
TFLITE_IDENTIFIER = b"TFL3"
#: Ops whose constant second input is a weight matrix (what pruning sparsifies).
MATMUL_OPS = ("FULLY_CONNECTED", "BATCH_MATMUL", "CONV_2D", "DEPTHWISE_CONV_2D")
_INT_ACTIVATIONS = ("INT8", "UINT8", "INT16")
_FLOATS = ("FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16")
_NUMPY_DTYPES = {
    "FLOAT32": np.float32, "FLOAT16": np.float16, "FLOAT64": np.float64, "INT8": np.int8,
    "UINT8": np.uint8, "INT16": np.int16, "UINT16": np.uint16, "INT32": np.int32,
    "UINT32": np.uint32, "INT64": np.int64, "UINT64": np.uint64, "BOOL": np.bool_,
}


# --------------------------------------------------------------------------- file checks
def read_tflite_bytes(path: PathLike, argument: str = "path") -> bytes:
    """The bytes of a TFLite file; raises if it is missing or not a TFLite flatbuffer.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: the file lacks the 'TFL3' flatbuffer identifier.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`{argument}` {path!r} does not exist (expected a .tflite file)")
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise ValueError(
            f"`{argument}` {path!r} is not a TFLite model: its flatbuffer identifier is "
            f"{data[4:8]!r}, expected {TFLITE_IDENTIFIER!r}"
        )
    return data


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - older installs
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def _enum_names(enum_class: Any) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_")}


def _op_kind(name: str, input_types: Sequence[str], output_types: Sequence[str]) -> str:
    if name in ("QUANTIZE", "DEQUANTIZE"):
        return "convert"
    first = input_types[0] if input_types else (output_types[0] if output_types else "")
    if first in _INT_ACTIVATIONS:
        return "int8"
    if first in _FLOATS:
        if any(t in _INT_ACTIVATIONS for t in input_types[1:]):
            return "hybrid"
        return "float"
    return "other"


def inspect_tflite(model: Union[PathLike, bytes]) -> dict[str, Any]:
    """Op counts and weight sparsity read straight from a TFLite flatbuffer.

    Args:
        model: a path to a .tflite file or its bytes.

    Returns:
        dict with ``ops`` ({op: {kind: count}}, kinds int8 / hybrid / float /
        convert / other, see `ExportReport`), ``op_signatures`` ({"OP(DTYPES)":
        count}), ``int8_ops``, ``hybrid_ops``, ``float_ops``,
        ``weight_sparsity`` / ``weight_params`` (constant weights feeding
        FULLY_CONNECTED / BATCH_MATMUL / CONV, through DEQUANTIZE too),
        ``all_weight_sparsity`` (every constant of rank >= 2) and ``weights``
        (per weight tensor: name, dtype, shape, sparsity).
    """
    data = model if isinstance(model, (bytes, bytearray)) else read_tflite_bytes(model)
    schema = _schema()
    root = schema.Model.GetRootAs(data, 0)
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    codes = []
    for i in range(root.OperatorCodesLength()):
        code = root.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = op_names.get(builtin, str(builtin))
        if name == "CUSTOM" and code.CustomCode():
            name = f"CUSTOM:{code.CustomCode().decode()}"
        codes.append(name)

    ops: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    signatures: collections.Counter = collections.Counter()
    weight_ids: dict[tuple[int, int], bool] = {}  # (subgraph, tensor) -> feeds a matmul
    constants: dict[tuple[int, int], Any] = {}
    for s in range(root.SubgraphsLength()):
        graph = root.Subgraphs(s)
        producer: dict[int, tuple[str, list[int]]] = {}
        op_list = []
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            name = codes[op.OpcodeIndex()]
            inputs = [int(t) for t in op.InputsAsNumpy()] if op.InputsLength() else []
            outputs = [int(t) for t in op.OutputsAsNumpy()] if op.OutputsLength() else []
            in_types = [type_names[graph.Tensors(t).Type()] if t >= 0 else "-" for t in inputs]
            out_types = [type_names[graph.Tensors(t).Type()] for t in outputs]
            ops[name][_op_kind(name, in_types, out_types)] += 1
            signatures[f"{name}({','.join(in_types)})"] += 1
            for t in outputs:
                producer[t] = (name, inputs)
            op_list.append((name, inputs))
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            if tensor.Buffer() > 0 and tensor.ShapeLength() >= 2:
                constants[(s, t)] = tensor
        for name, inputs in op_list:
            if name not in MATMUL_OPS:
                continue
            candidates = inputs[:2] if name == "BATCH_MATMUL" else inputs[1:2]
            for t in candidates:
                if t < 0:
                    continue
                if t in producer and producer[t][0] == "DEQUANTIZE":
                    t = producer[t][1][0]
                weight_ids[(s, t)] = True

    weights, zeros_mm, total_mm, zeros_all, total_all = [], 0, 0, 0, 0
    for (s, t), tensor in constants.items():
        values = _buffer_values(root, data, tensor, type_names)
        if values is None:
            continue
        zero = 0
        quant = tensor.Quantization()
        if quant is not None and quant.ZeroPointLength() == 1:
            zero = int(quant.ZeroPoint(0))
        n_zero = int(np.count_nonzero(values == zero))
        zeros_all += n_zero
        total_all += values.size
        if (s, t) in weight_ids:
            zeros_mm += n_zero
            total_mm += values.size
            weights.append({
                "name": (tensor.Name() or b"").decode(errors="replace"),
                "dtype": type_names[tensor.Type()],
                "shape": [int(d) for d in tensor.ShapeAsNumpy()],
                "sparsity": n_zero / values.size if values.size else 0.0,
            })
    totals = {k: sum(c[k] for c in ops.values()) for k in ("int8", "hybrid", "float")}
    return {
        "ops": {name: dict(counter) for name, counter in sorted(ops.items())},
        "op_signatures": dict(sorted(signatures.items())),
        "int8_ops": totals["int8"],
        "hybrid_ops": totals["hybrid"],
        "float_ops": totals["float"],
        "weight_sparsity": zeros_mm / total_mm if total_mm else 0.0,
        "weight_params": total_mm,
        "all_weight_sparsity": zeros_all / total_all if total_all else 0.0,
        "weights": weights,
    }


def _buffer_values(root: Any, data: bytes, tensor: Any, type_names: dict[int, str]) -> Any:
    dtype = _NUMPY_DTYPES.get(type_names.get(tensor.Type(), ""))
    if dtype is None:
        return None
    buffer = root.Buffers(tensor.Buffer())
    if buffer.Offset() > 1:  # large models keep buffers after the flatbuffer
        raw = np.frombuffer(data, np.uint8, count=buffer.Size(), offset=buffer.Offset())
    elif buffer.DataLength():
        raw = buffer.DataAsNumpy()
    else:
        return None
    if raw.size % np.dtype(dtype).itemsize:
        return None
    return raw.view(dtype)


# --------------------------------------------------------------------------- interpreter
def make_interpreter(model: Union[PathLike, bytes], num_threads: int | None = None) -> Any:
    """An allocated `ai_edge_litert` Interpreter for a file path or model bytes."""
    from ai_edge_litert.interpreter import Interpreter

    kwargs: dict[str, Any] = {"num_threads": num_threads} if num_threads else {}
    if isinstance(model, (bytes, bytearray)):
        interpreter = Interpreter(model_content=bytes(model), **kwargs)
    else:
        interpreter = Interpreter(model_path=os.fspath(model), **kwargs)
    interpreter.allocate_tensors()
    return interpreter


def _signature(interpreter: Any, where: str) -> tuple[str, Any]:
    signatures = interpreter.get_signature_list()
    if not signatures:
        names = [d["name"] for d in interpreter.get_input_details()]
        raise ValueError(
            f"{where} has no signature (input tensors {names}); expected a signature with "
            f"inputs {sorted(INPUT_NAMES)} (export it with keras_bertopt.export.to_tflite)"
        )
    key = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
    return key, interpreter.get_signature_runner(key)


def check_inputs(runner: Any, where: str) -> tuple[int, int | None, str]:
    """Check a signature runner has int32 token_ids/segment_ids/padding_mask of one length.

    Returns:
        (sequence_length, batch_size or None for a dynamic batch, output name).

    Raises:
        ValueError: naming `where` and what differs.
    """
    details = runner.get_input_details()
    if sorted(details) != sorted(INPUT_NAMES):
        raise ValueError(
            f"{where} has inputs {sorted(details)}, expected {sorted(INPUT_NAMES)} "
            "(a file exported by keras_bertopt.export.to_tflite)"
        )
    lengths, batches = set(), set()
    for name, d in details.items():
        signature = list(d.get("shape_signature", d["shape"]))
        if len(signature) != 2 or np.dtype(d["dtype"]) != np.int32:
            raise ValueError(
                f"{where}: input {name!r} must be int32 of shape [batch, sequence_length], got "
                f"{np.dtype(d['dtype']).name} {signature}"
            )
        lengths.add(int(signature[1]))
        batches.add(int(signature[0]))
    if len(lengths) != 1 or len(batches) != 1 or min(lengths) < 1:
        raise ValueError(f"{where}: inputs disagree on their shapes {sorted(lengths)}")
    outputs = runner.get_output_details()
    if len(outputs) != 1:
        raise ValueError(f"{where} has outputs {sorted(outputs)}, expected one logits output")
    batch = batches.pop()
    return lengths.pop(), (None if batch < 0 else batch), next(iter(outputs))


def measure_latency(
    model: Union[PathLike, bytes],
    *,
    runs: int = 50,
    warmup: int = 5,
    num_threads: int | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Batch-1 latency of one call of an exported classifier file.

    One call is what an app pays per example: copy the int32 inputs in,
    invoke, copy the logits out (through the file's signature runner).

    Args:
        model: a .tflite path (from `to_tflite`) or its bytes.
        runs: timed invocations (the median is reported); >= 1.
        warmup: untimed invocations first.
        num_threads: interpreter threads (None: the runtime's default).
        inputs: one example ``{token_ids, segment_ids, padding_mask}`` (int32,
            shape [1, L] or [L]); default: a full-length example (every position
            real, the worst case) with fixed pseudo-random token ids.

    Returns:
        ``{"median_ms", "mean_ms", "min_ms", "p90_ms", "runs", "sequence_length",
        "num_threads"}``.
    """
    if not isinstance(runs, int) or runs < 1:
        raise ValueError(f"`runs` must be an integer >= 1, got {runs!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"`warmup` must be an integer >= 0, got {warmup!r}")
    where = "the model bytes" if isinstance(model, (bytes, bytearray)) else repr(os.fspath(model))
    data = model if isinstance(model, (bytes, bytearray)) else read_tflite_bytes(model, "model")
    interpreter = make_interpreter(data, num_threads)
    _, runner = _signature(interpreter, where)
    length, _, _ = check_inputs(runner, where)
    if inputs is None:
        rng = np.random.default_rng(0)
        vocab = max(2, min(_embedding_rows(data), 1000))
        feed = {
            "token_ids": rng.integers(1, vocab, size=(1, length)).astype(np.int32),
            "segment_ids": np.zeros((1, length), np.int32),
            "padding_mask": np.ones((1, length), np.int32),
        }
    else:
        feed = {k: np.asarray(inputs[k], np.int32).reshape(1, length) for k in INPUT_NAMES}
    for _ in range(warmup):
        runner(**feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner(**feed)
        times.append((time.perf_counter() - start) * 1000.0)
    ordered = sorted(times)
    return {
        "median_ms": statistics.median(times),
        "mean_ms": statistics.fmean(times),
        "min_ms": ordered[0],
        "p90_ms": ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))],
        "runs": runs,
        "sequence_length": length,
        "num_threads": num_threads,
    }


def _embedding_rows(data: bytes) -> int:
    """Rows of the largest constant table a GATHER reads (the token vocabulary); 2 if none."""
    schema = _schema()
    root = schema.Model.GetRootAs(data, 0)
    codes = [root.OperatorCodes(i) for i in range(root.OperatorCodesLength())]
    gather = {i for i, c in enumerate(codes)
              if max(c.BuiltinCode(), c.DeprecatedBuiltinCode()) == schema.BuiltinOperator.GATHER}
    rows = 2
    for s in range(root.SubgraphsLength()):
        graph = root.Subgraphs(s)
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            if op.OpcodeIndex() in gather and op.InputsLength():
                params = graph.Tensors(int(op.Inputs(0)))
                if params.Buffer() > 0 and params.ShapeLength() == 2:
                    rows = max(rows, int(params.Shape(0)))
    return rows


def run_logits(interpreter_runner: tuple[Any, int | None, str], feeds: Mapping[str, Any],
               chunk: int = 32) -> np.ndarray:
    """Logits of a (runner, batch_size, output_name) triple on int32 feeds of any batch."""
    runner, batch_size, output = interpreter_runner
    n = len(feeds["token_ids"])
    step = 1 if batch_size == 1 else (batch_size or chunk)
    out = []
    for start in range(0, n, step):
        part = {k: np.ascontiguousarray(feeds[k][start:start + step], np.int32)
                for k in INPUT_NAMES}
        if batch_size not in (None, 1) and len(part["token_ids"]) != batch_size:
            pad = batch_size - len(part["token_ids"])
            part = {k: np.concatenate([v, np.repeat(v[-1:], pad, 0)]) for k, v in part.items()}
            out.append(np.asarray(runner(**part)[output])[: batch_size - pad])
            continue
        out.append(np.asarray(runner(**part)[output]))
    return np.concatenate(out, axis=0) if out else np.zeros((0, 0), np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


class TFLiteClassifier:
    """Classify raw strings with an exported TFLite file and a keras-hub preprocessor.

    The preprocessor (e.g. ``model.preprocessor`` of the exported keras-hub
    task) runs on the host in TensorFlow; its int32 ids go to the file. Files
    with a fixed batch of 1 are run one example at a time, dynamic-batch files
    in chunks of `batch_size`.

    Args:
        path: a file written by `keras_bertopt.export.to_tflite`.
        preprocessor: a keras-hub text-classifier preprocessor whose
            `sequence_length` equals the file's.
        num_threads: interpreter threads (None: the runtime's default).
        batch_size: chunk size for dynamic-batch files.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: `path` is not a TFLite file, its inputs are not int32
            token_ids/segment_ids/padding_mask of one length, or the
            preprocessor's sequence length differs from the file's.

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
    ) -> None:
        self.path = os.fspath(path)
        read_tflite_bytes(self.path)
        if preprocessor is None or not callable(preprocessor):
            raise ValueError(
                "`preprocessor` must be a keras-hub text-classifier preprocessor (e.g. "
                f"model.preprocessor), got {type(preprocessor).__name__}"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}")
        where = f"TFLite file {self.path!r}"
        try:
            self.interpreter = make_interpreter(self.path, num_threads)
        except (ValueError, RuntimeError) as error:
            raise ValueError(f"{where} cannot be loaded by LiteRT: {error}") from error
        self.signature, self._runner = _signature(self.interpreter, where)
        self.sequence_length, self.file_batch_size, self._output = check_inputs(
            self._runner, where
        )
        length = getattr(preprocessor, "sequence_length", None)
        if length is not None and int(length) != self.sequence_length:
            raise ValueError(
                f"{where} takes sequences of length {self.sequence_length} but `preprocessor` "
                f"packs to {length}: pass a preprocessor built with "
                f"sequence_length={self.sequence_length}"
            )
        shape = self._runner.get_output_details()[self._output].get("shape_signature")
        #: Number of classes (the file's logits width).
        self.num_classes = int(shape[-1]) if shape is not None and len(shape) else 0
        self.preprocessor = preprocessor
        self.batch_size = batch_size
        self.num_threads = num_threads

    # ------------------------------------------------------------------ inference
    def encode(self, texts: Any) -> dict[str, np.ndarray]:
        """int32 token_ids / segment_ids / padding_mask of `texts` from the preprocessor."""
        return preprocess_texts(self.preprocessor, texts, batch_size=max(self.batch_size, 32))

    def predict_logits(self, inputs: Mapping[str, Any]) -> np.ndarray:
        """Logits of the file on int32 `{token_ids, segment_ids, padding_mask}` arrays."""
        missing = [k for k in INPUT_NAMES if k not in inputs]
        if missing:
            raise ValueError(f"`inputs` lacks {missing}; expected keys {list(INPUT_NAMES)}")
        feeds = {k: np.asarray(inputs[k]).astype(np.int32) for k in INPUT_NAMES}
        bad = [k for k, v in feeds.items() if v.ndim != 2 or v.shape[1] != self.sequence_length]
        if bad:
            raise ValueError(
                f"`inputs` {bad} must have shape [batch, {self.sequence_length}], got "
                f"{[feeds[k].shape for k in bad]}"
            )
        if len(feeds["token_ids"]) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        return run_logits((self._runner, self.file_batch_size, self._output), feeds,
                          self.batch_size)

    def predict(self, texts: Any) -> dict[str, np.ndarray]:
        """Classify raw strings.

        Args:
            texts: a string, a list/array of strings, or a pair of equal-length
                lists for sentence-pair tasks.

        Returns:
            ``{"probabilities": (n, classes) float32 (softmax of the logits),
            "labels": (n,) int64, "logits": (n, classes)}``.
        """
        logits = self.predict_logits(self.encode(texts))
        return {
            "probabilities": _softmax(logits.astype(np.float64)).astype(np.float32),
            "labels": np.argmax(logits, axis=-1),
            "logits": logits,
        }

    def evaluate(self, data: Any, labels: Sequence[int] | None = None) -> dict[str, Any]:
        """Accuracy of the file on labelled raw text.

        Args:
            data: a `tf.data.Dataset` of (text, label) batches (as
                `keras_bertopt.data` returns), an ``(texts, labels)`` tuple, or
                a list of texts with `labels` given.
            labels: the labels when `data` is a list of texts.

        Returns:
            ``{"accuracy", "num_examples", "seconds", "examples_per_second",
            "labels" (predicted)}``.
        """
        texts, truth = _labelled_examples(data, labels)
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
        return (f"TFLiteClassifier({self.path!r}, sequence_length={self.sequence_length}, "
                f"batch={batch})")


def evaluate(path: PathLike, preprocessor: Any, data: Any,
             labels: Sequence[int] | None = None, **kwargs: Any) -> dict[str, Any]:
    """`TFLiteClassifier(path, preprocessor, **kwargs).evaluate(data, labels)`."""
    return TFLiteClassifier(path, preprocessor, **kwargs).evaluate(data, labels)


# --------------------------------------------------------------------------- host data
def _is_text_list(value: Any) -> bool:
    if isinstance(value, str):
        return False
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "USO" and value.ndim == 1
    return isinstance(value, (list, tuple)) and all(isinstance(v, (str, bytes)) for v in value)


def preprocess_texts(preprocessor: Any, texts: Any, batch_size: int = 64,
                     sequence_length: int | None = None) -> dict[str, np.ndarray]:
    """Run raw strings through a keras-hub preprocessor; int32 numpy arrays out.

    `texts`: a string, a list/array of strings, or a tuple of two such lists
    (sentence pairs). With `sequence_length`, the preprocessor packs to that
    length for this call only (its own setting is restored afterwards).
    """
    import tensorflow as tf

    if isinstance(texts, (str, bytes)):
        texts = [texts]
    pair = (
        isinstance(texts, tuple) and len(texts) == 2 and all(_is_text_list(t) for t in texts)
        and len(texts[0]) == len(texts[1]) and not all(isinstance(t, str) for t in texts)
    )
    if not pair and not _is_text_list(texts):
        raise ValueError(
            "`texts` must be a string, a list of strings or a pair of lists of strings, "
            f"got {type(texts).__name__}"
        )
    n = len(texts[0]) if pair else len(texts)
    previous = getattr(preprocessor, "sequence_length", None)
    change = sequence_length is not None and previous is not None and previous != sequence_length
    if change:
        preprocessor.sequence_length = sequence_length
    try:
        parts = []
        for start in range(0, n, batch_size):
            if pair:
                x = tuple(tf.constant(list(t[start:start + batch_size])) for t in texts)
            else:
                x = tf.constant(list(texts[start:start + batch_size]))
            parts.append(_int32_inputs(preprocessor(x)))
    finally:
        if change:
            preprocessor.sequence_length = previous
    if not parts:
        length = sequence_length or previous or 0
        return {k: np.zeros((0, length), np.int32) for k in INPUT_NAMES}
    return {k: np.concatenate([p[k] for p in parts]) for k in INPUT_NAMES}


def _int32_inputs(x: Any) -> dict[str, np.ndarray]:
    if isinstance(x, tuple):  # (x, y[, sample_weight])
        x = x[0]
    if not isinstance(x, Mapping) or any(k not in x for k in INPUT_NAMES):
        raise ValueError(
            f"the preprocessor must return a dict with {list(INPUT_NAMES)}, got "
            f"{sorted(x) if isinstance(x, Mapping) else type(x).__name__}"
        )
    return {k: np.asarray(x[k]).astype(np.int32) for k in INPUT_NAMES}


def _labelled_examples(data: Any, labels: Sequence[int] | None) -> tuple[list, list]:
    if labels is not None:
        if not _is_text_list(data):
            raise ValueError("with `labels`, `data` must be a list of strings")
        if len(labels) != len(data):
            raise ValueError(f"`labels` has {len(labels)} items but `data` has {len(data)}")
        return list(data), list(labels)
    if isinstance(data, tuple) and len(data) == 2 and _is_text_list(data[0]):
        if len(data[0]) != len(data[1]):
            raise ValueError(f"`data` texts ({len(data[0])}) and labels ({len(data[1])}) differ")
        return list(data[0]), list(np.asarray(data[1]).reshape(-1))
    if hasattr(data, "as_numpy_iterator") or isinstance(data, Iterable):
        texts, truth = [], []
        for element in (data.as_numpy_iterator() if hasattr(data, "as_numpy_iterator")
                        else data):
            if not isinstance(element, tuple) or len(element) < 2:
                raise ValueError("`data` must yield (text, label) pairs or batches")
            x, y = element[0], element[1]
            x = np.asarray(x).reshape(-1)
            texts += [v.decode() if isinstance(v, bytes) else str(v) for v in x]
            truth += [int(v) for v in np.asarray(y).reshape(-1)]
        return texts, truth
    raise ValueError(
        "`data` must be a tf.data.Dataset of (text, label) batches or a (texts, labels) tuple, "
        f"got {type(data).__name__}"
    )
