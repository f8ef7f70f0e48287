"""GLUE tasks through tensorflow_datasets, as batched `tf.data.Dataset`s of (features, label).

tensorflow_datasets is imported only when `load_glue` runs; `GLUE_TASKS` and
`glue_task` (the tasks' text columns and class counts) need nothing.

```python
from keras_bertopt.glue import glue_task, load_glue
glue_task("glue/mrpc")                      # (("sentence1", "sentence2"), 2)
train = load_glue("mrpc", "train", batch_size=32)
```
"""

from __future__ import annotations

import os
from typing import Any

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


def _tfds_load(name: str, split: str, data_dir: str | None, download: bool) -> Any:
    """`tfds.load` of glue/`name`, its failures turned into errors that say what to do offline."""
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
        return tfds.load(f"glue/{name}", split=split, data_dir=data_dir, download=download)
    except (OSError, ImportError, AssertionError) as e:
        if isinstance(e, ImportError):
            raise ImportError(failure(e)) from e
        if isinstance(e, (AssertionError, FileNotFoundError)):
            raise FileNotFoundError(failure(e)) from e
        raise ConnectionError(failure(e)) from e


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
        data_dir: passed to `tfds.load`.
        download: passed to `tfds.load`.
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

    ds = _tfds_load(name, split, data_dir, download)
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
