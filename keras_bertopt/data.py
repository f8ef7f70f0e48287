"""Data loaders that return batched `tf.data.Dataset`s of (features, label).

Features are raw strings (or a tuple of two strings for sentence-pair tasks):
a keras-hub classifier carrying its preprocessor tokenizes them inside `fit`.

* `demo_dataset`: a small built-in sentiment set the package generates itself,
  learnable by `models.TinyConfig()` in a few hundred steps, with no download.
* `load_file`: a local TSV / CSV / JSON-lines file with named text and label
  columns (`read_file` gives the same examples as Python lists).
* `load_glue`: GLUE tasks through tensorflow_datasets (imported only when called).
* `length_report`: token-length percentiles and truncation per candidate
  `sequence_length`, to pick the length from data.
* `bucket_by_length`, `dynamic_padding`, `padding_report` (from
  `keras_bertopt.bucketing`): batches of similar length padded only to their
  bucket, for any of the loaders above.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import random
from typing import Any, Iterator, Sequence, Union

from keras_bertopt.models import SPECIAL_TOKENS

_POSITIVE = (
    "good",
    "great",
    "excellent",
    "fun",
    "loved",
    "wonderful",
    "best",
    "enjoyable",
    "brilliant",
    "charming",
    "moving",
    "delightful",
)
_NEGATIVE = (
    "bad",
    "awful",
    "boring",
    "terrible",
    "hated",
    "worst",
    "dull",
    "poor",
    "weak",
    "tedious",
    "mess",
    "painful",
)
_NEUTRAL = (
    "the",
    "movie",
    "film",
    "plot",
    "acting",
    "was",
    "is",
    "a",
    "and",
    "story",
    "really",
    "quite",
    "it",
    "this",
    "cast",
    "ending",
    "script",
    "very",
    "of",
    "an",
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
                        f"{path}, line {number}: expected a JSON object, got {type(row).__name__}"
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


# --------------------------------------------------------------------------------------
# GLUE through tensorflow_datasets
# --------------------------------------------------------------------------------------

#: GLUE tasks in tfds: (text feature names, number of classes; None for regression).
GLUE_TASKS: dict[str, tuple[tuple[str, ...], int | None]] = {
    "cola": (("sentence",), 2),
    "sst2": (("sentence",), 2),
    "mrpc": (("sentence1", "sentence2"), 2),
    "qqp": (("question1", "question2"), 2),
    "stsb": (("sentence1", "sentence2"), None),
    "mnli": (("premise", "hypothesis"), 3),
    "mnli_matched": (("premise", "hypothesis"), 3),
    "mnli_mismatched": (("premise", "hypothesis"), 3),
    "qnli": (("question", "sentence"), 2),
    "rte": (("sentence1", "sentence2"), 2),
    "wnli": (("sentence1", "sentence2"), 2),
    "ax": (("premise", "hypothesis"), 3),
}

_GLUE_SPLITS = {
    "mnli": (
        "train",
        "validation_matched",
        "validation_mismatched",
        "test_matched",
        "test_mismatched",
    ),
    "mnli_matched": ("validation", "test"),
    "mnli_mismatched": ("validation", "test"),
    "ax": ("test",),
}


def glue_task(task: str) -> tuple[tuple[str, ...], int | None]:
    """(text feature names, num_classes) of a GLUE task ("sst2" or "glue/sst2")."""
    name = task[len("glue/") :] if task.startswith("glue/") else task
    if name not in GLUE_TASKS:
        raise ValueError(
            f"`task` must be one of {sorted(GLUE_TASKS)} (optionally 'glue/...'), got {task!r}"
        )
    return GLUE_TASKS[name]


def _check_glue_split(name: str, split: str) -> None:
    known = _GLUE_SPLITS.get(name, ("train", "validation", "test"))
    for part in split.split("+"):
        base = part.split("[", 1)[0].strip()
        if base not in known:
            raise ValueError(
                f"`split` {split!r}: {base!r} is not a split of glue/{name} (one of {known}; "
                "tfds slicing such as 'train[:10%]' and '+' are allowed)"
            )


_GLUE_DOWNLOAD_URL = "https://dl.fbaipublicfiles.com/glue/data/"
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def _probe_download_host(builder: Any) -> None:
    """Fail in a second, not minutes, when the download host does not resolve.

    tfds retries a failed download 10 times with exponential backoff (about 3.5
    minutes offline); one DNS lookup of the data URL's host (GLUE's
    dl.fbaipublicfiles.com when the task config names none) tells sooner.
    Skipped behind a proxy, where local DNS may legitimately fail.
    """
    import socket
    import urllib.parse

    url = getattr(getattr(builder, "builder_config", None), "data_url", None)
    # MRPC has no data_url: its files come from GLUE's usual host too (and firebase).
    url = url if isinstance(url, str) and url else _GLUE_DOWNLOAD_URL
    host = urllib.parse.urlparse(url).hostname
    if host is None or any(os.environ.get(v) for v in _PROXY_VARIABLES):
        return
    try:
        socket.getaddrinfo(host, 443)
    except OSError as e:
        raise ConnectionError(f"cannot resolve the download host {host!r} ({e})") from e


def load_glue(
    task: str,
    split: str = "train",
    batch_size: int = 32,
    *,
    data_dir: str | None = None,
    download: bool = True,
    shuffle: bool | None = None,
    seed: int = 0,
    limit: int | None = None,
) -> Any:
    """A GLUE task from tensorflow_datasets as a batched dataset of (features, label).

    Single-sentence tasks (cola, sst2) give a string per example; sentence-pair
    tasks (mrpc, qqp, stsb, mnli, qnli, rte, wnli, ax) give a tuple of two
    strings, which keras-hub's `BertTextClassifierPreprocessor` packs as
    ``[CLS] a [SEP] b [SEP]``. Labels are int32 class ids (float32 scores for
    stsb); GLUE test splits carry label -1.

    Example:

    ```python
    train = keras_bertopt.data.load_glue("mrpc", "train", batch_size=32)
    model = keras_bertopt.models.build_classifier(SOURCE, num_classes=2)
    model.fit(train, validation_data=keras_bertopt.data.load_glue("mrpc", "validation"))
    ```

    tensorflow_datasets downloads GLUE on first use (it needs network access);
    offline, pass the `data_dir` of an already prepared copy with
    `download=False`, or use `load_file` on TSV files. When the data is not
    prepared and the download host does not resolve, this fails at once with a
    ConnectionError instead of waiting out tfds's retries.

    Args:
        task: a key of `GLUE_TASKS`, with or without the "glue/" prefix.
        split: a tfds split ("train", "validation", "validation_matched" for
            mnli, ...), slicing such as "train[:10%]" allowed.
        batch_size: examples per batch.
        data_dir, download: passed to `tfds.load`.
        shuffle: shuffle examples (default: only for splits starting with "train").
        seed: shuffle seed.
        limit: keep only the first `limit` examples.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"`limit` must be a positive integer or None, got {limit!r}")
    if not isinstance(split, str) or not split:
        raise ValueError(f"`split` must be a non-empty string, got {split!r}")
    columns, num_classes = glue_task(task)
    name = task[len("glue/") :] if task.startswith("glue/") else task
    _check_glue_split(name, split)
    shuffle = split.startswith("train") if shuffle is None else shuffle

    import tensorflow as tf
    import tensorflow_datasets as tfds

    def failure(cause: BaseException) -> str:
        return (
            f"could not load tfds dataset glue/{name} split {split!r} (data_dir={data_dir!r}, "
            f"download={download}): tensorflow_datasets downloads GLUE from the internet on "
            "first use, which needs network access (and tfds's download dependencies). "
            "Offline, prepare it on a machine with network access and pass its `data_dir` "
            "with download=False, or read TSV files with keras_bertopt.data.load_file. "
            f"Cause: {type(cause).__name__}: {cause}"
        )

    try:
        builder = tfds.builder(f"glue/{name}", data_dir=data_dir)
        if download and not builder.is_prepared():
            _probe_download_host(builder)
        ds = tfds.load(f"glue/{name}", split=split, data_dir=data_dir, download=download)
    except (OSError, ImportError, AssertionError) as e:
        if isinstance(e, ImportError):
            raise ImportError(failure(e)) from e
        if isinstance(e, (AssertionError, FileNotFoundError)):
            raise FileNotFoundError(failure(e)) from e
        raise ConnectionError(failure(e)) from e
    label_dtype = tf.float32 if num_classes is None else tf.int32

    def to_pair(example: dict[str, Any]) -> tuple[Any, Any]:
        texts = tuple(example[c] for c in columns)
        features = texts[0] if len(texts) == 1 else texts
        return features, tf.cast(example["label"], label_dtype)

    if limit is not None:
        ds = ds.take(limit)
    ds = ds.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle:
        ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------------------
