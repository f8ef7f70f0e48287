"""Input preparation: raw text -> the int32 token arrays an exported file takes.

Every exported file has three int32 inputs, `INPUT_NAMES`, of shape [batch,
length]. This module turns the forms users hand us (strings, sentence pairs,
``(texts, labels)`` tuples, `tf.data.Dataset` batches, dicts of ids) into those
arrays with the model's keras-hub preprocessor, and cuts them to their real
length (`real_lengths`, `trim`): keras-hub packs ``[CLS] tokens [SEP]`` first
and pads after, so the first ``padding_mask.sum()`` positions hold the whole
sentence.

Example:

```python
arrays = preprocess_texts(model.preprocessor, ["a wonderful film"])   # [1, 128] each
short = trim(arrays, int(real_lengths(arrays).max()))                  # [1, 5] each
```
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from keras_bertopt.padding import concatenate_padded
from keras_bertopt.texts import as_strings, is_text_list

#: The input names every exported file has (int32, shape [batch, sequence_length]).
INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")


def real_lengths(inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Tokens per example (``[CLS]`` and ``[SEP]`` included): the row sums of padding_mask."""
    return np.asarray(inputs["padding_mask"]).astype(bool).sum(axis=-1).astype(np.int64)


def trim(inputs: Mapping[str, np.ndarray], length: int) -> dict[str, np.ndarray]:
    """The first `length` positions of every input (contiguous int32 copies)."""
    return {k: np.ascontiguousarray(np.asarray(inputs[k])[:, :length], np.int32)
            for k in INPUT_NAMES}


def preprocess_texts(preprocessor: Any, texts: Any, batch_size: int = 64,
                     sequence_length: int | None = None) -> dict[str, np.ndarray]:
    """Run raw strings through a keras-hub preprocessor; int32 numpy arrays out.

    `texts`: a string, a list/array of strings, or a tuple of two such lists
    (sentence pairs). With `sequence_length`, the preprocessor packs to that
    length for this call only (its own setting is restored afterwards).
    """
    import tensorflow as tf

    if isinstance(texts, (str, bytes)):
        texts = [texts]
    pair = (
        isinstance(texts, tuple) and len(texts) == 2 and all(is_text_list(t) for t in texts)
        and len(texts[0]) == len(texts[1]) and not all(isinstance(t, str) for t in texts)
    )
    if not pair and not is_text_list(texts):
        raise ValueError(
            "`texts` must be a string, a list of strings or a pair of lists of strings, "
            f"got {type(texts).__name__}"
        )
    n = len(texts[0]) if pair else len(texts)
    previous = getattr(preprocessor, "sequence_length", None)
    change = sequence_length is not None and previous is not None and previous != sequence_length
    if change:
        preprocessor.sequence_length = sequence_length
    try:
        parts = []
        for start in range(0, n, batch_size):
            if pair:
                x = tuple(tf.constant(list(t[start:start + batch_size])) for t in texts)
            else:
                x = tf.constant(list(texts[start:start + batch_size]))
            # keras-hub >= 0.32 reads a lone tuple argument as (x, y): name x for pairs.
            parts.append(_int32_inputs(preprocessor(x=x) if pair else preprocessor(x)))
    finally:
        if change:
            preprocessor.sequence_length = previous
    if not parts:
        length = sequence_length or previous or 0
        return {k: np.zeros((0, length), np.int32) for k in INPUT_NAMES}
    # A preprocessor that pads each batch to its own bucket (`dynamic_padding`) returns
    # chunks of different widths: pad them to the packing length (or the widest).
    return concatenate_padded(parts, width=sequence_length if previous is not None else None)


def _int32_inputs(x: Any) -> dict[str, np.ndarray]:
    if isinstance(x, tuple):  # (x, y[, sample_weight])
        x = x[0]
    if not isinstance(x, Mapping) or any(k not in x for k in INPUT_NAMES):
        raise ValueError(
            f"the preprocessor must return a dict with {list(INPUT_NAMES)}, got "
            f"{sorted(x) if isinstance(x, Mapping) else type(x).__name__}"
        )
    return {k: np.asarray(x[k]).astype(np.int32) for k in INPUT_NAMES}


