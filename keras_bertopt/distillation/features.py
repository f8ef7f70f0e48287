"""One forward pass of a keras-hub BERT classifier that also returns its inner states.

keras-hub's `BertBackbone` is a functional model nested inside the task, so its
transformer layers are not reachable by `task.get_layer(name)` (what
`keras.distillation.FeatureDistillation` asks for), and its transformer layers
are called without ``return_attention_scores``. `bert_forward` runs the same
layer objects in the backbone's order (embeddings, each `TransformerEncoder`,
pooler, then the task's dropout and logits layer), so the logits equal
``task(inputs)`` and the hidden states and attention maps come from that very
pass: no second student forward, one set of dropout masks, and QAT range
updates counted once.
"""

from __future__ import annotations

from typing import Any

from keras_bertopt.distillation.students import bert_backbone, unwrap


def bert_forward(
    model: Any, inputs: dict[str, Any], *, training: bool = False, attentions: bool = False
) -> dict[str, Any]:
    """Run a keras-hub BERT classifier on preprocessed `inputs`, keeping its inner states.

    Args:
        model: a keras-hub BERT classifier, or a `quantize_aware` one.
        inputs: ``{"token_ids", "segment_ids", "padding_mask"}``.
        training: dropout (and QAT range updates) on when True.
        attentions: also return each layer's attention probabilities.

    Returns:
        ``{"logits": [batch, classes], "hidden_states": [embeddings, layer 0, ...,
        layer L-1] (each [batch, length, hidden]), "attentions": [layer 0, ...]
        (each [batch, heads, length, length]; empty unless `attentions`)}``.
    """
    task = unwrap(model)
    backbone = bert_backbone(model)
    padding_mask = inputs["padding_mask"]
    tokens = backbone.token_embedding(inputs["token_ids"])
    positions = backbone.position_embedding(tokens)
    segments = backbone.segment_embedding(inputs["segment_ids"])
    x = backbone.embeddings_add((tokens, positions, segments))
    x = backbone.embeddings_layer_norm(x)
    x = backbone.embeddings_dropout(x, training=training)
    hidden_states = [x]
    attention_maps = []
    for layer in backbone.transformer_layers:
        if attentions:
            x, scores = layer(
                x, padding_mask=padding_mask, training=training, return_attention_scores=True
            )
            attention_maps.append(scores)
        else:
            x = layer(x, padding_mask=padding_mask, training=training)
        hidden_states.append(x)
    pooled = backbone.pooled_dense(x[:, backbone.cls_token_index, :])
    logits = task.output_dense(task.output_dropout(pooled, training=training))
    return {"logits": logits, "hidden_states": hidden_states, "attentions": attention_maps}
