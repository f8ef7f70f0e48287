"""Importance scores of attention heads, feed-forward neurons and whole transformer layers.

Two ways to score (the `method` argument of `importance_scores`):

``"magnitude"`` (weights only)
    head ``h`` of a layer: the L2 norm of every weight that belongs to it, i.e.
    its slices of the query, key and value kernels and biases
    (``kernel[:, h, :]``, ``bias[h, :]``) and of the attention output kernel
    (``kernel[h, :, :]``). Neuron ``j``: the L2 norm of its column of the
    intermediate kernel, its bias and its row of the feed-forward output
    kernel. Layer: the L2 norm of all of the layer's head and neuron weights
    (``sqrt(sum heads**2 + sum neurons**2)``).

``"taylor"`` (a few batches of data; Michel et al. 2019, "Are Sixteen Heads Really
Better than One?")
    Put a gate ``xi_h = 1`` on each head's output (before the attention output
    projection) and ``xi_j = 1`` on each neuron's activation; the score is
    ``|dL/dxi|``, the first-order estimate of the loss change when the unit is
    removed, averaged over batches (``L`` the batch-mean loss). Because the
    head's output enters the network only through ``W_o[h]``,
    ``dL/dxi_h = sum(W_o[h] * dL/dW_o[h])`` exactly (gradient x activation
    summed over positions), and likewise ``dL/dxi_j = sum(W_2[j] * dL/dW_2[j])``
    with ``W_2`` the feed-forward output kernel; so one ordinary backward pass
    per batch gives every score, with no change to the model. Layer ``l``: the
    first-order loss change when all its heads and neurons are removed,
    ``|sum_h dL/dxi_h + sum_j dL/dxi_j|`` per batch, averaged.

Scores are plain NumPy arrays in an `ImportanceScores`.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Iterable

import keras
import numpy as np

from keras_bertopt import _compat

METHODS = ("magnitude", "taylor")


@dataclasses.dataclass
class ImportanceScores:
    """Scores per unit: higher means more important.

    Attributes:
        heads: one array per transformer layer, shape ``(num_heads_of_layer,)``.
        intermediate: one array per layer, shape ``(intermediate_dim_of_layer,)``.
        layers: shape ``(num_layers,)``.
        method: ``"magnitude"`` or ``"taylor"``.
        batches: batches of data used (0 for magnitude).
    """

    heads: list[np.ndarray]
    intermediate: list[np.ndarray]
    layers: np.ndarray
    method: str
    batches: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready lists."""
        return {
            "method": self.method,
            "batches": self.batches,
            "heads": [h.tolist() for h in self.heads],
            "intermediate": [n.tolist() for n in self.intermediate],
            "layers": self.layers.tolist(),
        }


@dataclasses.dataclass
class EncoderParts:
    """The Keras layers of one keras-hub transformer layer that structured pruning touches."""

    encoder: Any
    query: Any
    key: Any
    value: Any
    output: Any
    intermediate: Any
    ffn_output: Any

    @property
    def num_heads(self) -> int:
        return int(self.query.kernel.shape[1])

    @property
    def key_dim(self) -> int:
        return int(self.query.kernel.shape[2])

    @property
    def intermediate_dim(self) -> int:
        return int(self.intermediate.kernel.shape[1])


def backbone_of(model: Any) -> Any:
    """The keras-hub BERT backbone of a task (or the backbone itself)."""
    backbone = getattr(model, "backbone", model)
    if not hasattr(backbone, "transformer_layers") or not backbone.transformer_layers:
        raise ValueError(
            "`model` must be a keras-hub BERT task or backbone (with `transformer_layers`), "
            f"got {type(model).__name__}"
        )
    return backbone


def encoder_parts(model: Any) -> list[EncoderParts]:
    """The prunable parts of every transformer layer of `model`, in order."""
    parts = []
    for i, enc in enumerate(backbone_of(model).transformer_layers):
        try:
            sub = _compat.encoder_sublayers(enc) if enc.built else None
        except AttributeError:
            sub = None
        if sub is None:
            raise ValueError(
                f"transformer layer {i} ({enc.name}) is not a built keras-hub TransformerEncoder"
            )
        attention = sub["attention"]  # keras MultiHeadAttention: public sublayer properties
        parts.append(EncoderParts(
            encoder=enc, query=attention.query_dense, key=attention.key_dense,
            value=attention.value_dense, output=attention.output_dense,
            intermediate=sub["intermediate"], ffn_output=sub["output"],
        ))
    return parts


