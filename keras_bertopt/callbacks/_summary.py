"""Optional TensorBoard output shared by the metrics callbacks."""

from __future__ import annotations

import math
import os
from typing import Any, Mapping


class ScalarWriter:
    """Writes scalars to a TensorBoard log directory; does nothing when `log_dir` is None."""

    def __init__(self, log_dir: str | os.PathLike[str] | None) -> None:
        if log_dir is not None and not isinstance(log_dir, (str, os.PathLike)):
            raise ValueError(f"`log_dir` must be a directory path or None, got {log_dir!r}")
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self._writer: Any = None

    def write(self, values: Mapping[str, float], step: int, prefix: str = "") -> None:
        """Write `values` (NaNs skipped) as `prefix + key` at `step`."""
        if self.log_dir is None or not values:
            return
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            for key, value in values.items():
                if value is not None and not math.isnan(float(value)):
                    tf.summary.scalar(prefix + key, float(value), step=int(step))
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def check_every(value: Any, argument: str) -> int | None:
    """Validate an every-N-steps argument (None or a positive integer)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{argument}` must be None or a positive integer, got {value!r}")
    return value
