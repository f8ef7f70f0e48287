"""A bounded cache of a classifier's output rows, keyed on the token ids an example runs with.

Real text streams repeat themselves (the same ticket, the same review, the same
query); a repeated example need not run the model again. `PredictionCache`
keeps the output row of each example it has seen, least recently used out first,
keyed on the example's token ids and segment ids up to its real length (what the
model sees), so texts that tokenize alike (case, spacing, a cut past the
sequence length) share one entry. `cached_outputs` runs a model only on the rows
of a batch the cache lacks, each distinct row once (duplicates inside the batch
too), and counts hits and misses. `cached_text_outputs` first maps texts seen
before to their token-id key, so an exact repeat skips the tokenizer as well.

Example:

```python
cache = PredictionCache(10_000)
logits = cached_outputs(cache, arrays, lambda feeds: run_logits(signatures, feeds))
cache.hits, cache.misses
```
"""

from __future__ import annotations

import collections
import threading
from typing import Callable, Mapping

import numpy as np

from keras_bertopt.export.inputs import INPUT_NAMES, real_lengths


def row_keys(feeds: Mapping[str, np.ndarray]) -> list[bytes]:
    """One key per row: its int32 token ids and segment ids up to its real length."""
    ids = np.asarray(feeds["token_ids"], np.int32)
    segments = np.asarray(feeds["segment_ids"], np.int32)
    lengths = real_lengths(feeds)
    return [ids[i, :n].tobytes() + b"|" + segments[i, :n].tobytes()
            for i, n in enumerate(lengths.tolist())]


class PredictionCache:
    """Least-recently-used map from `row_keys` to output rows, at most `max_size` entries.

    Thread-safe. `hits` / `misses` count rows answered from the cache (or by an
    identical row earlier in the same batch) and rows the model ran.

    Args:
        max_size: entries kept; 0 turns the cache off (every row runs).
    """

    def __init__(self, max_size: int) -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0:
            raise ValueError(f"`cache_size` must be an integer >= 0, got {max_size!r}")
        self.max_size = max_size
        self.hits = 0
        self.misses = 0
        self._rows: collections.OrderedDict[bytes, np.ndarray] = collections.OrderedDict()
        self._texts: collections.OrderedDict[tuple, bytes] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: bytes) -> np.ndarray | None:
        """The row stored for `key` (now the most recently used), or None."""
        with self._lock:
            row = self._rows.get(key)
            if row is not None:
                self._rows.move_to_end(key)
            return row

    def put(self, key: bytes, row: np.ndarray) -> None:
        """Store `row` for `key`, dropping the least recently used entry when full."""
        if self.max_size == 0:
            return
        with self._lock:
            self._rows[key] = row
            self._rows.move_to_end(key)
            while len(self._rows) > self.max_size:
                self._rows.popitem(last=False)

    def text_row(self, text: tuple) -> np.ndarray | None:
        """The row stored for a text (a tuple of its segments) seen before, or None."""
        with self._lock:
            key = self._texts.get(text)
            if key is not None:
                self._texts.move_to_end(text)
        return None if key is None else self.get(key)

    def remember_text(self, text: tuple, key: bytes) -> None:
        """Note that `text` tokenizes to `key` (bounded like the rows)."""
        if self.max_size == 0:
            return
        with self._lock:
            self._texts[text] = key
            self._texts.move_to_end(text)
            while len(self._texts) > self.max_size:
                self._texts.popitem(last=False)

    def count(self, hits: int = 0, misses: int = 0) -> None:
        """Add to the hit and miss counts."""
        with self._lock:
            self.hits += hits
            self.misses += misses

    def clear(self) -> None:
        """Forget every entry and reset the counts."""
        with self._lock:
            self._rows.clear()
            self._texts.clear()
            self.hits = self.misses = 0

    def __repr__(self) -> str:
        return (f"PredictionCache({len(self)}/{self.max_size} entries, hits={self.hits}, "
                f"misses={self.misses})")


def cached_outputs(cache: PredictionCache | None, feeds: Mapping[str, np.ndarray],
                   compute: Callable[[dict[str, np.ndarray]], np.ndarray]) -> np.ndarray:
    """``compute(feeds)`` with the rows `cache` holds taken from it.

    `compute` runs once, on the distinct rows the cache lacks (in first-seen
    order); their outputs are stored. Without a cache (None or size 0) it runs
    on every row.
    """
    n = len(feeds["token_ids"])
    if cache is None or cache.max_size == 0 or n == 0:
        if cache is not None:
            cache.count(misses=n)
        return np.asarray(compute({k: np.asarray(feeds[k]) for k in INPUT_NAMES}))
    keys = row_keys(feeds)
    found: list[np.ndarray | None] = [cache.get(k) for k in keys]
    first: dict[bytes, int] = {}  # key -> position among the rows to run
    run: list[int] = []
    for i, (key, row) in enumerate(zip(keys, found, strict=True)):
        if row is None and key not in first:
            first[key] = len(run)
            run.append(i)
    if run:
        out = np.asarray(compute({k: np.asarray(feeds[k])[run] for k in INPUT_NAMES}))
        for key, position in first.items():
            cache.put(key, out[position].copy())
    rows = [row if row is not None else out[first[keys[i]]] for i, row in enumerate(found)]
    cache.count(hits=n - len(run), misses=len(run))
    return np.stack(rows)


def cached_text_outputs(cache: PredictionCache, columns: list[list[str]],
                        run: Callable[[list[list[str]]], tuple[dict, np.ndarray]]) -> np.ndarray:
    """Outputs for texts given as segment columns (`keras_bertopt.texts.text_columns`).

    Texts whose token-id key the cache learned earlier are answered without
    tokenizing; ``run(columns)`` tokenizes and runs the rest (through
    `cached_outputs`) and returns ``(feeds, outputs)``; their keys are noted.
    """
    texts = list(zip(*columns, strict=True))
    rows = [cache.text_row(t) for t in texts]
    todo = [i for i, row in enumerate(rows) if row is None]
    cache.count(hits=len(texts) - len(todo))
    if todo:
        feeds, out = run([[column[i] for i in todo] for column in columns])
        for j, (i, key) in enumerate(zip(todo, row_keys(feeds), strict=True)):
            cache.remember_text(texts[i], key)
            rows[i] = out[j]
    return np.stack(rows)