def _np(x: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def _magnitude(parts: EncoderParts) -> tuple[np.ndarray, np.ndarray]:
    heads = np.zeros(parts.num_heads)
    for dense in (parts.query, parts.key, parts.value):
        heads += np.sum(_np(dense.kernel) ** 2, axis=(0, 2))
        if dense.bias is not None:
            heads += np.sum(_np(dense.bias) ** 2, axis=1)
    heads += np.sum(_np(parts.output.kernel) ** 2, axis=(1, 2))
    neurons = np.sum(_np(parts.intermediate.kernel) ** 2, axis=0)
    if parts.intermediate.bias is not None:
        neurons += _np(parts.intermediate.bias) ** 2
    neurons += np.sum(_np(parts.ffn_output.kernel) ** 2, axis=1)
    return heads, neurons


def magnitude_scores(model: Any) -> ImportanceScores:
    """Weight-magnitude scores (see the module docstring for the definitions)."""
    squares = [_magnitude(p) for p in encoder_parts(model)]
    layers = np.sqrt([h.sum() + n.sum() for h, n in squares])
    return ImportanceScores(
        heads=[np.sqrt(h) for h, _ in squares],
        intermediate=[np.sqrt(n) for _, n in squares],
        layers=np.asarray(layers),
        method="magnitude",
    )


def _default_loss(model: Any) -> Any:
    activation = getattr(model, "activation", None)
    name = getattr(activation, "__name__", "linear") if activation is not None else "linear"
    return keras.losses.SparseCategoricalCrossentropy(from_logits=name == "linear")


def _model_inputs(model: Any, x: Any) -> Any:
    """Token dicts for `model`: raw strings go through its preprocessor."""
    if isinstance(x, dict):
        return x
    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is None:
        raise ValueError(
            "`data` holds raw inputs but `model` has no preprocessor; pass token-id dicts"
        )
    out = preprocessor(x)
    return out[0] if isinstance(out, tuple) else out


def _batches(data: Any, batches: int) -> Iterable[tuple[Any, Any]]:
    if isinstance(data, tuple) and len(data) in (2, 3):
        data = [data]
    for element in itertools.islice(iter(data), batches):
        if not isinstance(element, (tuple, list)) or len(element) < 2:
            raise ValueError(
                "`data` must yield (inputs, labels) batches like `fit`'s datasets, got "
                f"{type(element).__name__}"
            )
        yield element[0], element[1]


def taylor_scores(model: Any, data: Any, batches: int = 8, loss: Any = None) -> ImportanceScores:
    """First-order Taylor (gate-gradient) scores over up to `batches` batches of `data`.

    Args:
        model: a keras-hub BERT classifier (raw-string data needs its preprocessor).
        data: a `tf.data.Dataset` / iterable of ``(inputs, labels)`` batches, or one
            ``(inputs, labels)`` tuple.
        batches: most batches used.
        loss: the loss (default: sparse categorical cross-entropy, from logits
            when the classifier has no output activation).
    """
    import tensorflow as tf

    if not isinstance(batches, int) or batches < 1:
        raise ValueError(f"`batches` must be an integer >= 1, got {batches!r}")
    parts = encoder_parts(model)
    loss_fn = keras.losses.get(loss) if loss is not None else _default_loss(model)
    kernels = [p.output.kernel for p in parts] + [p.ffn_output.kernel for p in parts]
    n = len(parts)
    heads = [np.zeros(p.num_heads) for p in parts]
    neurons = [np.zeros(p.intermediate_dim) for p in parts]
    layers = np.zeros(n)
    used = 0
    for x, y in _batches(data, batches):
        inputs = _model_inputs(model, x)
        with tf.GradientTape() as tape:
            value = loss_fn(y, model(inputs, training=False))
        grads = tape.gradient(value, kernels)
        for i in range(n):
            h = np.sum(_np(kernels[i]) * _np(grads[i]), axis=(1, 2))
            j = np.sum(_np(kernels[n + i]) * _np(grads[n + i]), axis=1)
            heads[i] += np.abs(h)
            neurons[i] += np.abs(j)
            layers[i] += abs(h.sum() + j.sum())
        used += 1
    if used == 0:
        raise ValueError("`data` yielded no batch")
    return ImportanceScores(
        heads=[h / used for h in heads], intermediate=[j / used for j in neurons],
        layers=layers / used, method="taylor", batches=used,
    )


def importance_scores(
    model: Any, method: str = "magnitude", data: Any = None, batches: int = 8, loss: Any = None
) -> ImportanceScores:
    """Importance of every head, feed-forward neuron and layer of a keras-hub BERT model.

    Args:
        model: a keras-hub BERT task (e.g. `BertTextClassifier`) or backbone.
        method: ``"magnitude"`` (weights only) or ``"taylor"`` (needs `data`).
        data: ``(inputs, labels)`` batches for ``"taylor"``.
        batches: most batches of `data` used.
        loss: loss for ``"taylor"`` (default: sparse categorical cross-entropy).

    Returns:
        `ImportanceScores` (NumPy arrays; higher is more important).

    Example:

    ```python
    scores = keras_bertopt.pruning.importance_scores(model, "taylor", data=train.take(4))
    print(scores.heads[0], scores.layers)
    ```
    """
    if method not in METHODS:
        raise ValueError(f"`importance` must be one of {METHODS}, got {method!r}")
    if method == "magnitude":
        return magnitude_scores(model)
    if data is None:
        raise ValueError("`importance`='taylor' needs `data`: a few (inputs, labels) batches")
    return taylor_scores(model, data, batches=batches, loss=loss)
