"""Read a TFLite (LiteRT) flatbuffer: check the file, count ops by numeric kind, weight sparsity.

* `read_tflite_bytes(path)`: the bytes of a .tflite file, or a clear error.
* `inspect_tflite(path_or_bytes)`: op counts by numeric kind (int8 / hybrid /
  float) and the sparsity of the weights stored in the file.

Example:

```python
facts = keras_bertopt.export.inspect_tflite("model.tflite")
facts["ops"]["FULLY_CONNECTED"]     # {"int8": 38} for a QAT int8 file
```
"""

from __future__ import annotations

import collections
import os
from typing import Any, Sequence, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

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


def builtin_op_names() -> set[str]:
    """Every builtin TFLite op type name (``"FULLY_CONNECTED"``, ``"BATCH_MATMUL"``, ...)."""
    return set(_enum_names(_schema().BuiltinOperator).values())


def inspect_tflite(model: Union[PathLike, bytes]) -> dict[str, Any]:
    """Op counts and weight sparsity read straight from a TFLite flatbuffer.

    Args:
        model: a path to a .tflite file or its bytes.

    Returns:
        dict, counted over one call (a bucketed file's first bucket), with
        ``ops`` ({op: {kind: count}}, kinds int8 / hybrid / float / convert /
        other, see `ExportReport`), ``op_signatures`` ({"OP(DTYPES)":
        count}), ``int8_ops``, ``hybrid_ops``, ``float_ops``,
        ``weight_sparsity`` / ``weight_params`` (constant weights feeding
        FULLY_CONNECTED / BATCH_MATMUL / CONV, through DEQUANTIZE too),
        ``all_weight_sparsity`` (every constant of rank >= 2) and ``weights``
        (per weight tensor: name, dtype, shape, sparsity).
    """
    data = model if isinstance(model, (bytes, bytearray)) else read_tflite_bytes(model)
    schema = _schema()
    root = schema.Model.GetRootAs(data, 0)
    type_names = _enum_names(schema.TensorType)
    ops, signatures, weight_ids, constants = _scan_operators(root, type_names)
    sparsity = _weight_sparsity(root, data, constants, weight_ids, type_names)
    totals = {k: sum(c[k] for c in ops.values()) for k in ("int8", "hybrid", "float")}
    return {
        "ops": {name: dict(counter) for name, counter in sorted(ops.items())},
        "op_signatures": dict(sorted(signatures.items())),
        "int8_ops": totals["int8"],
        "hybrid_ops": totals["hybrid"],
        "float_ops": totals["float"],
        **sparsity,
    }


def _operator_codes(root: Any) -> list[str]:
    op_names = _enum_names(_schema().BuiltinOperator)
    codes = []
    for i in range(root.OperatorCodesLength()):
        code = root.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = op_names.get(builtin, str(builtin))
        if name == "CUSTOM" and code.CustomCode():
            name = f"CUSTOM:{code.CustomCode().decode()}"
        codes.append(name)
    return codes


def _counted_subgraphs(root: Any) -> list[int]:
    """Every subgraph but the 2nd, 3rd, ... signature entry points.

    A bucketed file (`to_tflite(length_buckets=...)`) holds one identical graph
    per bucket, sharing its weight buffers: counting the first stands for one call.
    """
    entries = sorted({root.SignatureDefs(i).SubgraphIndex()
                      for i in range(root.SignatureDefsLength())})
    return [s for s in range(root.SubgraphsLength()) if s not in entries[1:]]


def _scan_operators(root: Any, type_names: dict[int, str]) -> tuple[Any, Any, set, dict]:
    """Per-op kind counts, op signatures, the matmul weight tensors and every constant."""
    codes = _operator_codes(root)
    ops: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    signatures: collections.Counter = collections.Counter()
    weight_ids: set[tuple[int, int]] = set()  # (subgraph, tensor) feeding a matmul
    constants: dict[tuple[int, int], Any] = {}
    for s in _counted_subgraphs(root):
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
            for t in inputs[:2] if name == "BATCH_MATMUL" else inputs[1:2]:
                if t >= 0 and t in producer and producer[t][0] == "DEQUANTIZE":
                    t = producer[t][1][0]
                if t >= 0:
                    weight_ids.add((s, t))
    return ops, signatures, weight_ids, constants


def _weight_sparsity(root: Any, data: bytes, constants: dict, weight_ids: set,
                     type_names: dict[int, str]) -> dict[str, Any]:
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
    return {
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


def embedding_rows(data: bytes) -> int:
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


def sparse_tensor_count(model: Union[PathLike, bytes]) -> int:
    """Tensors the converter wrote in a sparse format (``EXPERIMENTAL_SPARSITY``)."""
    data = read_tflite_bytes(model) if not isinstance(model, (bytes, bytearray)) else bytes(model)
    root = _schema().Model.GetRootAs(data, 0)
    return sum(root.Subgraphs(s).Tensors(t).Sparsity() is not None
               for s in range(root.SubgraphsLength())
               for t in range(root.Subgraphs(s).TensorsLength()))
