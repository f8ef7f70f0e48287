"""Cache a teacher's logits for a fixed dataset, so distillation skips the teacher's pass.

A long distillation over a fixed training set pays the teacher's forward pass
every epoch. `cache_teacher_logits` runs the teacher once and returns a
dataset of ``(x, (y, teacher_logits))``; `Distiller` recognises such targets
and uses the stored logits (logit distillation only: hidden states and
attention maps are too large to keep).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_bertopt.padding import concatenate_padded


def cache_teacher_logits(
    teacher: Any,
    dataset: Any,
    *,
    batch_size: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
) -> Any:
    """Run `teacher` (inference mode) once over `dataset`; return ``(x, (y, logits))`` batches.

    Example:

    ```python
    train = keras_bertopt.distillation.cache_teacher_logits(teacher, train, shuffle=True)
    distiller.fit(train, epochs=3)          # the teacher does not run again
    ```

    Args:
        teacher: a keras model whose `predict_on_batch` takes `dataset`'s
            features (a keras-hub task with its preprocessor takes raw strings).
        dataset: a finite `tf.data.Dataset` of ``(features, labels)`` batches.
            It is iterated once; its examples are kept in memory with the logits.
        batch_size: batch size of the returned dataset; default: the first
            batch's size.
        shuffle: reshuffle the examples (with their logits) every epoch.
        seed: shuffle seed.

    Returns:
        A batched `tf.data.Dataset` of ``(features, (labels, teacher_logits))``.

    Raises:
        ValueError: `dataset` is not a dataset of (features, labels) pairs, is
            empty, or `batch_size` < 1.
    """
    import keras
    import tensorflow as tf

    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(
            "`dataset` must be a tf.data.Dataset of (features, labels), got "
            f"{type(dataset).__name__}"
        )
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}")
    features, labels, logits = [], [], []
    for element in dataset:
        if not isinstance(element, (tuple, list)) or len(element) != 2:
            raise ValueError(
                "`dataset` must yield (features, labels) batches; got an element with "
                f"{len(element) if isinstance(element, (tuple, list)) else 1} part(s)"
            )
        x, y = element
        features.append(keras.tree.map_structure(np.asarray, x))
        labels.append(np.asarray(y))
        logits.append(np.asarray(teacher.predict_on_batch(x), dtype="float32"))
    if not labels:
        raise ValueError("`dataset` is empty")
    if batch_size is None:
        batch_size = int(labels[0].shape[0])
    # Batches from a per-batch padding preprocessor differ in width: pad to the widest.
    x_all = concatenate_padded(features)
    cached = tf.data.Dataset.from_tensor_slices(
        (x_all, (np.concatenate(labels), np.concatenate(logits)))
    )
    if shuffle:
        cached = cached.shuffle(
            len(np.concatenate(labels)), seed=seed, reshuffle_each_iteration=True
        )
    return cached.batch(batch_size).prefetch(tf.data.AUTOTUNE)
