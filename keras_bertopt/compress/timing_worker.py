"""Runs `paired_times` in a process of its own (`python -m keras_bertopt.compress.timing_worker`).

Its one argument is a folder DIR. `time_in_fresh_process` writes ``DIR/request.json``
(``{"files": {name: path}, "rounds": n}``) and ``DIR/arrays.npz`` (``{name}/{input}``
int32 rows) there and reads ``DIR/times.npz`` and ``DIR/labels.npz`` back. The process
imports LiteRT and NumPy only, as an app holds the interpreter and nothing else.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Mapping

import numpy as np


class _Runner:
    """One one-thread interpreter of a file, called the way `paired_times` calls a runner."""

    def __init__(self, path: str) -> None:
        from keras_bertopt.export.pool import InterpreterPool

        self.pool = InterpreterPool(path, 1, num_threads=1)

    def predict_logits(self, row: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.pool.run_logits(row)


def main(folder: str) -> None:
    from keras_bertopt.compress.timing import paired_times
    from keras_bertopt.export.inputs import INPUT_NAMES

    with open(os.path.join(folder, "request.json"), encoding="utf-8") as f:
        request = json.load(f)
    with np.load(os.path.join(folder, "arrays.npz")) as stored:
        arrays = {name: {k: stored[f"{name}/{k}"] for k in INPUT_NAMES}
                  for name in request["files"]}
    runners = {name: _Runner(path) for name, path in request["files"].items()}
    times, labels = paired_times(runners, arrays, int(request["rounds"]))
    np.savez(os.path.join(folder, "labels.npz"), **labels)
    np.savez(os.path.join(folder, "times.npz"), **times)


if __name__ == "__main__":
    main(sys.argv[1])
