"""`PrunedBertBackbone`: a BERT encoder whose layers may differ in head count and FFN width.

keras-hub's `TransformerEncoder` derives ``key_dim = hidden_dim // num_heads``
and a `BertBackbone` gives every layer the same ``num_heads`` and
``intermediate_dim``. After structured pruning neither holds: a layer that lost
3 of 12 heads still has 32-wide heads (9 x 32 = 288 != 384), and layers keep
different numbers of heads and feed-forward neurons. The two classes here lift
exactly those two restrictions and change nothing else, so the variable paths
(``transformer_layer_0/self_attention_layer/query/kernel``, ...) and the
computation are keras-hub's, and keras-hub tasks (`BertTextClassifier`) accept
the backbone as they accept a `BertBackbone` (it is a subclass).

```python
backbone = PrunedBertBackbone(
    vocabulary_size=30522, num_heads=[12, 9, 6], key_dim=32, hidden_dim=384,
    intermediate_dim=[1536, 768, 1024], max_sequence_length=512)
model = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=pre)
```

`keras_bertopt.pruning.prune_structure` builds these; you rarely build one by hand.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import keras_hub
from keras.layers import ReversibleEmbedding

from keras_bertopt._compat import bert_activation, clone_initializer


def _initializer(stddev: float = 0.02) -> Any:
    return keras.initializers.TruncatedNormal(stddev=stddev)


@keras.saving.register_keras_serializable(package="keras_bertopt")
class PrunedTransformerEncoder(keras_hub.layers.TransformerEncoder):
    """keras-hub's `TransformerEncoder` with a free per-head size `key_dim`.

    Args:
        intermediate_dim: as in `keras_hub.layers.TransformerEncoder`.
        num_heads: as in `keras_hub.layers.TransformerEncoder`.
        key_dim: size of each attention head; None gives keras-hub's
            ``hidden_dim // num_heads`` (then this layer equals keras-hub's).
        **kwargs: the other `keras_hub.layers.TransformerEncoder` arguments (`dropout`,
            `activation`, `layer_norm_epsilon`, initializers, `normalize_first`).
    """

    def __init__(self, intermediate_dim: int, num_heads: int, key_dim: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(intermediate_dim=intermediate_dim, num_heads=num_heads, **kwargs)
        self.key_dim = None if key_dim is None else int(key_dim)

    def build(self, inputs_shape: Any) -> None:
        hidden_dim = inputs_shape[-1]
        key_dim = self.key_dim or int(hidden_dim // self.num_heads)
        dense = {
            "kernel_initializer": self.kernel_initializer,
            "bias_initializer": self.bias_initializer,
        }
        clone = {k: clone_initializer(v) for k, v in dense.items()}
        self._self_attention_layer = keras.layers.MultiHeadAttention(
            num_heads=self.num_heads, key_dim=key_dim,
            dropout=self.dropout, dtype=self.dtype_policy, name="self_attention_layer", **clone,
        )
        self._self_attention_layer.build(query_shape=inputs_shape, value_shape=inputs_shape)
        self._self_attention_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy,
            name="self_attention_layer_norm",
        )
        self._self_attention_layer_norm.build(inputs_shape)
        self._self_attention_dropout = keras.layers.Dropout(
            rate=self.dropout, dtype=self.dtype_policy, name="self_attention_dropout"
        )
        self._feedforward_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy,
            name="feedforward_layer_norm",
        )
        self._feedforward_layer_norm.build(inputs_shape)
        self._feedforward_intermediate_dense = keras.layers.Dense(
            self.intermediate_dim, activation=self.activation, dtype=self.dtype_policy,
            name="feedforward_intermediate_dense",
            **{k: clone_initializer(v) for k, v in dense.items()},
        )
        self._feedforward_intermediate_dense.build(inputs_shape)
        self._feedforward_output_dense = keras.layers.Dense(
            hidden_dim, dtype=self.dtype_policy, name="feedforward_output_dense",
            **{k: clone_initializer(v) for k, v in dense.items()},
        )
        self._feedforward_output_dense.build(tuple(inputs_shape[:-1]) + (self.intermediate_dim,))
        self._feedforward_dropout = keras.layers.Dropout(
            rate=self.dropout, dtype=self.dtype_policy, name="feedforward_dropout"
        )
        self.built = True

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["key_dim"] = self.key_dim
        return config


def _per_layer(value: int | Sequence[int], num_layers: int | None, name: str) -> list[int]:
    if isinstance(value, (int,)) and not isinstance(value, bool):
        if num_layers is None:
            raise ValueError(f"`num_layers` is needed when `{name}` is one integer")
        values = [int(value)] * num_layers
    else:
        try:
            values = [int(v) for v in value]
        except (TypeError, ValueError):
            raise ValueError(
                f"`{name}` must be a positive integer or a list of them, got {value!r}"
            ) from None
    if not values or min(values) < 1:
        raise ValueError(f"`{name}` must hold positive integers (one per layer), got {value!r}")
    if num_layers is not None and len(values) != num_layers:
        raise ValueError(f"`{name}` has {len(values)} entries but `num_layers` is {num_layers}")
    return values


@keras.saving.register_keras_serializable(package="keras_bertopt")
class PrunedBertBackbone(keras_hub.models.BertBackbone):
    """A `BertBackbone` whose layers have their own head count and feed-forward width.

    Args:
        vocabulary_size: token vocabulary size.
        num_heads: heads per layer: one integer for all layers or a list (one per layer).
        hidden_dim: model width (embeddings, residual stream, pooler).
        intermediate_dim: feed-forward width: one integer or a list (one per layer).
        key_dim: size of every attention head (kept from the unpruned model);
            default ``hidden_dim // max(num_heads)``.
        num_layers: number of layers; default ``len(num_heads)`` (or of
            `intermediate_dim`); required when both are integers.
        dropout: as in `BertBackbone`.
        max_sequence_length: as in `BertBackbone`.
        num_segments: as in `BertBackbone`.
        dtype: as in `BertBackbone`.

    The layers, their names and the functional graph are those of keras-hub's
    `BertBackbone`; only each `TransformerEncoder` is a
    `PrunedTransformerEncoder` with its own sizes.
    """

    def __init__(
        self,
        vocabulary_size: int,
        num_heads: int | Sequence[int],
        hidden_dim: int,
        intermediate_dim: int | Sequence[int],
        key_dim: int | None = None,
        num_layers: int | None = None,
        dropout: float = 0.1,
        max_sequence_length: int = 512,
        num_segments: int = 2,
        dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        if num_layers is None:
            for value in (num_heads, intermediate_dim):
                if not isinstance(value, int):
                    num_layers = len(list(value))
                    break
        heads = _per_layer(num_heads, num_layers, "num_heads")
        widths = _per_layer(intermediate_dim, len(heads), "intermediate_dim")
        key_dim = int(key_dim) if key_dim is not None else hidden_dim // max(heads)
        if key_dim < 1:
            raise ValueError(f"`key_dim` must be a positive integer, got {key_dim!r}")
        self._build_graph(vocabulary_size, heads, hidden_dim, widths, key_dim, dropout,
                          max_sequence_length, num_segments, dtype, **kwargs)
        self.vocabulary_size = vocabulary_size
        self.num_layers = len(heads)
        self.num_heads = heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = widths
        self.key_dim = key_dim
        self.dropout = dropout
        self.max_sequence_length = max_sequence_length
        self.num_segments = num_segments
        self.cls_token_index = 0

    def _build_graph(self, vocabulary_size: int, heads: list[int], hidden_dim: int,
                     widths: list[int], key_dim: int, dropout: float, max_sequence_length: int,
                     num_segments: int, dtype: Any, **kwargs: Any) -> None:
        # The body of BertBackbone.__init__, with per-layer encoder sizes.
        self.token_embedding = ReversibleEmbedding(
            input_dim=vocabulary_size, output_dim=hidden_dim,
            embeddings_initializer=_initializer(), dtype=dtype, name="token_embedding",
        )
        self.position_embedding = keras_hub.layers.PositionEmbedding(
            initializer=_initializer(), sequence_length=max_sequence_length, dtype=dtype,
            name="position_embedding",
        )
        self.segment_embedding = keras.layers.Embedding(
            input_dim=num_segments, output_dim=hidden_dim, embeddings_initializer=_initializer(),
            dtype=dtype, name="segment_embedding",
        )
        self.embeddings_add = keras.layers.Add(dtype=dtype, name="embeddings_add")
        self.embeddings_layer_norm = keras.layers.LayerNormalization(
            axis=-1, epsilon=1e-12, dtype=dtype, name="embeddings_layer_norm"
        )
        self.embeddings_dropout = keras.layers.Dropout(
            dropout, dtype=dtype, name="embeddings_dropout"
        )
        self.transformer_layers = [
            PrunedTransformerEncoder(
                num_heads=h, key_dim=key_dim, intermediate_dim=w, activation=bert_activation(),
                dropout=dropout, layer_norm_epsilon=1e-12, kernel_initializer=_initializer(),
                dtype=dtype, name=f"transformer_layer_{i}",
            )
            for i, (h, w) in enumerate(zip(heads, widths, strict=True))
        ]
        self.pooled_dense = keras.layers.Dense(
            hidden_dim, kernel_initializer=_initializer(), activation="tanh", dtype=dtype,
            name="pooled_dense",
        )
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        segment_ids = keras.Input(shape=(None,), dtype="int32", name="segment_ids")
        padding_mask = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        tokens = self.token_embedding(token_ids)
        x = self.embeddings_add(
            (tokens, self.position_embedding(tokens), self.segment_embedding(segment_ids))
        )
        x = self.embeddings_dropout(self.embeddings_layer_norm(x))
        for layer in self.transformer_layers:
            x = layer(x, padding_mask=padding_mask)
        # Skip BertBackbone.__init__ (it would build uniform layers): Backbone's is next.
        super(keras_hub.models.BertBackbone, self).__init__(
            inputs={"token_ids": token_ids, "segment_ids": segment_ids,
                    "padding_mask": padding_mask},
            outputs={"sequence_output": x, "pooled_output": self.pooled_dense(x[:, 0, :])},
            dtype=dtype,
            **kwargs,
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(num_heads=list(self.num_heads), intermediate_dim=list(self.intermediate_dim),
                      key_dim=self.key_dim)
        return config
