"""Run exported classifier files with LiteRT: signatures, real-length invocation, latency.

A file from `to_tflite` has one of three layouts, told apart by its signatures:

* **dynamic length** (the default, `keras_bertopt.export.layout`): one
  signature whose inputs are ``[batch, -1]``; every call runs at the length it
  is given (LiteRT resizes the inputs and re-plans the graph when the length
  changes); the file cuts inputs longer than its export length itself.
* **length buckets**: several signatures ``len_16``, ``len_24``, ... each of a
  fixed length; an input runs in the shortest bucket that holds it.
* **fixed length**: one signature of shape ``[batch, L]``; every input is
  padded to ``L`` (what accelerators that need static shapes take).

`Signatures.load(interpreter)` reads the layout; `run_logits` runs int32 inputs
at their real length (`keras_bertopt.export.inputs.real_lengths`) with the
signature each needs; `measure_latency` times one batch-1 call.

Example:

```python
interpreter = make_interpreter("model.tflite", num_threads=1)
signatures = Signatures.load(interpreter, "model.tflite")
logits = run_logits(signatures, arrays)     # each row at its own length
```
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from typing import Any, Mapping, Union

import numpy as np

from keras_bertopt.export.flatbuffer import embedding_rows, read_tflite_bytes
from keras_bertopt.export.inputs import INPUT_NAMES, real_lengths, trim

PathLike = Union[str, "os.PathLike[str]"]


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


def check_inputs(runner: Any, where: str) -> tuple[int | None, int | None, str]:
    """Check a signature runner has int32 token_ids/segment_ids/padding_mask of one shape.

    Returns:
        (sequence_length or None for a dynamic length, batch_size or None for a
        dynamic batch, output name).

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
    if len(lengths) != 1 or len(batches) != 1 or min(lengths) == 0:
        raise ValueError(f"{where}: inputs disagree on their shapes {sorted(lengths)}")
    outputs = runner.get_output_details()
    if len(outputs) != 1:
        raise ValueError(f"{where} has outputs {sorted(outputs)}, expected one output")
    batch, length = batches.pop(), lengths.pop()
    return (None if length < 0 else length), (None if batch < 0 else batch), next(iter(outputs))


@dataclasses.dataclass
class Signature:
    """One signature of an exported file: its runner, input length (None: dynamic), batch."""

    key: str
    runner: Any
    length: int | None
    batch_size: int | None
    output: str


@dataclasses.dataclass
class Signatures:
    """The signatures of an exported file, shortest fixed length first (dynamic last)."""

    entries: list[Signature]

    @classmethod
    def load(cls, interpreter: Any, where: str) -> Signatures:
        """Read and check every signature of an interpreter (see `check_inputs`)."""
        keys = interpreter.get_signature_list()
        if not keys:
            names = [d["name"] for d in interpreter.get_input_details()]
            raise ValueError(
                f"{where} has no signature (input tensors {names}); expected a signature with "
                f"inputs {sorted(INPUT_NAMES)} (export it with keras_bertopt.export.to_tflite)"
            )
        entries = []
        for key in sorted(keys):
            runner = interpreter.get_signature_runner(key)
            length, batch, output = check_inputs(runner, f"{where} (signature {key!r})")
            entries.append(Signature(key, runner, length, batch, output))
        dynamic = [e for e in entries if e.length is None]
        if len(entries) > 1 and (dynamic or len({e.length for e in entries}) != len(entries)):
            raise ValueError(
                f"{where} has signatures {sorted(keys)} that are not length buckets (one fixed "
                "length each, all different)"
            )
        if len({e.batch_size for e in entries}) != 1:
            raise ValueError(f"{where}: signatures {sorted(keys)} disagree on the batch size")
        return cls(sorted(entries, key=lambda e: (e.length is None, e.length or 0)))

    @property
    def dynamic(self) -> bool:
        """True for a dynamic-length file."""
        return self.entries[0].length is None

    @property
    def batch_size(self) -> int | None:
        """The file's batch size (None: dynamic batch)."""
        return self.entries[0].batch_size

    @property
    def lengths(self) -> list[int]:
        """The fixed lengths of the file ([] for a dynamic-length file)."""
        return [e.length for e in self.entries if e.length is not None]

    @property
    def layout(self) -> str:
        """``"dynamic"``, ``"fixed"`` or ``"buckets"``."""
        return "dynamic" if self.dynamic else ("fixed" if len(self.entries) == 1 else "buckets")

    def for_length(self, length: int) -> tuple[Signature, int]:
        """The signature to run `length` tokens in, and the length to pad or cut to."""
        for entry in self.entries:
            if entry.length is None:
                return entry, length
            if entry.length >= length:
                return entry, entry.length
        longest = self.entries[-1]
        return longest, longest.length


