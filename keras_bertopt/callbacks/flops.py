"""Training FLOPs of a BERT-style encoder, per token and per attended pair.

A training step costs about three forward passes (forward, plus backward
through activations and weights). In the forward pass each token goes through
every dense (matmul) kernel once, 2 FLOPs per weight, and each (query, key)
pair of a sequence costs 2 FLOPs per dimension twice (scores and the weighted
sum of values). So one training step over sequences of lengths ``s_i``:

    flops = 6 * matmul_weights * sum(s_i) + 6 * attention_dims * sum(s_i ** 2)

where ``attention_dims`` sums ``heads * (key_dim + value_dim)`` over the
attention layers. Counted on the real lengths (non-padding tokens) this is the
useful work; on the padded lengths it is the work done. Embedding look-ups,
softmax, layer norms and the classifier head (on [CLS] only) are left out:
they are a small fraction for BERT and not matmuls.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import keras

#: Forward + backward: a training step is about three forward passes.
TRAINING_FACTOR = 3


@dataclasses.dataclass(frozen=True)
class TransformerCost:
    """Matmul weights and attention width of an encoder (see the module docstring).

    Attributes:
        matmul_weights: weights of the dense kernels every token passes through.
        attention_dims: sum over attention layers of heads x (key_dim + value_dim).
    """

    matmul_weights: int
    attention_dims: int

    def training_flops(self, tokens: float, squared_lengths: float) -> float:
        """Training FLOPs for sequences with sum(s) = `tokens`, sum(s**2) = `squared_lengths`."""
        forward = 2 * self.matmul_weights * tokens + 2 * self.attention_dims * squared_lengths
        return TRAINING_FACTOR * forward

    @classmethod
    def of(cls, model: Any) -> TransformerCost:
        """Count a keras-hub task's (or backbone's) encoder from its variables' paths.

        Matmul weights are the backbone's ``*/kernel`` variables except the
        pooler's (it sees the [CLS] position only); the attention width comes
        from the ``query`` and ``value`` kernels, shaped (hidden, heads, dim).
        Works on pruned or shrunk backbones, as it reads the actual shapes.

        Raises:
            ValueError: no kernels found (not a BERT-style Keras model).
        """
        from keras_bertopt.selection import select_variables

        root = getattr(model, "backbone", None) or model
        if not isinstance(root, keras.Layer):
            raise ValueError(
                f"`model` must be a keras-hub task or backbone, got {type(model).__name__}"
            )
        kernels = select_variables(
            root, r"/kernel$", r"pool", trainable_only=False, argument="model", allow_empty=True
        )
        if not kernels:
            raise ValueError(f"`model` {type(model).__name__} has no dense kernels to count")
        weights = sum(math.prod(int(d) for d in v.shape) for v in kernels)
        attention = sum(
            math.prod(int(d) for d in v.shape[1:])
            for v in kernels
            if re.search(r"/(query|value)/kernel$", v.path)
        )
        return cls(matmul_weights=weights, attention_dims=attention)
