"""Per-op latency of a TFLite file, the way `benchmark_model --enable_op_profiling` reports it.

The pip LiteRT interpreter has no op profiler, so each op is timed on its own:
the file is run once with every intermediate tensor kept
(``experimental_preserve_all_tensors``), then for every op a one-op model is cut
out of the flatbuffer (its constant inputs kept, its other inputs fed with the
values they had in the full run) and timed with the default CPU set-up
(XNNPack where it takes the op), batch 1, `num_threads` threads. The op is put
``copies`` times side by side and the time of one copy is the slope between the
one-copy and the ``copies``-copy models, so the interpreter's per-call overhead
cancels. The sum over ops is printed next to the full model's own latency.

Tables group ops by `keras_bertopt.export.inspect_tflite`'s signature
``OP(input dtypes)``: ``FULLY_CONNECTED(INT8,INT8,INT32)`` is a real int8
matmul, ``FULLY_CONNECTED(FLOAT32,INT8,FLOAT32)`` a dynamic-range (hybrid) one.

    flock /tmp/kbo_bench.lock python benchmarks/op_profile.py a.tflite b.tflite --length 32

Prints one table per file (ms per op type, count, share) and, with ``--name``,
writes benchmarks/results/<name>.json.
"""

from __future__ import annotations

import argparse
import collections
import copy
import os
import statistics
import sys
import time
from typing import Any, Mapping

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")


def _schema() -> Any:
    from tensorflow.lite.python import schema_py_generated as schema

    return schema


def _names(enum: Any) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


def example_inputs(
    length: int, real_length: int | None = None, vocabulary: int = 30522, seed: int = 0
) -> dict:
    """One int32 example of `length` positions, the first `real_length` of them real."""
    real = length if real_length is None else real_length
    rng = np.random.default_rng(seed)
    ids = rng.integers(min(5, vocabulary - 1), vocabulary, size=(1, length)).astype(np.int32)
    mask = (np.arange(length)[None] < real).astype(np.int32)
    return {"token_ids": ids * mask, "segment_ids": np.zeros_like(ids), "padding_mask": mask}


def _interpreter(content: bytes, num_threads: int, preserve: bool = False) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=num_threads,
                              experimental_preserve_all_tensors=preserve)
    interpreter.allocate_tensors()
    return interpreter