def collect_inputs(
    data: Any,
    preprocessor: Any,
    sequence_length: int,
    limit: int,
    argument: str = "representative_data",
) -> dict[str, np.ndarray]:
    """Up to `limit` examples of `data` as int32 arrays of shape [n, sequence_length].

    `data` is one of: a list/array of raw strings; a ``(texts, labels)`` tuple;
    a dict of token_ids/segment_ids/padding_mask arrays; a list of such dicts;
    or a `tf.data.Dataset` (or iterable) whose elements are string batches,
    ``(text, label[, weight])`` batches or dicts of ids. Raw strings go through
    `preprocessor` on the host, packed to `sequence_length`.
    """
    chunks: list[dict[str, np.ndarray]] = []
    count = 0

    def add(x: Any) -> None:
        nonlocal count
        arrays = _element_arrays(x, preprocessor, sequence_length, argument)
        take = min(limit - count, len(arrays["token_ids"]))
        chunks.append({k: v[:take] for k, v in arrays.items()})
        count += take

    if isinstance(data, tuple) and len(data) in (2, 3) and is_text_list(data[0]) \
            and not is_text_list(data[1]):
        data = data[0]  # (texts, labels)
    if isinstance(data, (str, bytes)) or is_text_list(data) or isinstance(data, Mapping):
        add(data)
    else:
        iterator = data.as_numpy_iterator() if hasattr(data, "as_numpy_iterator") else data
        try:
            iterator = iter(iterator)
        except TypeError:
            raise ValueError(
                f"`{argument}` must be raw strings, a tf.data.Dataset, dicts of token ids or an "
                f"iterable of them; got {type(data).__name__}"
            ) from None
        for element in iterator:
            if count >= limit:
                break
            if isinstance(element, tuple) and len(element) in (2, 3) \
                    and not _looks_like_texts(element):
                element = element[0]  # (x, y[, sample_weight])
            add(element)
    if count == 0:
        raise ValueError(f"`{argument}` yielded no examples")
    return concatenate_padded(chunks, width=sequence_length)


def _element_arrays(x: Any, preprocessor: Any, sequence_length: int,
                    argument: str) -> dict[str, np.ndarray]:
    if isinstance(x, Mapping):
        arrays = {k: np.asarray(x[k]) for k in INPUT_NAMES if k in x}
        if len(arrays) != len(INPUT_NAMES):
            raise ValueError(
                f"`{argument}` dicts must hold {list(INPUT_NAMES)}, got {sorted(x)}"
            )
        arrays = {k: (v[None] if v.ndim == 1 else v).astype(np.int32)
                  for k, v in arrays.items()}
    else:
        texts = _as_texts(x, argument)
        if preprocessor is None:
            raise ValueError(
                f"`{argument}` holds raw strings but the model has no `preprocessor`: pass "
                "dicts of token_ids/segment_ids/padding_mask instead"
            )
        arrays = preprocess_texts(preprocessor, texts, sequence_length=sequence_length)
    bad = {k: v.shape for k, v in arrays.items() if v.ndim != 2 or v.shape[1] > sequence_length}
    if bad:
        raise ValueError(
            f"`{argument}` inputs must have shape [batch, <= {sequence_length}], got {bad}"
        )
    return arrays


def _looks_like_texts(element: tuple) -> bool:
    """A tuple of two string batches is a sentence pair, not (text, label)."""
    return len(element) == 2 and all(
        np.asarray(e).dtype.kind in "USO" for e in element
    )


def _as_texts(x: Any, argument: str) -> Any:
    """A batch of raw strings (or a pair of such batches) as Python strings."""
    if isinstance(x, tuple) and len(x) == 2:  # sentence pairs
        return tuple(as_strings(part, argument) for part in x)
    try:
        return as_strings(x, argument)
    except ValueError as error:
        raise ValueError(
            f"`{argument}` must hold raw strings or dicts of token ids ({error})"
        ) from None


