"""Raw text inputs: the one reader of "texts or text pairs", and BERT's special tokens.

Every function that takes raw sentences accepts the same shapes, read here:

* a list (or 1-D array, or tensor) of strings: single-segment examples;
* a tuple of two such lists of equal length: sentence pairs (first, second);
* a list of ``(first, second)`` pairs;
* a `tf.data.Dataset` yielding batches of any of these, with or without a
  trailing label (``(texts, label)``).

`text_columns` returns them as one column (single texts) or two (pairs) of
Python strings. No TensorFlow at import time.
"""

from __future__ import annotations

from typing import Any

#: BERT's special tokens, in vocabulary order ([PAD] is id 0).
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def is_text_list(value: Any) -> bool:
    """True for a list, tuple or 1-D array whose items are all strings (or bytes)."""
    if isinstance(value, (str, bytes)):
        return False
    if hasattr(value, "dtype") and hasattr(value, "ndim") and not hasattr(value, "numpy"):
        return value.dtype.kind in "USO" and value.ndim == 1
    return isinstance(value, (list, tuple)) and all(isinstance(v, (str, bytes)) for v in value)


def as_strings(value: Any, argument: str = "texts") -> list[str]:
    """A string, bytes, a list / array / tensor of them -> a flat list of Python strings.

    Raises:
        ValueError: naming `argument`, when `value` holds something else.
    """
    if isinstance(value, str):
        return [value]
    if isinstance(value, bytes):
        return [value.decode("utf-8")]
    if hasattr(value, "numpy"):  # an eager tensor
        value = value.numpy()
    if hasattr(value, "reshape") and hasattr(value, "dtype"):
        if value.dtype.kind not in "USO":
            raise ValueError(f"`{argument}` holds an array of {value.dtype}, expected strings")
        value = value.reshape(-1).tolist()
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"`{argument}` holds {type(value).__name__}, expected strings")
    out = [v.decode("utf-8") if isinstance(v, bytes) else v for v in value]
    if not all(isinstance(v, str) for v in out):
        raise ValueError(f"`{argument}` must hold strings (or pairs of strings)")
    return out


def features_of(element: Any) -> Any:
    """The features of a dataset element: drop a trailing non-string label."""
    if isinstance(element, tuple) and len(element) == 2:
        label_dtype = getattr(element[1], "dtype", None)
        if label_dtype is not None and label_dtype.name != "string":
            return element[0]
    return element


def _dataset_columns(data: Any, argument: str) -> list[list[str]]:
    columns: list[list[str]] | None = None
    for element in data:
        features = features_of(element)
        if isinstance(features, dict):
            raise ValueError(f"`{argument}` yields dicts (already preprocessed?); pass raw texts")
        parts = list(features) if isinstance(features, tuple) else [features]
        if columns is None:
            columns = [[] for _ in parts]
        if len(parts) != len(columns):
            raise ValueError(f"`{argument}` mixes single texts and text pairs")
        for column, part in zip(columns, parts, strict=True):
            column.extend(as_strings(part, argument))
    if not columns:
        raise ValueError(f"`{argument}` is empty")
    return columns


def text_columns(data: Any, argument: str = "texts") -> list[list[str]]:
    """Texts as segment columns: ``[[a0, a1, ...]]``, or ``[[a...], [b...]]`` for pairs.

    Args:
        data: any of the shapes in this module's docstring.
        argument: the caller's argument name, for error messages.

    Raises:
        ValueError: naming `argument`: one bare string, no texts, non-strings,
            pairs of unequal length, or a dataset of preprocessed dicts.
    """
    if hasattr(data, "element_spec"):  # a tf.data.Dataset
        return _dataset_columns(data, argument)
    if isinstance(data, (str, bytes)):
        raise ValueError(f"`{argument}` must be a list of texts, not one string")
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], (str, bytes)):
        columns = [as_strings(data[0], argument), as_strings(data[1], argument)]
        if len(columns[0]) != len(columns[1]):
            raise ValueError(f"`{argument}`: the two text lists differ in length")
    else:
        items = list(data)
        if items and all(isinstance(t, (tuple, list)) and len(t) == 2 for t in items):
            columns = [[str(t[0]) for t in items], [str(t[1]) for t in items]]
        else:
            columns = [as_strings(items, argument)]
    if not columns[0]:
        raise ValueError(f"`{argument}` is empty")
    return columns


def texts_or_pairs(data: Any, argument: str = "texts") -> list[str] | tuple[list[str], list[str]]:
    """`text_columns` in the form keras-hub preprocessors and `data.from_examples` take:
    a list of strings, or a ``(first, second)`` tuple of lists for pairs."""
    columns = text_columns(data, argument)
    return columns[0] if len(columns) == 1 else (columns[0], columns[1])
