"""`prune_structure`: physically remove attention heads, feed-forward neurons and layers.

The result is a new, smaller keras-hub classifier (a `PrunedBertBackbone`
inside the same task class, sharing the original preprocessor) whose
surviving weights are copies of the original's: every matmul of the removed
units is gone, so the model has fewer parameters and its TFLite file has
smaller FULLY_CONNECTED / BATCH_MATMUL shapes.

Amounts (``heads``, ``intermediate``, ``layers``):

* ``None`` or ``0``: remove nothing;
* a float in ``[0, 1)``: that fraction of each layer's heads / neurons
  (``floor(fraction * n)`` per layer), or of the layers;
* an int: that many heads / neurons per layer, or that many layers;
* explicit indices to remove: for heads and neurons a list with one list per
  layer or a dict ``{layer_index: [unit indices]}``; for layers a list of layer
  indices.

Fractions and counts remove the lowest-scoring units (`importance_scores`).
Layer indices are those of the original model.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import keras
import numpy as np

from keras_bertopt.pruning.backbone import PrunedBertBackbone
from keras_bertopt.pruning.importance import (
    METHODS,
    ImportanceScores,
    backbone_of,
    encoder_parts,
    importance_scores,
)


@dataclasses.dataclass
class StructurePlan:
    """What survives: kept layer indices and, per kept layer, kept heads and neurons."""

    keep_layers: list[int]
    keep_heads: dict[int, list[int]]
    keep_neurons: dict[int, list[int]]

    def to_dict(self) -> dict[str, Any]:
        return {"keep_layers": self.keep_layers,
                "num_heads": [len(self.keep_heads[i]) for i in self.keep_layers],
                "intermediate_dim": [len(self.keep_neurons[i]) for i in self.keep_layers]}


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_fraction(x: Any) -> bool:
    return isinstance(x, (float, np.floating))


def _needs_scores(amount: Any) -> bool:
    return (_is_fraction(amount) and amount > 0) or (_is_int(amount) and amount > 0)


def _check_indices(indices: Any, size: int, name: str) -> list[int]:
    try:
        out = sorted({int(i) for i in indices})
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a list of integer indices, got {indices!r}") from None
    bad = [i for i in out if not 0 <= i < size]
    if bad:
        raise ValueError(f"`{name}` index {bad[0]} is out of range [0, {size})")
    return out


def _count(amount: Any, size: int, name: str) -> int:
    """How many of `size` units a fraction / count removes (validated)."""
    if _is_fraction(amount):
        if not 0.0 <= amount < 1.0:
            raise ValueError(f"`{name}` as a fraction must be in [0, 1), got {amount!r}")
        return int(math.floor(amount * size + 1e-9))
    if amount < 0:
        raise ValueError(f"`{name}` as a count must be >= 0, got {amount!r}")
    return int(amount)


def _unit_removals(amount: Any, sizes: list[int], name: str) -> list[Any]:
    """Per layer: an int (remove that many lowest-scoring) or a sorted index list."""
    n = len(sizes)
    if amount is None:
        return [0] * n
    if _is_fraction(amount) or _is_int(amount):
        counts = [_count(amount, s, name) for s in sizes]
    elif isinstance(amount, Mapping):
        counts = [[] for _ in range(n)]
        for layer, indices in amount.items():
            if not _is_int(layer) or not 0 <= layer < n:
                raise ValueError(f"`{name}` layer key {layer!r} is out of range [0, {n})")
            counts[layer] = _check_indices(indices, sizes[layer], f"{name}[{layer}]")
    elif isinstance(amount, Sequence) and not isinstance(amount, str):
        if len(amount) != n:
            raise ValueError(
                f"`{name}` as explicit indices needs one list per layer ({n}), got {len(amount)}"
            )
        counts = [_check_indices(a, s, f"{name}[{i}]")
                  for i, (a, s) in enumerate(zip(amount, sizes, strict=True))]
    else:
        raise ValueError(
            f"`{name}` must be None, a fraction in [0, 1), a count, or explicit indices per "
            f"layer; got {amount!r}"
        )
    for i, (c, s) in enumerate(zip(counts, sizes, strict=True)):
        removed = c if _is_int(c) else len(c)
        if removed >= s:
            raise ValueError(
                f"`{name}` would remove all {s} {name} units of layer {i}; keep at least one "
                "(remove the layer with `layers=` instead)"
            )
    return counts


def _layer_removal(amount: Any, n: int) -> Any:
    if amount is None:
        return 0
    if _is_fraction(amount) or _is_int(amount):
        c = _count(amount, n, "layers")
    elif isinstance(amount, Sequence) and not isinstance(amount, str):
        c = _check_indices(amount, n, "layers")
    else:
        raise ValueError(
            f"`layers` must be None, a fraction in [0, 1), a count or a list of layer indices; "
            f"got {amount!r}"
        )
    if (c if _is_int(c) else len(c)) >= n:
        raise ValueError(f"`layers` would remove all {n} transformer layers; keep at least one")
    return c


def _keep(removal: Any, scores: np.ndarray | None, size: int) -> list[int]:
    """Sorted kept indices: drop `removal` (a count of lowest scores, or explicit indices)."""
    if _is_int(removal):
        if removal == 0:
            return list(range(size))
        order = np.argsort(np.asarray(scores), kind="stable")  # ties: lower index goes first
        return sorted(int(i) for i in order[removal:])
    drop = set(removal)
    return [i for i in range(size) if i not in drop]


def plan_structure(
    model: Any,
    heads: Any = None,
    intermediate: Any = None,
    layers: Any = None,
    scores: ImportanceScores | None = None,
) -> StructurePlan:
    """Validate the amounts and decide which units survive (scores needed for counts)."""
    parts = encoder_parts(model)
    head_rm = _unit_removals(heads, [p.num_heads for p in parts], "heads")
    neuron_rm = _unit_removals(intermediate, [p.intermediate_dim for p in parts], "intermediate")
    layer_rm = _layer_removal(layers, len(parts))
    if scores is None and any(_is_int(r) and r > 0 for r in head_rm + neuron_rm + [layer_rm]):
        raise ValueError("fractions and counts need `scores` (see importance_scores)")
    keep_layers = _keep(layer_rm, None if scores is None else scores.layers, len(parts))
    keep_heads = {i: _keep(head_rm[i], None if scores is None else scores.heads[i],
                           parts[i].num_heads) for i in keep_layers}
    keep_neurons = {i: _keep(neuron_rm[i], None if scores is None else scores.intermediate[i],
                             parts[i].intermediate_dim) for i in keep_layers}
    return StructurePlan(keep_layers, keep_heads, keep_neurons)


def _copy(dst: Any, value: np.ndarray) -> None:
    if tuple(dst.shape) != value.shape:
        raise AssertionError(
            f"shape mismatch copying into {dst.path}: {dst.shape} vs {value.shape}"
        )
    dst.assign(value)


def _copy_layer(src: Any, dst: Any) -> None:
    for a, b in zip(src.weights, dst.weights, strict=True):
        _copy(b, np.asarray(keras.ops.convert_to_numpy(a)))


def _w(v: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(v))


def _copy_encoder(src: Any, dst: Any, heads: list[int], neurons: list[int]) -> None:
    for name in ("query", "key", "value"):
        _copy(dst[name].kernel, _w(src[name].kernel)[:, heads, :])
        _copy(dst[name].bias, _w(src[name].bias)[heads, :])
    _copy(dst["output"].kernel, _w(src["output"].kernel)[heads, :, :])
    _copy(dst["output"].bias, _w(src["output"].bias))
    _copy(dst["intermediate"].kernel, _w(src["intermediate"].kernel)[:, neurons])
    _copy(dst["intermediate"].bias, _w(src["intermediate"].bias)[neurons])
    _copy(dst["ffn_output"].kernel, _w(src["ffn_output"].kernel)[neurons, :])
    _copy(dst["ffn_output"].bias, _w(src["ffn_output"].bias))
    for norm in ("_self_attention_layer_norm", "_feedforward_layer_norm"):
        _copy_layer(getattr(src["encoder"], norm), getattr(dst["encoder"], norm))


def build_pruned(model: Any, plan: StructurePlan) -> Any:
    """A new task of `model`'s class with a `PrunedBertBackbone` laid out by `plan`."""
    backbone = backbone_of(model)
    parts = encoder_parts(model)
    new_backbone = PrunedBertBackbone(
        vocabulary_size=backbone.vocabulary_size,
        num_heads=[len(plan.keep_heads[i]) for i in plan.keep_layers],
        hidden_dim=backbone.hidden_dim,
        intermediate_dim=[len(plan.keep_neurons[i]) for i in plan.keep_layers],
        key_dim=parts[0].key_dim,
        dropout=backbone.dropout,
        max_sequence_length=backbone.max_sequence_length,
        num_segments=backbone.num_segments,
        dtype=backbone.dtype_policy,
        name=backbone.name,
    )
    for name in ("token_embedding", "position_embedding", "segment_embedding",
                 "embeddings_layer_norm", "pooled_dense"):
        _copy_layer(getattr(backbone, name), getattr(new_backbone, name))
    new_parts = encoder_parts(new_backbone)
    for new_index, old_index in enumerate(plan.keep_layers):
        _copy_encoder(_parts_dict(parts[old_index]), _parts_dict(new_parts[new_index]),
                      plan.keep_heads[old_index], plan.keep_neurons[old_index])
    if model is backbone:
        return new_backbone
    task = type(model)(
        backbone=new_backbone,
        num_classes=model.num_classes,
        preprocessor=getattr(model, "preprocessor", None),
        activation=model.activation,
        dropout=model.dropout,
        name=model.name,
    )
    _copy_layer(model.output_dense, task.output_dense)
    return task


