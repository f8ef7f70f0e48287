"""Run chosen op types of an int8 TFLite file in float32, by rewriting the flatbuffer.

Why: converting a QAT model, the TFLite converter quantizes every op it can carry
ranges into. In a BERT encoder that includes the attention's probabilities x
values BATCH_MATMUL (two activations), and LiteRT's int8 BATCH_MATMUL has no
XNNPack kernel, so it would take most of the QAT file's time. The
converter's own switch for QDQ-faithful conversion (``_experimental_strict_qdq``)
writes UINT8 FULLY_CONNECTED inputs on TensorFlow 2.21 that LiteRT refuses to
load, and its op denylist exists only for post-training calibration. So the
int8 file is rewritten after conversion instead:

- each int8 input of a chosen op is read in float: where it comes from a
  QUANTIZE of a float tensor, the op reads that float tensor directly (the
  QUANTIZE goes when nothing else reads it), otherwise through a new DEQUANTIZE;
- each int8 output becomes float, followed by a QUANTIZE back to the original
  int8 tensor (same scale and zero point), so the int8 ops after it are
  unchanged; DEQUANTIZEs that read that output read the float tensor instead.

The math is the Keras model's where training kept the op float (the softmax
output, for instance, is no longer rounded to int8 before the matmul).

```python
from keras_bertopt.export.float_ops import run_ops_in_float

content, rewritten = run_ops_in_float(open("qat_int8.tflite", "rb").read(), ["BATCH_MATMUL"])
```
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

QUANTIZED_TYPES = ("INT8", "UINT8")


def run_ops_in_float(content: bytes, op_types: Sequence[str]) -> tuple[bytes, int]:
    """Rewrite every int8 op of `op_types` in a TFLite flatbuffer to run in float32.

    Args:
        content: the .tflite file's bytes.
        op_types: builtin op names, e.g. ``["BATCH_MATMUL"]``.

    Returns:
        (new flatbuffer bytes, number of ops rewritten). With nothing to rewrite
        the input bytes come back unchanged.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    schema = flatbuffer_utils.schema_fb
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    wanted = {getattr(schema.BuiltinOperator, name) for name in op_types}

    def code_of(op: Any) -> int:
        c = model.operatorCodes[op.opcodeIndex]
        return max(c.builtinCode, c.deprecatedBuiltinCode)

    def opcode_index(builtin: int) -> int:
        for i, c in enumerate(model.operatorCodes):
            if max(c.builtinCode, c.deprecatedBuiltinCode) == builtin:
                return i
        code = schema.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode = builtin, min(builtin, 127)
        code.version = 2
        model.operatorCodes.append(code)
        return len(model.operatorCodes) - 1

    quantize = opcode_index(schema.BuiltinOperator.QUANTIZE)
    dequantize = opcode_index(schema.BuiltinOperator.DEQUANTIZE)
    rewritten = 0
    for graph in model.subgraphs:
        count = _rewrite_subgraph(graph, wanted, schema, types, code_of, quantize, dequantize)
        rewritten += count
    if not rewritten:
        return content, 0
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), rewritten


def _rewrite_subgraph(graph: Any, wanted: set, schema: Any, types: dict, code_of: Any,
                      quantize: int, dequantize: int) -> int:
    tensors = graph.tensors

    def is_quantized(index: int) -> bool:
        return index >= 0 and types[tensors[index].type] in QUANTIZED_TYPES

    def float_twin(index: int, suffix: bytes) -> int:
        twin = copy.copy(tensors[index])
        twin.type = schema.TensorType.FLOAT32
        twin.quantization = None
        twin.buffer = 0
        twin.name = (tensors[index].name or b"") + suffix
        tensors.append(twin)
        return len(tensors) - 1

    def new_op(opcode: int, source: int, target: int) -> Any:
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = opcode, [source], [target]
        return op

    producer = {}
    for op in graph.operators:
        for t in op.outputs:
            producer[t] = op
    operators, rewritten = [], 0
    output_of_rewrite = {}  # int8 output tensor -> its float twin
    for op in graph.operators:
        chosen = code_of(op) in wanted and (
            any(is_quantized(t) for t in op.inputs) or any(is_quantized(t) for t in op.outputs))
        if not chosen:
            operators.append(op)
            continue
        rewritten += 1
        inputs = list(op.inputs)
        for i, t in enumerate(inputs):
            if not is_quantized(t):
                continue
            source = producer.get(t)
            if (source is not None and source.opcodeIndex == quantize
                    and not is_quantized(source.inputs[0])):
                inputs[i] = source.inputs[0]  # read the float tensor before its QUANTIZE
            else:
                twin = float_twin(t, b"/dequantized")
                operators.append(new_op(dequantize, t, twin))
                inputs[i] = twin
        op.inputs = inputs
        after = []
        outputs = list(op.outputs)
        for i, t in enumerate(outputs):
            if not is_quantized(t):
                continue
            twin = float_twin(t, b"/float")
            outputs[i] = twin
            output_of_rewrite[t] = twin
            after.append(new_op(quantize, twin, t))
        op.outputs = outputs
        operators.append(op)
        operators.extend(after)
    if not rewritten:
        return 0
    kept = _read_float_outputs(operators, output_of_rewrite, graph.outputs, dequantize)
    graph.operators = _drop_unread(kept, graph.outputs, quantize)
    return rewritten


def _read_float_outputs(operators: list, float_of: dict, graph_outputs: Sequence[int],
                        dequantize: int) -> list:
    """Drop each DEQUANTIZE of a rewritten op's re-quantized output (`float_of` maps it to
    the op's float output); its readers read the float output instead."""
    replaced = {}
    kept = []
    for op in operators:
        if (op.opcodeIndex == dequantize and op.inputs[0] in float_of
                and op.outputs[0] not in graph_outputs):
            replaced[op.outputs[0]] = float_of[op.inputs[0]]
            continue
        kept.append(op)
    for op in kept:
        op.inputs = [replaced.get(t, t) for t in op.inputs]
    return kept


def _drop_unread(operators: list, graph_outputs: Sequence[int], quantize: int) -> list:
    """Remove QUANTIZE ops whose output nothing reads (left behind by the rewrite)."""
    while True:
        read = set(graph_outputs)
        for op in operators:
            read.update(t for t in op.inputs if t >= 0)
        keep = [op for op in operators
                if not (op.opcodeIndex == quantize and op.outputs[0] not in read)]
        if len(keep) == len(operators):
            return keep
        operators = keep