def _median_invoke_ms(interpreter: Any, runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _is_constant(model: Any, tensor: Any) -> bool:
    buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    return buffer is not None and buffer.data is not None and len(buffer.data) > 0


def _one_op_model(model: Any, index: int, copies: int) -> tuple[bytes, list[int]]:
    """A model running op `index` of subgraph 0 `copies` times; returns (bytes, fed tensors)."""
    from tensorflow.lite.tools import flatbuffer_utils

    schema = _schema()
    graph = model.subgraphs[0]
    op = graph.operators[index]
    sub = schema.SubGraphT()
    sub.tensors, sub.inputs, sub.outputs, sub.operators = [], [], [], []
    buffers = [schema.BufferT()]
    remap: dict[int, int] = {}
    fed: list[int] = []

    def add(t: int, fresh: bool = False) -> int:
        # Non-constant inputs are shared by the copies (fed once); constants and outputs
        # are fresh per copy, each constant with its own buffer, so the copies stream
        # different weights as the ops of the full model do (no cache-hot reuse).
        if t < 0:
            return t
        constant = _is_constant(model, graph.tensors[t])
        if t in remap and not (fresh or constant):
            return remap[t]
        tensor = copy.copy(graph.tensors[t])
        if constant:
            buffer = schema.BufferT()
            buffer.data = np.array(model.buffers[tensor.buffer].data, copy=True)
            buffers.append(buffer)
            tensor.buffer = len(buffers) - 1
        else:
            tensor.buffer = 0
        sub.tensors.append(tensor)
        new = len(sub.tensors) - 1
        if not (fresh or constant):
            remap[t] = new
            sub.inputs.append(new)
            fed.append(t)
        return new

    for _ in range(copies):
        clone = copy.copy(op)
        clone.inputs = [add(int(t)) for t in op.inputs]
        clone.outputs = [add(int(t), fresh=True) for t in op.outputs]
        sub.outputs.extend(clone.outputs)
        sub.operators.append(clone)
    out = schema.ModelT()
    out.version = model.version
    out.operatorCodes = model.operatorCodes
    out.subgraphs = [sub]
    out.buffers = buffers
    out.description = b"one op"
    return flatbuffer_utils.convert_object_to_bytearray(out), fed


def _signature(model: Any, op: Any, op_names: dict, type_names: dict) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    name = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")
    graph = model.subgraphs[0]
    types = [type_names[graph.tensors[t].type] if t >= 0 else "-" for t in op.inputs]
    return f"{name}({','.join(types)})"


def profile_ops(
    content: bytes,
    inputs: Mapping[str, np.ndarray],
    num_threads: int = 1,
    copies: int = 5,
    runs: int = 20,
) -> dict[str, Any]:
    """Per-op latency of a TFLite model (bytes) on one example.

    Returns:
        ``{"ops": [{"index", "signature", "ms"}], "by_signature": {sig: {"ms",
        "count"}}, "sum_ms", "model_ms"}`` (model_ms: the full model's median
        invoke time, same threads).
    """
    from tensorflow.lite.tools import flatbuffer_utils

    schema = _schema()
    op_names, type_names = _names(schema.BuiltinOperator), _names(schema.TensorType)
    full = _interpreter(content, num_threads, preserve=True)
    runner = full.get_signature_runner("serving_default")
    runner(**{k: np.asarray(inputs[k], np.int32) for k in INPUT_NAMES})
    values = {}
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    graph = model.subgraphs[0]
    rows = []
    for index, op in enumerate(graph.operators):
        timings = []
        for n in (1, copies):
            data, fed = _one_op_model(model, index, n)
            interpreter = _interpreter(data, num_threads)
            for detail, t in zip(interpreter.get_input_details(), fed, strict=True):
                if t not in values:
                    values[t] = full.get_tensor(t)
                interpreter.set_tensor(detail["index"], values[t])
            timings.append(_median_invoke_ms(interpreter, runs))
        ms = max(0.0, (timings[1] - timings[0]) / (copies - 1))
        rows.append({"index": index, "signature": _signature(model, op, op_names, type_names),
                     "ms": ms})
    del full
    plain = _interpreter(content, num_threads)
    plain_runner = plain.get_signature_runner("serving_default")
    feed = {k: np.asarray(inputs[k], np.int32) for k in INPUT_NAMES}
    for _ in range(3):
        plain_runner(**feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        plain_runner(**feed)
        times.append(time.perf_counter() - start)
    grouped: dict[str, dict[str, float]] = collections.defaultdict(lambda: {"ms": 0.0, "count": 0})
    for row in rows:
        grouped[row["signature"]]["ms"] += row["ms"]
        grouped[row["signature"]]["count"] += 1
    return {
        "ops": rows,
        "by_signature": dict(sorted(grouped.items(), key=lambda kv: -kv[1]["ms"])),
        "sum_ms": sum(r["ms"] for r in rows),
        "model_ms": 1e3 * statistics.median(times),
    }


def format_table(profile: Mapping[str, Any], title: str, top: int = 25) -> str:
    """A text table: ms, count and share per op signature."""
    lines = [f"{title}: sum of ops {profile['sum_ms']:.2f} ms, whole model "
             f"{profile['model_ms']:.2f} ms",
             f"{'op(input dtypes)':48s} {'count':>5s} {'ms':>8s} {'share':>6s}"]
    total = profile["sum_ms"] or 1.0
    for signature, entry in list(profile["by_signature"].items())[:top]:
        lines.append(f"{signature:48s} {entry['count']:5d} {entry['ms']:8.3f} "
                     f"{100 * entry['ms'] / total:5.1f}%")
    return "\n".join(lines)


def _vocabulary(content: bytes) -> int:
    """Rows of the largest GATHER table (the token embedding)."""
    schema = _schema()
    root = schema.Model.GetRootAs(content, 0)
    graph = root.Subgraphs(0)
    gather = [i for i in range(root.OperatorCodesLength())
              if max(root.OperatorCodes(i).BuiltinCode(),
                     root.OperatorCodes(i).DeprecatedBuiltinCode())
              == schema.BuiltinOperator.GATHER]
    rows = [int(graph.Tensors(graph.Operators(i).Inputs(0)).Shape(0))
            for i in range(graph.OperatorsLength()) if graph.Operators(i).OpcodeIndex() in gather]
    return max(rows) if rows else 30522


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help=".tflite files (from to_tflite)")
    parser.add_argument("--length", type=int, default=None,
                        help="real tokens in the example (default: the file's full length)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--copies", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--name", default=None, help="write benchmarks/results/<name>.json")
    args = parser.parse_args(argv)
    if args.copies < 2 or args.runs < 1 or args.threads < 1:
        raise ValueError("`--copies` must be >= 2, `--runs` and `--threads` >= 1")
    from keras_bertopt.export import make_interpreter

    out: dict[str, Any] = {"threads": args.threads, "copies": args.copies, "runs": args.runs,
                           "files": {}}
    for path in args.files:
        with open(path, "rb") as f:
            content = f.read()
        details = make_interpreter(content).get_signature_runner(
            "serving_default").get_input_details()
        length = int(details["token_ids"]["shape"][-1])
        inputs = example_inputs(length, args.length, _vocabulary(content))
        profile = profile_ops(content, inputs, args.threads, args.copies, args.runs)
        print(format_table(profile, f"{path} (length {length}, real {args.length or length})"),
              flush=True)
        out["files"][path] = {"length": length, "real_length": args.length or length,
                              "by_signature": profile["by_signature"],
                              "sum_ms": profile["sum_ms"], "model_ms": profile["model_ms"]}
    if args.name:
        from common import write_result

        write_result(args.name, out)
    return out


if __name__ == "__main__":
    main()