def _parts_dict(parts: Any) -> dict[str, Any]:
    return {f.name: getattr(parts, f.name) for f in dataclasses.fields(parts)}


def prune_structure(
    model: Any,
    heads: Any = None,
    intermediate: Any = None,
    layers: Any = None,
    importance: str | ImportanceScores = "magnitude",
    data: Any = None,
    batches: int = 8,
    loss: Any = None,
) -> Any:
    """A smaller copy of a keras-hub BERT classifier without the least important structures.

    Args:
        model: a keras-hub BERT task (e.g. `BertTextClassifier`, also one
            returned by `prune_structure`); it is not changed.
        heads: attention heads to remove (see the module docstring for the
            forms: fraction, count per layer, explicit indices per layer).
        intermediate: feed-forward (intermediate) neurons to remove, same forms.
        layers: whole transformer layers to remove: fraction, count or indices.
        importance: ``"magnitude"``, ``"taylor"`` (needs `data`) or
            precomputed `ImportanceScores` (from `importance_scores`).
        data: ``(inputs, labels)`` batches for ``"taylor"``.
        batches: most batches of `data` used for scoring.
        loss: loss for ``"taylor"`` (default: sparse categorical cross-entropy).

    Returns:
        A new task of the same class: a `PrunedBertBackbone` keeping the
        per-head size, with the surviving weights copied exactly, the same
        classification head weights and the same preprocessor object.
        Removing nothing gives a model computing the same outputs.

    Raises:
        ValueError: before any work, for a fraction outside [0, 1), a negative
            count, an index out of range, removing every head or neuron of a
            layer or every layer, an unknown `importance`, or "taylor" without data.

    Example:

    ```python
    small = keras_bertopt.pruning.prune_structure(
        model, heads=0.5, intermediate=0.25, layers=[4, 5],
        importance="taylor", data=train.take(8))
    small.compile(optimizer="adam", loss=..., metrics=[...])
    small.fit(train, epochs=1)          # recover
    ```
    """
    if isinstance(importance, str) and importance not in METHODS:
        raise ValueError(f"`importance` must be one of {METHODS} or ImportanceScores, "
                         f"got {importance!r}")
    if not isinstance(importance, (str, ImportanceScores)):
        raise ValueError(f"`importance` must be one of {METHODS} or ImportanceScores, "
                         f"got {type(importance).__name__}")
    if importance == "taylor" and data is None:
        raise ValueError("`importance`='taylor' needs `data`: a few (inputs, labels) batches")
    # Validate every amount before scoring (which may run the model on data).
    plan_structure(model, heads, intermediate, layers,
                   scores=_zero_scores(model))
    if isinstance(importance, ImportanceScores):
        scores = importance
    elif any(_needs_scores(a) for a in (heads, intermediate, layers)):
        scores = importance_scores(model, importance, data=data, batches=batches, loss=loss)
    else:
        scores = None
    return build_pruned(model, plan_structure(model, heads, intermediate, layers, scores))


def _zero_scores(model: Any) -> ImportanceScores:
    parts = encoder_parts(model)
    return ImportanceScores(
        heads=[np.zeros(p.num_heads) for p in parts],
        intermediate=[np.zeros(p.intermediate_dim) for p in parts],
        layers=np.zeros(len(parts)), method="none",
    )
