"""Which learning-rate multiplier each variable path gets: layer-wise decay and explicit pairs.

Pure path math (no Keras): `layerwise_multipliers` maps variable paths to the
ELECTRA-style layer-wise decay factors, `check_pairs` validates explicit
``(regex, multiplier)`` pairs. The optimizers of `keras_bertopt.path_optimizers`
resolve both when they are built.

```python
from keras_bertopt.lr_multipliers import layerwise_multipliers
layerwise_multipliers(["transformer_layer_0/kernel", "transformer_layer_1/kernel",
                       "token_embedding/embeddings", "logits/kernel"], decay=0.5)
# {'transformer_layer_0/kernel': 0.25, 'transformer_layer_1/kernel': 0.5,
#  'token_embedding/embeddings': 0.125, 'logits/kernel': 1.0}
```
"""

from __future__ import annotations

import numbers
import re
from typing import Any, Iterable

from keras_bertopt.selection import EMBEDDING_PARTS, TRANSFORMER_LAYER

#: Path pattern of a transformer block; group 1 is its 0-based index (keras-hub naming).
LAYER_PATTERN = TRANSFORMER_LAYER
#: Path pattern of the embedding part (token/position/segment tables and their LayerNorm).
EMBEDDING_PATTERN = EMBEDDING_PARTS


def layerwise_multipliers(
    paths: Iterable[str],
    decay: float,
    layer_pattern: str = LAYER_PATTERN,
    embedding_pattern: str = EMBEDDING_PATTERN,
) -> dict[str, float]:
    """Learning-rate multiplier of every path under layer-wise LR decay.

    With ``L`` transformer layers indexed ``k = 0 .. L-1`` as in keras-hub's
    ``transformer_layer_k`` (0 = closest to the embeddings):

    * the classifier head (everything that is neither a transformer layer nor
      an embedding: ``pooled_dense``, ``logits``) gets 1;
    * transformer layer ``k`` gets ``decay ** (L - k)`` (the top layer
      ``decay``, the bottom one ``decay ** L``);
    * the embeddings get ``decay ** (L + 1)``, the lowest.

    This is the scheme of Clark et al. (ELECTRA) / Sun et al. 2019 ("How to
    fine-tune BERT for text classification") as used by BEiT and Hugging Face
    recipes.

    Raises:
        ValueError: when `decay` is not in (0, 1] or no path matches
            `layer_pattern`.
    """
    if isinstance(decay, bool) or not isinstance(decay, numbers.Real) or not 0.0 < decay <= 1.0:
        raise ValueError(f"`layerwise_lr_decay` must be in (0, 1]; got {decay!r}")
    paths = list(paths)
    layer_re, embedding_re = re.compile(layer_pattern), re.compile(embedding_pattern)
    index: dict[str, int] = {}
    for path in paths:
        match = layer_re.search(path)
        if match:
            index[path] = int(match.group(1))
    if not index:
        raise ValueError(
            f"`layerwise_lr_decay` needs transformer layers: no variable path matches "
            f"`layer_pattern`={layer_pattern!r} (paths such as {paths[:4]})"
        )
    num_layers = max(index.values()) + 1
    result = {}
    for path in paths:
        if path in index:
            result[path] = float(decay) ** (num_layers - index[path])
        elif embedding_re.search(path):
            result[path] = float(decay) ** (num_layers + 1)
        else:
            result[path] = 1.0
    return result


def check_pairs(pairs: Any) -> list[list[Any]]:
    """``[[regex, multiplier], ...]`` from `lr_multipliers` pairs; errors name the argument."""
    if pairs is None:
        return []
    result = []
    for item in pairs:
        try:
            pattern, multiplier = item
        except (TypeError, ValueError):
            raise ValueError(
                f"`lr_multipliers` must be a list of (regex, multiplier) pairs; got item {item!r}"
            ) from None
        if not isinstance(pattern, str):
            raise ValueError(f"`lr_multipliers` patterns must be strings; got {pattern!r}")
        if (
            isinstance(multiplier, bool)
            or not isinstance(multiplier, numbers.Real)
            or not multiplier >= 0
        ):
            raise ValueError(f"`lr_multipliers` values must be >= 0; got {multiplier!r}")
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(
                f"`lr_multipliers` pattern {pattern!r} is not a regex: {err}"
            ) from None
        result.append([pattern, float(multiplier)])
    return result
