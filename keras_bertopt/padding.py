"""Joining batches padded to different lengths.

A preprocessor that pads each batch only as far as it needs
(`keras_bertopt.data.dynamic_padding`, or any keras-hub preprocessor a user
builds that way) returns batches of different widths: ``[32, 16]`` then
``[32, 48]``. Code that gathers such batches into one array (export
verification, teacher-logit caches, validation callbacks) must pad them to a
common width first; `concatenate_padded` does that for every array of rank >= 2
in a nested structure, padding on the right with zeros (BERT's pad token id,
segment 0, mask False), which keras-hub's packers put after the real tokens.

Example:

```python
a = {"token_ids": np.ones((2, 16), "int32")}
b = {"token_ids": np.ones((3, 48), "int32")}
concatenate_padded([a, b])["token_ids"].shape   # (5, 48)
concatenate_padded([a, b], width=64)["token_ids"].shape   # (5, 64)
```
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def pad_width(array: np.ndarray, width: int) -> np.ndarray:
    """`array` ([batch, length, ...]) padded with zeros on the right of axis 1 to `width`."""
    array = np.asarray(array)
    missing = width - array.shape[1]
    if missing < 0:
        raise ValueError(f"cannot pad an array of length {array.shape[1]} to {width}")
    if missing == 0:
        return array
    pad = [(0, 0)] * array.ndim
    pad[1] = (0, missing)
    return np.pad(array, pad)


def concatenate_padded(parts: Sequence[Any], width: int | None = None) -> Any:
    """Concatenate nested structures of arrays along axis 0, padding axis 1 to one width.

    Args:
        parts: structures of the same shape (dicts, tuples or arrays), e.g.
            the feature dicts of successive preprocessed batches.
        width: the length to pad rank >= 2 arrays to; default: the widest part
            of each leaf. Arrays of rank 1 (labels, weights) are joined as they are.

    Returns:
        The structure of `parts[0]` with each leaf the concatenation of the parts.

    Raises:
        ValueError: `parts` is empty, or a part is wider than `width`.
    """
    import keras

    if not parts:
        raise ValueError("`parts` must hold at least one batch")

    def join(*leaves: Any) -> np.ndarray:
        arrays = [np.asarray(leaf) for leaf in leaves]
        if arrays[0].ndim < 2:
            return np.concatenate(arrays)
        target = max(a.shape[1] for a in arrays) if width is None else width
        return np.concatenate([pad_width(a, target) for a in arrays])

    return keras.tree.map_structure(join, *parts)
