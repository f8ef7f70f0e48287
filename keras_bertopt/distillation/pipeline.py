"""What the `Distiller`'s `fit` / `evaluate` / `predict` take, made into batches.

`as_dataset` turns arrays or a `tf.data.Dataset` into batched ``(x, y,
sample_weight)`` data, `split_targets` separates labels from cached teacher
logits, and `unscale` undoes the per-replica loss scaling of `tf.distribute`
for the loss trackers. TensorFlow is imported only when a function needs it.

```python
from keras_bertopt.distillation.pipeline import as_dataset, split_targets
ds = as_dataset(["good", "bad"], [1, 0], batch_size=2)  # one batch of 2 texts
labels, cached_logits = split_targets(([1, 0], [[0.2, 1.5], [2.0, -1.0]]))
```
"""

from __future__ import annotations

import sys
from typing import Any

import keras


def split_targets(y: Any) -> tuple[Any, Any]:
    """``(labels, cached teacher logits or None)`` from the targets of a batch."""
    if isinstance(y, (tuple, list)) and len(y) == 2:
        return y[0], y[1]
    return y, None


def autotune() -> Any:
    """`tf.data.AUTOTUNE` (imports TensorFlow)."""
    import tensorflow as tf

    return tf.data.AUTOTUNE


def is_tf_dataset(x: Any) -> bool:
    """Whether `x` is a `tf.data.Dataset` (without importing TensorFlow when absent)."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(x, tf.data.Dataset)


def unpack(data: Any) -> tuple[Any, Any, Any]:
    """``(x, y, sample_weight)`` of `validation_data` (a dataset comes back as `x`)."""
    if is_tf_dataset(data):
        return data, None, None
    return keras.utils.unpack_x_y_sample_weight(tuple(data))


def as_dataset(x: Any, y: Any = None, sample_weight: Any = None, batch_size: Any = None) -> Any:
    """A batched `tf.data.Dataset` of ``(x, y, sample_weight)`` (a dataset passes through)."""
    import tensorflow as tf

    if isinstance(x, tf.data.Dataset):
        if y is not None or sample_weight is not None or batch_size is not None:
            raise ValueError(
                "when `x` is a tf.data.Dataset, pass no `y`, `sample_weight` or `batch_size` "
                "(the dataset yields batches of (features, labels))"
            )
        return x
    if x is None:
        raise ValueError("`x` is required: raw texts or a tf.data.Dataset of (texts, labels)")
    packed = keras.utils.pack_x_y_sample_weight(x, y, sample_weight)
    packed = keras.tree.map_structure(
        lambda v: (
            v
            if isinstance(v, tf.Tensor)
            else keras.ops.convert_to_numpy(v)
            if hasattr(v, "__array__")
            else v
        ),
        packed,
    )
    return tf.data.Dataset.from_tensor_slices(packed).batch(batch_size or 32)


def unscale(value: Any) -> Any:
    """A loss undone of its ``1 / replicas`` scaling under `tf.distribute`, for the trackers."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            value = value * replicas
    return value
