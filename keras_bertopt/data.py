"""Data loaders that return batched `tf.data.Dataset`s of (features, label).

Features are raw strings (or a tuple of two strings for sentence-pair tasks):
a keras-hub classifier carrying its preprocessor tokenizes them inside `fit`.

* `demo_dataset`: a small built-in sentiment set the package generates itself,
  learnable by `models.TinyConfig()` in a few hundred steps, with no download.
* `load_file`: a local TSV / CSV / JSON-lines file with named text and label
  columns (`read_file` gives the same examples as Python lists).
"""

from __future__ import annotations

import csv
import json
import os
import random
from typing import Any, Iterator, Union

from keras_bertopt.models import SPECIAL_TOKENS

_POSITIVE = (
    "good", "great", "excellent", "fun", "loved", "wonderful", "best", "enjoyable",
    "brilliant", "charming", "moving", "delightful",
)
_NEGATIVE = (
    "bad", "awful", "boring", "terrible", "hated", "worst", "dull", "poor",
    "weak", "tedious", "mess", "painful",
)
_NEUTRAL = (
    "the", "movie", "film", "plot", "acting", "was", "is", "a", "and", "story",
    "really", "quite", "it", "this", "cast", "ending", "script", "very", "of", "an",
)
_NEGATORS = ("not",)

#: Sizes of the built-in demo splits.
DEMO_SIZES = {"train": 2048, "validation": 256, "test": 256}


def demo_vocabulary() -> list[str]:
    """The word-piece vocabulary of the demo data (special tokens first)."""
    return list(SPECIAL_TOKENS) + sorted(set(_POSITIVE + _NEGATIVE + _NEUTRAL + _NEGATORS))


def demo_examples(split: str = "train", size: int | None = None) -> tuple[list[str], list[int]]:
    """Texts and labels (1 positive, 0 negative) of a demo split, deterministic per split.

    Each sentence mixes neutral words with sentiment words; the label is the
    polarity of the majority of sentiment words, and "not" flips the word that
    follows it, so the task needs more than a bag of words to be solved fully.
    """
    if split not in DEMO_SIZES:
        raise ValueError(f"`split` must be one of {sorted(DEMO_SIZES)}, got {split!r}")
    size = DEMO_SIZES[split] if size is None else size
    rng = random.Random(f"keras_bertopt-demo-{split}")
    texts, labels = [], []
    for i in range(size):
        label = i % 2
        words = [rng.choice(_NEUTRAL) for _ in range(rng.randint(3, 8))]
        n_major = rng.randint(1, 3)
        n_minor = rng.randint(0, n_major - 1)
        major, minor = (_POSITIVE, _NEGATIVE) if label else (_NEGATIVE, _POSITIVE)
        cues = [rng.choice(major) for _ in range(n_major)] + [
            rng.choice(minor) for _ in range(n_minor)
        ]
        if rng.random() < 0.15:
            cues.append("not " + rng.choice(minor))
        for cue in cues:
            words.insert(rng.randint(0, len(words)), cue)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def demo_dataset(
    split: str = "train",
    batch_size: int = 32,
    *,
    size: int | None = None,
    shuffle: bool | None = None,
    seed: int = 0,
) -> Any:
    """The built-in demo split as a batched `tf.data.Dataset` of (text, label).

    Shuffles the train split by default (with `seed`), never the others.
    """
    texts, labels = demo_examples(split, size)
    shuffle = (split == "train") if shuffle is None else shuffle
    return from_examples(texts, labels, batch_size, shuffle=shuffle, seed=seed)


def from_examples(
    texts: Any, labels: Any, batch_size: int = 32, *, shuffle: bool = False, seed: int = 0
) -> Any:
    """A batched (features, label) dataset from in-memory texts (or text pairs) and labels."""
    import tensorflow as tf

    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size!r}")
    ds = tf.data.Dataset.from_tensor_slices((texts, tf.constant(labels, dtype=tf.int32)))
    if shuffle:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------------------
# Local TSV / CSV / JSONL files
# --------------------------------------------------------------------------------------

#: File formats `load_file` reads, by extension.
FILE_FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


def _file_format(path: str, format: str | None) -> str:
    if format is not None:
        if format not in ("tsv", "csv", "jsonl"):
            raise ValueError(f"`format` must be 'tsv', 'csv' or 'jsonl', got {format!r}")
        return format
    ext = os.path.splitext(path)[1].lower()
    if ext not in FILE_FORMATS:
        raise ValueError(
            f"cannot tell the format of {path!r} from its extension {ext!r}: pass "
            f"`format='tsv' | 'csv' | 'jsonl'` (known extensions: {sorted(FILE_FORMATS)})"
        )
    return FILE_FORMATS[ext]


def _text_columns(text_columns: Any) -> tuple[str, ...]:
    cols = (text_columns,) if isinstance(text_columns, str) else tuple(text_columns)
    if not 1 <= len(cols) <= 2 or not all(isinstance(c, str) and c for c in cols):
        raise ValueError(
            "`text_columns` must be a column name or a sequence of one or two column "
            f"names (two for sentence pairs), got {text_columns!r}"
        )
    return cols


def _parse_label(value: Any, where: str, num_classes: int | None) -> int:
    if isinstance(value, bool) or value is None:
        ok = False
    elif isinstance(value, int):
        ok, label = True, value
    elif isinstance(value, float):
        ok, label = value.is_integer(), int(value)
    else:
        text = str(value).strip()
        ok = text.lstrip("-").isdigit()
        label = int(text) if ok else 0
    if not ok:
        raise ValueError(f"{where}: label {value!r} is not an integer")
    if label < 0 or (num_classes is not None and label >= num_classes):
        expected = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
        raise ValueError(f"{where}: label {label} is out of range (expected {expected})")
    return label