def run_logits(signatures: Signatures, feeds: Mapping[str, Any], chunk: int = 32,
               real_length: bool = True) -> np.ndarray:
    """Logits of a file on int32 feeds of any batch, each run at the length it needs.

    With `real_length` (and a dynamic or bucketed file) examples are grouped by
    their real length (`real_lengths`): a batch-1 file runs each example alone
    at its own length, a dynamic-batch file runs `chunk` examples of similar
    length together at the longest of them; results come back in input order.
    Otherwise every example runs at the width of `feeds` (a fixed file's length).
    """
    n = len(feeds["token_ids"])
    width = int(np.asarray(feeds["token_ids"]).shape[1]) if n else 0
    batch = signatures.batch_size
    step = 1 if batch == 1 else (batch or chunk)
    if real_length and signatures.layout != "fixed":
        lengths = np.minimum(np.maximum(real_lengths(feeds), 1), width)
        order = np.argsort(lengths, kind="stable")
    else:
        lengths, order = np.full(n, width), np.arange(n)
    out: list[np.ndarray] = [None] * n  # type: ignore[list-item]
    for start in range(0, n, step):
        rows = order[start:start + step]
        entry, length = signatures.for_length(int(lengths[rows].max()))
        part = _fit_length({k: np.asarray(feeds[k])[rows] for k in INPUT_NAMES}, length)
        logits = _invoke(entry, part)
        for i, row in enumerate(rows):
            out[row] = logits[i]
    return np.stack(out) if out else np.zeros((0, 0), np.float32)


def _fit_length(part: Mapping[str, np.ndarray], length: int) -> dict[str, np.ndarray]:
    width = part["token_ids"].shape[1]
    if length <= width:
        return trim(part, length)
    pad = ((0, 0), (0, length - width))
    return {k: np.pad(np.asarray(part[k], np.int32), pad) for k in INPUT_NAMES}


def _invoke(entry: Signature, part: dict[str, np.ndarray]) -> np.ndarray:
    rows = len(part["token_ids"])
    if entry.batch_size not in (None, 1) and rows != entry.batch_size:
        pad = entry.batch_size - rows
        part = {k: np.concatenate([v, np.repeat(v[-1:], pad, 0)]) for k, v in part.items()}
    return np.asarray(entry.runner(**part)[entry.output])[:rows]


def measure_latency(
    model: Union[PathLike, bytes],
    *,
    runs: int = 50,
    warmup: int = 5,
    num_threads: int | None = None,
    inputs: Mapping[str, Any] | None = None,
    sequence_length: int | None = None,
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
            shape [1, L] or [L]), run at length L; default: a full-length
            example (every position real, the worst case) with fixed
            pseudo-random token ids.
        sequence_length: the length to time without `inputs`; default: the
            file's fixed length (its longest bucket), 128 for a
            dynamic-length file (which runs inputs longer than its export
            length at that length: pass it to time the longest input).

    Returns:
        ``{"median_ms", "mean_ms", "min_ms", "p90_ms", "runs", "sequence_length",
        "num_threads"}``.
    """
    if not isinstance(runs, int) or runs < 1:
        raise ValueError(f"`runs` must be an integer >= 1, got {runs!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"`warmup` must be an integer >= 0, got {warmup!r}")
    if sequence_length is not None and (not isinstance(sequence_length, int)
                                        or sequence_length < 1):
        raise ValueError(f"`sequence_length` must be a positive integer, got {sequence_length!r}")
    where = "the model bytes" if isinstance(model, (bytes, bytearray)) else repr(os.fspath(model))
    data = model if isinstance(model, (bytes, bytearray)) else read_tflite_bytes(model, "model")
    signatures = Signatures.load(make_interpreter(data, num_threads), where)
    feed = _latency_feed(data, signatures, inputs, sequence_length)
    entry, length = signatures.for_length(feed["token_ids"].shape[1])
    feed = _fit_length(feed, length)
    for _ in range(warmup):
        entry.runner(**feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        entry.runner(**feed)
        times.append((time.perf_counter() - start) * 1000.0)
    return {**latency_summary(times), "sequence_length": length, "num_threads": num_threads}


def latency_summary(times_ms: list[float]) -> dict[str, Any]:
    """median / mean / min / p90 (nearest rank) of a list of milliseconds."""
    ordered = sorted(times_ms)
    return {
        "median_ms": statistics.median(ordered),
        "mean_ms": statistics.fmean(ordered),
        "min_ms": ordered[0],
        "p90_ms": ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))],
        "runs": len(ordered),
    }


def _latency_feed(data: bytes, signatures: Signatures, inputs: Mapping[str, Any] | None,
                  sequence_length: int | None) -> dict[str, np.ndarray]:
    if inputs is not None:
        width = np.asarray(inputs["token_ids"]).shape[-1]
        return {k: np.asarray(inputs[k], np.int32).reshape(1, width) for k in INPUT_NAMES}
    length = sequence_length or (max(signatures.lengths) if signatures.lengths else 128)
    rng = np.random.default_rng(0)
    vocab = max(2, min(embedding_rows(data), 1000))
    return {
        "token_ids": rng.integers(1, vocab, size=(1, length)).astype(np.int32),
        "segment_ids": np.zeros((1, length), np.int32),
        "padding_mask": np.ones((1, length), np.int32),
    }
