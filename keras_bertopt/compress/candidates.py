"""Candidate shapes for a compressed BERT: how many layers, heads per layer and FFN width.

Every candidate is a uniform shape (each kept layer the same head count and
feed-forward width) reachable from the model by structured pruning
(`keras_bertopt.pruning.prune_structure`). `candidate_shapes` lays out a grid
of layer counts x head fractions x FFN fractions and keeps the useful ones;
their latency is then measured on exported files (`keras_bertopt.compress.timing`),
never estimated.

Example:

```python
shapes = candidate_shapes(model)          # from a keras-hub BERT classifier
shapes[0]                                 # Candidate(layers=6, heads=12, intermediate=1536)
shapes[-1].prune_arguments(model)         # {"layers": 5, "heads": 9, "intermediate": 1152}
```
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

#: Default fractions of each layer's heads / FFN neurons to keep.
HEAD_FRACTIONS = (1.0, 0.75, 0.5, 0.25)
FFN_FRACTIONS = (1.0, 0.5, 0.25)


@dataclasses.dataclass(frozen=True, order=True)
class Candidate:
    """A uniform BERT shape: `layers` layers, each `heads` heads and FFN width `intermediate`."""

    layers: int
    heads: int
    intermediate: int

    @property
    def name(self) -> str:
        return f"L{self.layers}-H{self.heads}-F{self.intermediate}"

    def encoder_parameters(self, hidden_dim: int, key_dim: int) -> int:
        """Encoder weights (attention + FFN kernels): the capacity proxy candidates sort by."""
        attention = 4 * hidden_dim * self.heads * key_dim
        ffn = 2 * hidden_dim * self.intermediate
        return self.layers * (attention + ffn)

    def prune_arguments(self, model: Any) -> dict[str, int]:
        """`prune_structure` counts (units removed per layer) that reach this shape."""
        layers, heads, intermediate = model_shape(model)
        return {"layers": layers - self.layers, "heads": heads - self.heads,
                "intermediate": intermediate - self.intermediate}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Candidate:
        return cls(int(value["layers"]), int(value["heads"]), int(value["intermediate"]))


def model_shape(model: Any) -> tuple[int, int, int]:
    """(layers, heads per layer, FFN width) of a uniform keras-hub BERT task or backbone.

    Raises:
        ValueError: the model is not a BERT, or its layers differ in heads / width.
    """
    from keras_bertopt.pruning.importance import encoder_parts

    try:
        parts = encoder_parts(model)
    except (AttributeError, ValueError, TypeError) as error:
        raise ValueError(f"`model` must be a keras-hub BERT classifier: {error}") from None
    heads = {p.num_heads for p in parts}
    widths = {p.intermediate_dim for p in parts}
    if len(heads) != 1 or len(widths) != 1:
        raise ValueError("`model` must have the same heads and FFN width in every layer to "
                         f"take candidate shapes, got heads {sorted(heads)}, widths "
                         f"{sorted(widths)}")
    return len(parts), heads.pop(), widths.pop()


def _check_fractions(values: Sequence[float], name: str) -> tuple[float, ...]:
    out = tuple(values)
    if not out or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1
                      for v in out):
        raise ValueError(f"`{name}` must be a non-empty list of fractions in (0, 1], got "
                         f"{list(values)!r}")
    return out


def candidate_shapes(
    model: Any,
    layers: Sequence[int] | None = None,
    head_fractions: Sequence[float] = HEAD_FRACTIONS,
    ffn_fractions: Sequence[float] = FFN_FRACTIONS,
) -> list[Candidate]:
    """Candidate shapes of `model`, largest (most encoder weights) first.

    Args:
        model: a keras-hub BERT classifier with uniform layers.
        layers: layer counts to consider (default: 1 .. the model's).
        head_fractions: fractions of each layer's heads to keep (rounded, >= 1 head).
        ffn_fractions: fractions of the FFN width to keep (rounded, >= 1 neuron).

    Returns:
        Distinct `Candidate`s sorted by encoder parameters, largest first (ties:
        more layers first). The model's own shape is among them when every
        list holds its full value.

    Raises:
        ValueError: naming the argument, before any work.
    """
    num_layers, num_heads, width = model_shape(model)
    if layers is None:
        layers = range(1, num_layers + 1)
    layers = list(layers)
    if not layers or any(isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= num_layers
                         for n in layers):
        raise ValueError(f"`layers` must be a non-empty list of integers in [1, {num_layers}], "
                         f"got {layers!r}")
    heads = {max(1, round(f * num_heads)) for f in _check_fractions(head_fractions,
                                                                      "head_fractions")}
    widths = {max(1, round(f * width)) for f in _check_fractions(ffn_fractions, "ffn_fractions")}
    shapes = {Candidate(n, h, w) for n in set(layers) for h in heads for w in widths}
    from keras_bertopt.pruning.importance import encoder_parts

    part = encoder_parts(model)[0]
    hidden, key_dim = int(part.output.kernel.shape[-1]), part.key_dim
    return sorted(shapes, key=lambda c: (-c.encoder_parameters(hidden, key_dim), -c.layers,
                                         -c.heads))
