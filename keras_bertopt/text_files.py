"""Text files in, rows out: the one reader of TSV / CSV / JSON-lines / plain-text input.

Every command and loader that reads sentences from a local file goes through
here, so each format is parsed one way and every bad line is reported the same
way (the file and the line number, before anything is done with it):

* ``.tsv``: a header line naming the columns, then tab-separated rows, read the
  GLUE way (quotes are ordinary characters);
* ``.csv``: a header line, then comma-separated rows (RFC 4180 quoting);
* ``.jsonl`` / ``.json``: one JSON object per line;
* ``.txt``: one text per line, no header (single texts only).

Blank lines are skipped everywhere. Files are decoded as UTF-8 line by line,
so a file larger than memory streams and an undecodable byte names its line.

`iter_rows` yields ``(line, row dict)`` (what `keras_bertopt.data.read_file`
builds labelled examples from); `iter_texts` yields ``(line, text)`` or
``(line, (first, second))`` for sentence pairs.

Example:

```python
for line, text in iter_texts("tickets.txt"):
    ...
for line, (premise, hypothesis) in iter_texts("pairs.tsv", ("premise", "hypothesis")):
    ...
```
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]

#: Formats by file extension.
FILE_FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".txt": "txt"}


def file_format(path: str, format: str | None,
                allowed: tuple[str, ...] = ("tsv", "csv", "jsonl", "txt")) -> str:
    """The format of `path`: `format` when given, else from the extension.

    Raises:
        ValueError: an unknown `format` or extension (naming the ones `allowed`).
    """
    names = " | ".join(repr(a) for a in allowed)
    if format is not None:
        if format not in allowed:
            raise ValueError(f"`format` must be {names}, got {format!r}")
        return format
    ext = os.path.splitext(path)[1].lower()
    if FILE_FORMATS.get(ext) not in allowed:
        known = sorted(e for e, f in FILE_FORMATS.items() if f in allowed)
        raise ValueError(
            f"cannot tell the format of {path!r} from its extension {ext!r}: pass "
            f"`format={names}` (known extensions: {known})"
        )
    return FILE_FORMATS[ext]


def check_text_columns(columns: Any) -> tuple[str, ...]:
    """One column name, or two for sentence pairs, as a tuple (checked)."""
    cols = (columns,) if isinstance(columns, str) else tuple(columns)
    if not 1 <= len(cols) <= 2 or not all(isinstance(c, str) and c for c in cols):
        raise ValueError(
            "`text_columns` must be a column name or a sequence of one or two column "
            f"names (two for sentence pairs), got {columns!r}"
        )
    return cols


def _lines(path: str) -> Iterator[str]:
    """The file's lines (line ends kept), decoded as UTF-8 one at a time."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{path}, line {number}: not valid UTF-8 ({err.reason} at byte {err.start})"
                ) from None


def _iter_jsonl(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    seen = False
    for number, line in enumerate(_lines(path), start=1):
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


def _iter_delimited(path: str, fmt: str,
                    required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, Any]]]:
    if fmt == "tsv":
        # GLUE-style TSV: tabs separate fields and quotes are ordinary characters.
        reader = csv.reader(_lines(path), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(_lines(path))
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


def iter_rows(path: PathLike, fmt: str,
              required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, row)`` of a TSV / CSV / JSON-lines file, streaming.

    A TSV / CSV header must name every column in `required` (JSON lines are
    checked row by row by the caller).

    Raises:
        ValueError: naming the file and line: an empty file, a bad header, a
            row with the wrong number of fields, invalid JSON or UTF-8.
    """
    path = os.fspath(path)
    if fmt == "jsonl":
        return _iter_jsonl(path)
    if fmt in ("tsv", "csv"):
        return _iter_delimited(path, fmt, required)
    raise ValueError(f"`fmt` must be 'tsv', 'csv' or 'jsonl', got {fmt!r}")


def row_text(row: dict[str, Any], name: str, where: str, fmt: str) -> str:
    """Column `name` of a row as a string; JSON numbers become text, other values are errors."""
    if name not in row:
        raise ValueError(f"{where}: missing column {name!r} (the row has "
                         f"{', '.join(map(str, row))})")
    value = row[name]
    if isinstance(value, str):
        return value
    if fmt == "jsonl" and value is not None and not isinstance(value, (dict, list)):
        return str(value)
    raise ValueError(f"{where}: column {name!r} is not text ({value!r})")


def iter_texts(path: PathLike, text_columns: Any = "sentence", *,
               format: str | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, text)`` (or ``(line, (first, second))`` for two columns).

    Args:
        path: a ``.txt`` / ``.tsv`` / ``.csv`` / ``.jsonl`` file (see the module
            docstring); other columns (e.g. a label) are ignored.
        text_columns: the text column, or two for sentence pairs (not for ``.txt``).
        format: ``"txt" | "tsv" | "csv" | "jsonl"``; default: from the extension.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: before the first text for bad arguments, an empty file or a
            bad header; while iterating for a bad line, naming it.
    """
    path = os.fspath(path)
    cols = check_text_columns(text_columns)
    fmt = file_format(path, format)
    if fmt == "txt" and len(cols) == 2:
        raise ValueError(f"{path}: a .txt file holds one text per line; sentence pairs need a "
                         "TSV / CSV / JSON-lines file with two text columns")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`path` {path!r} does not exist or is not a file")
    return _txt_texts(path) if fmt == "txt" else _column_texts(path, fmt, cols)


def _txt_texts(path: str) -> Iterator[tuple[int, str]]:
    seen = False
    for number, line in enumerate(_lines(path), start=1):
        text = line.rstrip("\r\n")
        if text.strip():
            seen = True
            yield number, text
    if not seen:
        raise ValueError(f"{path}: the file is empty (no lines of text)")


def _column_texts(path: str, fmt: str, cols: tuple[str, ...]) -> Iterator[tuple[int, Any]]:
    for number, row in iter_rows(path, fmt, cols):
        where = f"{path}, line {number}"
        texts = tuple(row_text(row, name, where, fmt) for name in cols)
        yield number, texts[0] if len(texts) == 1 else texts
