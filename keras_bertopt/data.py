"""Data loaders that return batched `tf.data.Dataset`s of (features, label).

Features are raw strings (or a tuple of two strings for sentence-pair tasks):
a keras-hub classifier carrying its preprocessor tokenizes them inside `fit`.

* `demo_dataset`: a small built-in sentiment set the package generates itself
  (`keras_bertopt.demo`), learnable by `models.TinyConfig()` in a few hundred
  steps, with no download.
* `load_file`: a local TSV / CSV / JSON-lines file with named text and label
  columns (`read_file` gives the same examples as Python lists).
* `load_glue`: GLUE tasks through tensorflow_datasets (imported only when called;
  `keras_bertopt.glue`).
* `length_report`: token-length percentiles and truncation per candidate
  `sequence_length`, to pick the length from data.
* `bucket_by_length`, `dynamic_padding`, `padding_report` (from
  `keras_bertopt.bucketing`): batches of similar length padded only to their
  bucket, for any of the loaders above.
"""

from __future__ import annotations

import os
from typing import Any, Union

from keras_bertopt import text_files

# The demo's examples and vocabulary live in `keras_bertopt.demo`; they stay reachable here.
from keras_bertopt.demo import DEMO_SIZES as DEMO_SIZES
from keras_bertopt.demo import demo_examples as demo_examples
from keras_bertopt.demo import demo_vocabulary as demo_vocabulary

# GLUE through tensorflow_datasets lives in `keras_bertopt.glue`; it stays reachable here.
from keras_bertopt.glue import GLUE_TASKS as GLUE_TASKS
from keras_bertopt.glue import glue_task as glue_task
from keras_bertopt.glue import load_glue as load_glue

# `length_report` lives in `keras_bertopt.lengths`; it stays reachable here.
from keras_bertopt.lengths import LENGTH_PERCENTILES as LENGTH_PERCENTILES
from keras_bertopt.lengths import LengthReport as LengthReport
from keras_bertopt.lengths import length_report as length_report


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

#: File formats `load_file` reads, by extension (the labelled ones of `text_files`).
FILE_FORMATS = {k: v for k, v in text_files.FILE_FORMATS.items() if v != "txt"}


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
    cols = text_files.check_text_columns(text_columns)
    if not isinstance(label_column, str) or not label_column:
        raise ValueError(f"`label_column` must be a column name, got {label_column!r}")
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"`num_classes` must be a positive integer or None, got {num_classes!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"`limit` must be a positive integer or None, got {limit!r}")
    fmt = text_files.file_format(path, format, ("tsv", "csv", "jsonl"))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`path` {path!r} does not exist or is not a file")
    columns: list[list[str]] = [[] for _ in cols]
    labels: list[int] = []
    for number, row in text_files.iter_rows(path, fmt, (*cols, label_column)):
        where = f"{path}, line {number}"
        for column, name in zip(columns, cols, strict=True):
            column.append(text_files.row_text(row, name, where, fmt))
        if label_column not in row:
            raise ValueError(
                f"{where}: missing column {label_column!r} (the row has {', '.join(map(str, row))})"
            )
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
        path: see `read_file`.
        text_columns: see `read_file`.
        label_column: see `read_file`.
        format: see `read_file`.
        num_classes: see `read_file`.
        limit: see `read_file`.
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


# --------------------------------------------------------------------------------------
# Length bucketing lives in keras_bertopt.bucketing (loaded on first use: it imports
# keras-hub); its public names are reachable from here.
# --------------------------------------------------------------------------------------

_BUCKETING_NAMES = (
    "DEFAULT_BOUNDS",
    "DynamicPaddingPreprocessor",
    "PaddingReport",
    "bucket_bounds",
    "bucket_by_length",
    "dynamic_padding",
    "padding_report",
)


def __getattr__(name: str) -> Any:
    if name in _BUCKETING_NAMES:
        from keras_bertopt import bucketing

        return getattr(bucketing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
