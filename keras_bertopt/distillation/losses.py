"""The distillation math, in `keras.ops` (no Keras wiring here).

* `logits_distillation(temperature)`: Hinton's soft-target loss,
  ``T**2 * mean_batch KL(softmax(t / T) || softmax(s / T))``, as Keras's own
  `keras.distillation.LogitsDistillation` given a `keras.losses.KLDivergence`
  *instance*. (With its default ``loss="kl_divergence"`` string, Keras 3.15.1
  resolves the loss to the plain function, skips the softmax and the ``T**2``
  factor and computes KL on raw scaled logits; see docs/guides/distillation.md.)
* `hidden_state_loss`: TinyBERT's mean squared error between mapped hidden
  states, over real (non-padding) tokens.
* `attention_loss`: MiniLM's KL divergence between teacher and student
  self-attention distributions, per head, over real query positions.

Losses are means over the local batch, scaled for `tf.distribute` like every
Keras loss (so gradients summed over replicas are the global mean's).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

_EPSILON = 1e-7


def logits_distillation(temperature: float) -> Any:
    """A `keras.distillation.LogitsDistillation` computing Hinton's T**2-scaled KL divergence."""
    return keras.distillation.LogitsDistillation(
        temperature=temperature, loss=keras.losses.KLDivergence()
    )


def _scale_for_distribution(value: Any) -> Any:
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            value = value / replicas
    return value


def _token_weights(padding_mask: Any, dtype: str = "float32") -> Any:
    return ops.cast(ops.not_equal(padding_mask, 0), dtype)


def hidden_state_loss(teacher_hidden: Any, student_hidden: Any, padding_mask: Any) -> Any:
    """Mean over real tokens of the mean squared difference across the hidden axis.

    Args:
        teacher_hidden: ``[batch, length, hidden]``.
        student_hidden: ``[batch, length, hidden]``, already projected to the teacher's width.
        padding_mask: ``[batch, length]``, non-zero on real tokens.

    Computed in float32 whatever the inputs' dtypes (a `mixed_bfloat16` student's hidden
    states against a float32 teacher's), as `attention_loss` is and as Keras computes losses
    under mixed precision.
    """
    weights = _token_weights(padding_mask)
    t = ops.cast(teacher_hidden, "float32")
    s = ops.cast(student_hidden, "float32")
    per_token = ops.mean(ops.square(s - t), axis=-1)
    loss = ops.sum(per_token * weights) / ops.maximum(ops.sum(weights), 1.0)
    return _scale_for_distribution(loss)


def attention_loss(teacher_attention: Any, student_attention: Any, padding_mask: Any) -> Any:
    """KL(teacher || student) of attention distributions, mean over heads and real queries.

    Args:
        teacher_attention: softmax attention probabilities ``[batch, heads, query, key]``.
        student_attention: as `teacher_attention`.
        padding_mask: ``[batch, length]``, non-zero on real tokens.
    """
    t = ops.cast(teacher_attention, "float32")
    s = ops.cast(student_attention, "float32")
    kl = ops.sum(
        t * (ops.log(ops.maximum(t, _EPSILON)) - ops.log(ops.maximum(s, _EPSILON))), axis=-1
    )  # [batch, heads, query]
    weights = _token_weights(padding_mask)[:, None, :]
    heads = ops.cast(ops.shape(kl)[1], "float32")
    loss = ops.sum(kl * weights) / ops.maximum(ops.sum(weights) * heads, 1.0)
    return _scale_for_distribution(loss)
