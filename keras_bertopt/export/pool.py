"""Several LiteRT interpreters of one file, run side by side on threads.

One interpreter runs one call at a time; LiteRT releases Python's GIL while a
call runs, so `workers` interpreters on `workers` threads keep that many cores
busy. `InterpreterPool.run_logits` sorts a batch of examples by real length,
cuts it into pieces (one file batch of similar lengths each on a dynamic-batch
file, a few examples each on a batch-1 file) and hands them to whichever
interpreter is free; the outputs come back in input order, each row the same as
`keras_bertopt.export.interpreter.run_logits` gives on one interpreter.

Example:

```python
pool = InterpreterPool("model.tflite", workers=2)
logits = pool.run_logits(arrays)      # int32 token_ids / segment_ids / padding_mask
pool.close()
```
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
from typing import Any, Mapping, Union

import numpy as np

from keras_bertopt.export.flatbuffer import read_tflite_bytes
from keras_bertopt.export.inputs import INPUT_NAMES, real_lengths
from keras_bertopt.export.interpreter import Signatures, make_interpreter, run_logits

PathLike = Union[str, "os.PathLike[str]"]

#: Examples per piece of work on a batch-1 file (small: the threads share work evenly).
BATCH1_PIECE = 8


def check_workers(workers: Any, argument: str = "workers") -> int:
    """`workers` as an int >= 1, or None -> the number of CPU cores."""
    if workers is None:
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"`{argument}` must be an integer >= 1 or None (all cores), "
                         f"got {workers!r}")
    return workers


class InterpreterPool:
    """`workers` interpreters of one exported file and the threads that run them.

    Args:
        model: a .tflite path (from `to_tflite`) or its bytes.
        workers: interpreters (and threads); None: one per CPU core.
        num_threads: LiteRT threads inside each interpreter (default 1: the
            parallelism comes from the workers).
        first: already loaded signatures of the same file to use as one worker.
    """

    def __init__(self, model: Union[PathLike, bytes], workers: int | None = None, *,
                 num_threads: int | None = 1, first: Signatures | None = None) -> None:
        self.workers = check_workers(workers)
        where = "the model bytes" if isinstance(model, (bytes, bytearray)) else repr(
            os.fspath(model))
        self.signatures = [first] if first is not None else []
        if len(self.signatures) < self.workers:
            data = model if isinstance(model, (bytes, bytearray)) else read_tflite_bytes(model)
        while len(self.signatures) < self.workers:
            self.signatures.append(Signatures.load(make_interpreter(data, num_threads), where))
        self._free: queue.SimpleQueue[Signatures] = queue.SimpleQueue()
        for signatures in self.signatures:
            self._free.put(signatures)
        self._executor = (concurrent.futures.ThreadPoolExecutor(
            self.workers, thread_name_prefix="keras_bertopt_litert") if self.workers > 1 else None)

    def _run(self, feeds: Mapping[str, np.ndarray], chunk: int) -> np.ndarray:
        signatures = self._free.get()
        try:
            return run_logits(signatures, feeds, chunk)
        finally:
            self._free.put(signatures)

    def run_logits(self, feeds: Mapping[str, Any], chunk: int = 32) -> np.ndarray:
        """Outputs of the file on int32 feeds of any batch, in input order (see `run_logits`)."""
        feeds = {k: np.asarray(feeds[k], np.int32) for k in INPUT_NAMES}
        n = len(feeds["token_ids"])
        batch = self.signatures[0].batch_size
        step = BATCH1_PIECE if batch == 1 else (batch or chunk)
        if self._executor is None or n <= step:
            return self._run(feeds, chunk)
        order = np.argsort(real_lengths(feeds), kind="stable")
        pieces = [order[start:start + step] for start in range(0, n, step)]
        futures = [self._executor.submit(self._run, {k: v[rows] for k, v in feeds.items()}, chunk)
                   for rows in pieces]
        outputs = [f.result() for f in futures]
        out = np.empty((n, outputs[0].shape[-1]), outputs[0].dtype)
        for rows, logits in zip(pieces, outputs, strict=True):
            out[rows] = logits
        return out

    def close(self) -> None:
        """Stop the threads (the pool runs on the calling thread afterwards)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __enter__(self) -> InterpreterPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"InterpreterPool({self.workers} workers, {self.signatures[0].layout} length)"