def _iter_rows(
    path: str, fmt: str, required: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, row) pairs; raises ValueError for an empty file / bad header."""
    if fmt == "jsonl":
        seen = False
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}, line {number}: not valid JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise ValueError(
                        f"{path}, line {number}: expected a JSON object, got "
                        f"{type(row).__name__}"
                    )
                seen = True
                yield number, row
        if not seen:
            raise ValueError(f"{path}: the file is empty (no JSON lines)")
        return
    with open(path, encoding="utf-8", newline="") as f:
        if fmt == "tsv":
            # GLUE-style TSV: tabs separate fields and quotes are ordinary characters.
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        else:
            reader = csv.reader(f)
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise ValueError(f"{path}, line 1: the file is empty (expected a header line)")
        header = [h.strip() for h in header]
        missing = [name for name in required if name not in header]
        if missing:
            raise ValueError(
                f"{path}, line 1: missing column(s) {', '.join(map(repr, missing))} in the "
                f"header (it has {', '.join(map(repr, header))})"
            )
        seen = False
        start = reader.line_num
        for fields in reader:
            number = reader.line_num
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                start = number
                continue
            if len(fields) != len(header):
                raise ValueError(
                    f"{path}, line {start + 1}: expected {len(header)} fields "
                    f"({', '.join(header)}), got {len(fields)}"
                )
            seen = True
            yield start + 1, dict(zip(header, fields, strict=True))
            start = number
        if not seen:
            raise ValueError(
                f"{path}: the file has a header but no examples (expected rows after line 1)"
            )


def read_file(
    path: Union[str, os.PathLike[str]],
    text_columns: Any = "sentence",
    label_column: str = "label",
    *,
    format: str | None = None,
    num_classes: int | None = None,
    limit: int | None = None,
) -> tuple[Any, list[int]]:
    """Read texts and integer labels from a local TSV, CSV or JSON-lines file.

    TSV and CSV files need a header line naming the columns (TSV is read the
    GLUE way: tab-separated, no quoting); JSON-lines files hold one object per
    line. Blank lines are skipped.

    Args:
        path: the file.
        text_columns: one column name, or two for sentence-pair tasks.
        label_column: the column holding integer class labels.
        format: ``"tsv" | "csv" | "jsonl"``; by default from the extension
            (``.tsv``, ``.csv``, ``.jsonl`` / ``.json``).
        num_classes: when set, labels must be in ``0..num_classes-1``.
        limit: read at most this many examples (the first ones in the file).

    Returns:
        ``(texts, labels)``: texts is a list of strings, or for two text columns
        a tuple of two lists (first sentences, second sentences).

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: naming the file and line for an empty file, a missing
            column or a label that is not an integer in range.
    """
    path = os.fspath(path)
    cols = _text_columns(text_columns)
    if not isinstance(label_column, str) or not label_column:
        raise ValueError(f"`label_column` must be a column name, got {label_column!r}")
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"`num_classes` must be a positive integer or None, got {num_classes!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"`limit` must be a positive integer or None, got {limit!r}")
    fmt = _file_format(path, format)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`path` {path!r} does not exist or is not a file")
    columns: list[list[str]] = [[] for _ in cols]
    labels: list[int] = []
    for number, row in _iter_rows(path, fmt, (*cols, label_column)):
        where = f"{path}, line {number}"
        for name in (*cols, label_column):
            if name not in row:
                raise ValueError(
                    f"{where}: missing column {name!r} (the row has {', '.join(map(str, row))})"
                )
        for column, name in zip(columns, cols, strict=True):
            value = row[name]
            if not isinstance(value, str):
                if fmt == "jsonl" and value is not None:
                    value = str(value)
                else:
                    raise ValueError(f"{where}: column {name!r} is not text ({value!r})")
            column.append(value)
        labels.append(_parse_label(row[label_column], where, num_classes))
        if limit is not None and len(labels) >= limit:
            break
    texts = columns[0] if len(cols) == 1 else tuple(columns)
    return texts, labels


def load_file(
    path: Union[str, os.PathLike[str]],
    text_columns: Any = "sentence",
    label_column: str = "label",
    batch_size: int = 32,
    *,
    format: str | None = None,
    num_classes: int | None = None,
    limit: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
) -> Any:
    """A local TSV / CSV / JSON-lines file as a batched `tf.data.Dataset` of (features, label).

    Features are raw strings (a tuple of two strings when `text_columns` names
    two columns), ready for `fit` of a classifier that carries its preprocessor.

    Example:

    ```python
    train = keras_bertopt.data.load_file(
        "sst2/train.tsv", "sentence", "label", batch_size=32, num_classes=2, shuffle=True)
    model.fit(train, epochs=1)
    ```

    Args:
        path, text_columns, label_column, format, num_classes, limit: see `read_file`.
        batch_size: examples per batch.
        shuffle: shuffle all examples (with `seed`), reshuffled every epoch.
        seed: shuffle seed.

    Raises:
        FileNotFoundError / ValueError: as `read_file`, before any TensorFlow work.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}")
    texts, labels = read_file(
        path, text_columns, label_column, format=format, num_classes=num_classes, limit=limit
    )
    return from_examples(texts, labels, batch_size, shuffle=shuffle, seed=seed)
