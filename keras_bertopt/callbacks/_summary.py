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
        from tensorflow.core.framework import summary_pb2

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        # What tensorboard's `tf.summary.scalar` writes, without needing the
        # tensorboard package: a float32 scalar tagged for the "scalars" plugin.
        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
            data_class=summary_pb2.DATA_CLASS_SCALAR,
        )
        with self._writer.as_default():
            for key, value in values.items():
                if value is not None and not math.isnan(float(value)):
                    tf.summary.write(
                        prefix + key,
                        tf.constant(float(value), tf.float32),
                        step=int(step),
                        metadata=metadata,
                    )
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
