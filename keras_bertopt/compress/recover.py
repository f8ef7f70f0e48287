"""Build and recover one candidate: importance-based structured pruning, then distillation.

`teacher_logits` runs the fine-tuned model once over the training sentences
(length-bucketed batches) and keeps its logits; `recover_candidate` prunes the
model to a `Candidate` shape (first-order Taylor importance on a few training
batches) and trains the smaller model against those cached logits with
`keras_bertopt.distillation.Distiller` on length-bucketed batches.

Example:

```python
logits = teacher_logits(model, texts)
small = recover_candidate(model, Candidate(3, 12, 1536), texts, labels, logits,
                          RecoverySettings(freeze_embeddings=True, steps_per_execution=8))
```

`RecoverySettings(freeze_embeddings=True)` keeps the token, position and
segment tables fixed during recovery (the optimizer and its weight decay skip
them: on MiniLM about half the parameters); `steps_per_execution` runs that
many training steps per call into the compiled step function.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterator, Sequence

import numpy as np

from keras_bertopt.compress.candidates import Candidate

#: The dtype policies a recovery trains under (float32 weights in both).
DTYPE_POLICIES = ("float32", "mixed_bfloat16")


@dataclasses.dataclass(frozen=True)
class RecoverySettings:
    """How a candidate is recovered (see `compress_to_target`).

    `freeze_embeddings`: the student's token, position and segment embedding
    tables stay as they are (not trained, not weight-decayed); the embedding
    LayerNorm and everything above it train. `steps_per_execution`: training
    steps per call into the compiled step (`keras.Model.compile`). `dropout`:
    the student's dropout rate (hidden, attention and classifier) during
    recovery, e.g. 0.0 to skip the random masks; None keeps the model's. The
    model's own rates are back in place afterwards. `dtype_policy`: the Keras
    dtype policy the student trains under, e.g. "mixed_bfloat16" (bfloat16
    matmuls, float32 weights); the recovered model is float32 either way.
    """

    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 1e-4
    temperature: float = 2.0
    alpha: float = 0.7
    importance_batches: int = 8
    seed: int = 0
    freeze_embeddings: bool = False
    steps_per_execution: int = 1
    dropout: float | None = None
    hidden_weight: float = 0.0
    dtype_policy: str = "float32"

    def __post_init__(self) -> None:
        if self.dtype_policy not in DTYPE_POLICIES:
            raise ValueError(f"`dtype_policy` must be one of {DTYPE_POLICIES}, "
                             f"got {self.dtype_policy!r}")
        if self.dropout is not None and (
                isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float))
                or not 0.0 <= self.dropout < 1.0):
            raise ValueError(f"`dropout` must be a rate in [0, 1) or None, got {self.dropout!r}")
        if not isinstance(self.freeze_embeddings, bool):
            raise ValueError(
                f"`freeze_embeddings` must be True or False, got {self.freeze_embeddings!r}")
        for name in ("epochs", "batch_size", "importance_batches", "steps_per_execution"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}")
        if isinstance(self.hidden_weight, bool) or not isinstance(
                self.hidden_weight, (int, float)) or not self.hidden_weight >= 0:
            raise ValueError(f"`hidden_weight` must be a number >= 0, got {self.hidden_weight!r}")
        if not isinstance(self.learning_rate, (int, float)) or not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0, got {self.learning_rate!r}")

    def describe_distillation(self) -> str:
        """What the student learns from, in words, e.g.
        ``"logit distillation (T 2.0, alpha 0.7) + hidden states (weight 1.0, teacher live)"``."""
        text = f"logit distillation (T {self.temperature}, alpha {self.alpha})"
        if self.hidden_weight > 0:
            text += f" + hidden states (weight {self.hidden_weight}, teacher live)"
        return text


def _swap_preprocessor(model: Any) -> Any:
    """Give `model` a per-batch padding preprocessor; returns the old one to put back."""
    from keras_bertopt.bucketing import dynamic_padding

    old = model.preprocessor
    dynamic_padding(model)
    return old


def teacher_logits(model: Any, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """`model`'s logits on `texts` (float32, one row per text, in order); `model` is unchanged."""
    from keras_bertopt.bucketing import bucket_by_length

    old = _swap_preprocessor(model)
    try:
        out = np.zeros((len(texts), 0), "float32")
        data = bucket_by_length((list(texts), list(range(len(texts)))), model.preprocessor,
                                batch_size, shuffle=False)
        for x, index in data:
            logits = np.asarray(model.predict_on_batch(x), "float32")
            if out.shape[1] == 0:
                out = np.zeros((len(texts), logits.shape[-1]), "float32")
            out[np.asarray(index)] = logits
    finally:
        model.preprocessor = old
    return out


def prune_to(model: Any, candidate: Candidate, importance: str = "magnitude",
             data: Any = None, batches: int = 8) -> Any:
    """A copy of `model` pruned to `candidate`'s shape (`prune_structure`, uniform per layer)."""
    from keras_bertopt.pruning import prune_structure

    counts = candidate.prune_arguments(model)
    if min(counts.values()) < 0:
        raise ValueError(f"candidate {candidate.name} is larger than the model")
    return prune_structure(model, heads=counts["heads"] or None,
                           intermediate=counts["intermediate"] or None,
                           layers=counts["layers"] or None, importance=importance,
                           data=data, batches=batches)