# Token lengths: pick `sequence_length` from data
# --------------------------------------------------------------------------------------

#: Percentiles `length_report` reports.
LENGTH_PERCENTILES = (50, 90, 95, 99)


@dataclasses.dataclass
class LengthReport:
    """Token lengths of a text set (special tokens included) and truncation per length.

    Attributes:
        count: number of examples.
        segments: texts per example (1, or 2 for sentence pairs).
        special_tokens: special tokens added per example ([CLS] + one [SEP] per segment).
        mean: mean length.
        percentiles: {percentile: length}, for 50/90/95/99 and "max".
        truncated: {sequence_length: share of examples longer than it}.
    """

    count: int
    segments: int
    special_tokens: int
    mean: float
    percentiles: dict[Any, int]
    truncated: dict[int, float]

    def suggest(self, max_truncated: float = 0.01) -> int | None:
        """The smallest candidate length truncating at most `max_truncated` of examples."""
        for length in sorted(self.truncated):
            if self.truncated[length] <= max_truncated:
                return length
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (keys as strings)."""
        return {
            "count": self.count,
            "segments": self.segments,
            "special_tokens": self.special_tokens,
            "mean": round(self.mean, 2),
            "percentiles": {
                f"p{k}" if k != "max" else "max": v for k, v in self.percentiles.items()
            },
            "truncated_share": {str(k): round(v, 6) for k, v in self.truncated.items()},
            "suggested_sequence_length_1pct": self.suggest(0.01),
        }

    def __str__(self) -> str:
        pct = ", ".join(
            f"{'p' + str(k) if k != 'max' else 'max'} {v}" for k, v in self.percentiles.items()
        )
        lines = [
            f"{self.count} examples, tokens incl. {self.special_tokens} special: "
            f"mean {self.mean:.1f}, {pct}",
            "sequence_length  truncated",
        ]
        for length, share in sorted(self.truncated.items()):
            lines.append(f"{length:>15}  {100 * share:8.2f}%")
        return "\n".join(lines)


def _features_of(element: Any) -> Any:
    """The features of a dataset element: drop a trailing non-string label."""
    if isinstance(element, tuple) and len(element) == 2:
        label_dtype = getattr(element[1], "dtype", None)
        if label_dtype is not None and label_dtype.name != "string":
            return element[0]
    return element


def _collect_texts(data: Any) -> list[list[str]]:
    """Texts as segment columns: [[a0, a1, ...]] or [[a...], [b...]] for pairs."""
    import tensorflow as tf

    def as_list(x: Any) -> list[str]:
        if isinstance(x, str):
            return [x]
        if isinstance(x, bytes):
            return [x.decode("utf-8")]
        if isinstance(x, (tf.Tensor, tf.RaggedTensor)) or hasattr(x, "numpy"):
            arr = x.numpy()
            arr = arr.reshape(-1) if hasattr(arr, "reshape") else [arr]
            return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in arr]
        raise ValueError(f"`texts_or_dataset` holds {type(x).__name__}, expected strings")

    if isinstance(data, tf.data.Dataset):
        columns: list[list[str]] | None = None
        for element in data:
            features = _features_of(element)
            if isinstance(features, dict):
                raise ValueError(
                    "`texts_or_dataset` yields dicts (already preprocessed?); pass raw texts"
                )
            parts = list(features) if isinstance(features, tuple) else [features]
            if columns is None:
                columns = [[] for _ in parts]
            if len(parts) != len(columns):
                raise ValueError("`texts_or_dataset` mixes single texts and text pairs")
            for column, part in zip(columns, parts, strict=True):
                column.extend(as_list(part))
        if not columns:
            raise ValueError("`texts_or_dataset` is empty")
        return columns
    if isinstance(data, str):
        raise ValueError("`texts_or_dataset` must be a list of texts, not one string")
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], str):
        columns = [list(map(str, data[0])), list(map(str, data[1]))]
        if len(columns[0]) != len(columns[1]):
            raise ValueError("`texts_or_dataset`: the two text lists differ in length")
    else:
        items = list(data)
        if items and all(isinstance(t, (tuple, list)) and len(t) == 2 for t in items):
            columns = [[str(t[0]) for t in items], [str(t[1]) for t in items]]
        else:
            columns = [[t.decode("utf-8") if isinstance(t, bytes) else t for t in items]]
            if not all(isinstance(t, str) for t in columns[0]):
                raise ValueError("`texts_or_dataset` must hold strings (or pairs of strings)")
    if not columns[0]:
        raise ValueError("`texts_or_dataset` is empty")
    return columns


def _token_counts(tokenizer: Any, texts: list[str], batch_size: int = 2048) -> Any:
    import numpy as np
    import tensorflow as tf

    counts = []
    for start in range(0, len(texts), batch_size):
        ids = tokenizer(tf.constant(texts[start : start + batch_size]))
        if isinstance(ids, tf.RaggedTensor):
            counts.append(ids.row_lengths().numpy())
        elif isinstance(ids, list):  # keras-hub tokenizers return lists in eager mode
            counts.append(np.array([len(row) for row in ids], dtype=np.int64))
        else:  # a dense result means the tokenizer pads to a fixed length
            raise ValueError(
                "the tokenizer returned padded ids: pass a tokenizer without `sequence_length`"
            )
    return np.concatenate(counts).astype(np.int64)


def length_report(
    texts_or_dataset: Any,
    preprocessor_or_tokenizer: Any,
    candidates: Sequence[int] = (32, 64, 128, 256, 512),
) -> LengthReport:
    """Token-length percentiles and the share of examples each `sequence_length` would truncate.

    Lengths count the special tokens the BERT preprocessor adds ([CLS] and a
    [SEP] after each segment: 2 for single texts, 3 for pairs), so an example
    is truncated at `sequence_length` L exactly when its length is > L.

    Example:

    ```python
    texts, _ = keras_bertopt.data.read_file("sst2/train.tsv", "sentence", "label")
    report = keras_bertopt.data.length_report(texts, model.preprocessor)
    print(report)            # percentiles + truncated share per candidate length
    report.suggest(0.01)     # smallest candidate truncating <= 1% of examples
    ```

    Args:
        texts_or_dataset: a list of strings, a list of string pairs, a tuple of
            two lists, or a tf.data.Dataset of texts or (texts, label) batches.
        preprocessor_or_tokenizer: a keras-hub text classifier preprocessor
            (its `.tokenizer` is used) or a tokenizer returning ragged ids.
        candidates: sequence lengths to report the truncated share of.
    """
    tokenizer = getattr(preprocessor_or_tokenizer, "tokenizer", preprocessor_or_tokenizer)
    if not callable(tokenizer):
        raise ValueError(
            "`preprocessor_or_tokenizer` must be a keras-hub preprocessor or tokenizer, got "
            f"{type(preprocessor_or_tokenizer).__name__}"
        )
    candidates = sorted(set(candidates))
    if not candidates or not all(isinstance(c, int) and c >= 1 for c in candidates):
        raise ValueError(f"`candidates` must be positive integers, got {candidates!r}")
    import numpy as np

    columns = _collect_texts(texts_or_dataset)
    special = 1 + len(columns)
    lengths = sum(_token_counts(tokenizer, column) for column in columns) + special
    percentiles: dict[Any, int] = {
        p: int(np.percentile(lengths, p, method="higher")) for p in LENGTH_PERCENTILES
    }
    percentiles["max"] = int(lengths.max())
    truncated = {c: float(np.mean(lengths > c)) for c in candidates}
    return LengthReport(
        count=int(lengths.size),
        segments=len(columns),
        special_tokens=special,
        mean=float(lengths.mean()),
        percentiles=percentiles,
        truncated=truncated,
    )


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