def random_inputs(vocabulary_size: int, sequence_length: int, n: int,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Synthetic examples (random ids, random real lengths) when no data is given."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, sequence_length + 1, size=n)
    mask = (np.arange(sequence_length)[None, :] < lengths[:, None]).astype(np.int32)
    ids = rng.integers(min(5, vocabulary_size - 1), vocabulary_size,
                       size=(n, sequence_length)).astype(np.int32)
    return {"token_ids": ids * mask, "segment_ids": np.zeros_like(ids), "padding_mask": mask}


def _texts_or_pair(value: Any) -> list | tuple[list, list] | None:
    """A list of strings, or for sentence pairs a ``(firsts, seconds)`` tuple of two
    equal-length lists; None when `value` is neither."""
    if (isinstance(value, tuple) and len(value) == 2 and all(is_text_list(p) for p in value)
            and len(value[0]) == len(value[1])):
        return list(value[0]), list(value[1])
    return list(value) if is_text_list(value) else None


def _count(texts: list | tuple[list, list]) -> int:
    return len(texts[0]) if isinstance(texts, tuple) else len(texts)


def labelled_examples(data: Any, labels: Sequence[int] | None) -> tuple[Any, list]:
    """(texts, labels) from a (text, label) dataset, a (texts, labels) tuple or texts + labels.

    Sentence pairs (a dataset yielding ``((first, second), label)``, or
    ``((firsts, seconds), labels)``) come back as a ``(firsts, seconds)`` tuple of lists.
    """
    if labels is not None:
        texts = _texts_or_pair(data)
        if texts is None:
            raise ValueError("with `labels`, `data` must be a list of strings or a pair of lists")
        if len(labels) != _count(texts):
            raise ValueError(f"`labels` has {len(labels)} items but `data` has {_count(texts)}")
        return texts, list(labels)
    if isinstance(data, tuple) and len(data) == 2 and _texts_or_pair(data[0]) is not None:
        texts = _texts_or_pair(data[0])
        if _count(texts) != len(data[1]):
            raise ValueError(f"`data` texts ({_count(texts)}) and labels ({len(data[1])}) differ")
        return texts, list(np.asarray(data[1]).reshape(-1))
    if hasattr(data, "as_numpy_iterator") or isinstance(data, Iterable):
        return _labelled_from_elements(
            data.as_numpy_iterator() if hasattr(data, "as_numpy_iterator") else data)
    raise ValueError(
        "`data` must be a tf.data.Dataset of (text, label) batches or a (texts, labels) tuple, "
        f"got {type(data).__name__}"
    )


def _labelled_from_elements(elements: Iterable) -> tuple[Any, list]:
    firsts, seconds, truth = [], [], []
    pairs = None
    for element in elements:
        if not isinstance(element, tuple) or len(element) < 2:
            raise ValueError("`data` must yield (text, label) pairs or batches")
        x, y = element[0], element[1]
        is_pair = isinstance(x, tuple) and len(x) == 2
        if pairs is not None and is_pair != pairs:
            raise ValueError("`data` mixes single sentences and sentence pairs")
        pairs = is_pair
        firsts += as_strings(np.asarray(x[0] if is_pair else x), "data")
        if is_pair:
            seconds += as_strings(np.asarray(x[1]), "data")
        truth += [int(v) for v in np.asarray(y).reshape(-1)]
    return ((firsts, seconds) if pairs else firsts), truth


def texts_of(data: Any, limit: int) -> list[str] | None:
    """Up to `limit` raw single-sentence texts in `data` (forms as `collect_inputs`); else None."""
    if data is None or isinstance(data, Mapping):
        return None
    if isinstance(data, (str, bytes)):
        data = [data]
    if isinstance(data, tuple) and len(data) in (2, 3) and is_text_list(data[0]) \
            and not is_text_list(data[1]):
        data = data[0]
    if is_text_list(data):
        return as_strings(list(data)[:limit], "data")
    if not hasattr(data, "as_numpy_iterator"):
        return None
    texts: list[str] = []
    for element in data.as_numpy_iterator():
        if isinstance(element, tuple):
            if _looks_like_texts(element):
                return None  # sentence pairs
            element = element[0]
        array = np.asarray(element)
        if isinstance(element, Mapping) or array.dtype.kind not in "USO":
            return None
        texts += as_strings(array, "data")
        if len(texts) >= limit:
            break
    return texts[:limit] or None