#: The student's embedding tables `RecoverySettings.freeze_embeddings` keeps fixed.
EMBEDDING_TABLES = ("token_embedding", "position_embedding", "segment_embedding")


@contextlib.contextmanager
def frozen_embeddings(model: Any, freeze: bool = True) -> Iterator[list[Any]]:
    """Within the block, `model`'s backbone embedding tables are not trainable.

    Set before `compile` (Keras collects the trainable weights there); on exit
    each table's `trainable` is what it was, so a saved model trains as before.
    Yields the frozen layers (none when `freeze` is False).
    """
    layers = [model.backbone.get_layer(name) for name in EMBEDDING_TABLES] if freeze else []
    before = [layer.trainable for layer in layers]
    for layer in layers:
        layer.trainable = False
    try:
        yield layers
    finally:
        for layer, trainable in zip(layers, before, strict=True):
            layer.trainable = trainable


@contextlib.contextmanager
def recovery_dropout(model: Any, rate: float | None) -> Iterator[None]:
    """Within the block, `model`'s dropout rates are `rate` (None: unchanged).

    Set before `compile`/`fit` (the rates are read when the step is traced);
    on exit the hidden, attention and classifier rates are what they were.
    """
    import keras

    from keras_bertopt import _compat
    from keras_bertopt.regularizers import set_dropout

    if rate is None:
        yield
        return
    attention = [_compat.attention_dropout_layer(layer) for layer in _compat.flatten_layers(model)
                 if isinstance(layer, keras.layers.MultiHeadAttention)]
    before = {"hidden": model.backbone.dropout,
              "attention": next((d.rate for d in attention if d is not None), None),
              "classifier": getattr(model, "dropout", None)}
    kinds = {k: v for k, v in before.items() if v is not None}
    set_dropout(model, **{k: float(rate) for k in kinds})
    try:
        yield
    finally:
        set_dropout(model, **kinds)


def _training_data(student: Any, texts: Sequence[str], labels: Sequence[int],
                   logits: np.ndarray, settings: RecoverySettings) -> Any:
    import tensorflow as tf

    from keras_bertopt.bucketing import bucket_by_length

    label_table = tf.constant(np.asarray(labels), tf.int32)
    data = bucket_by_length((list(texts), list(range(len(texts)))), student.preprocessor,
                            settings.batch_size, seed=settings.seed)
    if settings.hidden_weight > 0:  # the teacher runs for its hidden states: labels only
        return data.map(lambda x, i: (x, tf.gather(label_table, i)))
    logit_table = tf.constant(logits)
    return data.map(lambda x, i: (x, (tf.gather(label_table, i), tf.gather(logit_table, i))))


def recover_candidate(
    model: Any,
    candidate: Candidate,
    texts: Sequence[str],
    labels: Sequence[int],
    logits: np.ndarray | None,
    settings: RecoverySettings = RecoverySettings(),
) -> Any:
    """`model` pruned to `candidate` (Taylor importance) and distilled from cached `logits`.

    With `settings.hidden_weight` > 0 the teacher runs on every batch, and `logits`
    may be None. Returns the recovered keras-hub classifier, with `model`'s preprocessor.
    """
    import keras
    import tensorflow as tf

    from keras_bertopt.distillation import Distiller
    from keras_bertopt.models import with_dtype_policy
    from keras_bertopt.optimizers import create_optimizer

    if logits is None and settings.hidden_weight == 0:
        raise ValueError("`logits` (the teacher's cached logits) are needed unless "
                         "`settings.hidden_weight` > 0")
    keras.utils.set_random_seed(settings.seed)
    n = settings.importance_batches * settings.batch_size
    scoring = tf.data.Dataset.from_tensor_slices(
        (list(texts[:n]), np.asarray(labels[:n], "int32"))).batch(settings.batch_size)
    student = prune_to(model, candidate, "taylor", scoring, settings.importance_batches)
    fixed = _swap_preprocessor(student)
    try:
        data = _training_data(student, texts, labels, logits, settings)
        steps = sum(1 for _ in data) * settings.epochs
        trainee, teacher = student, model
        if settings.dtype_policy != "float32":
            # keras.distillation.Distiller wants one output dtype for teacher and student.
            trainee = with_dtype_policy(student, settings.dtype_policy)
            teacher = with_dtype_policy(model, settings.dtype_policy)
        distiller = Distiller(teacher, trainee, temperature=settings.temperature,
                              alpha=settings.alpha, hidden_weight=settings.hidden_weight)
        with frozen_embeddings(trainee, settings.freeze_embeddings), \
                recovery_dropout(trainee, settings.dropout):
            distiller.compile(
                optimizer=create_optimizer(settings.learning_rate, steps,
                                           warmup_steps=max(1, steps // 10), weight_decay=0.01),
                steps_per_execution=settings.steps_per_execution)
            distiller.fit(data, epochs=settings.epochs, verbose=0)
        if trainee is not student:
            student.set_weights(trainee.get_weights())
    finally:
        student.preprocessor = fixed
    return student
