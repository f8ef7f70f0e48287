"""``keras-bertopt predict``: label a file of new texts with a shipped classifier.

```
keras-bertopt predict final_dynamic.tflite --input tickets.txt --output predictions.jsonl
keras-bertopt predict model.keras --input pairs.tsv --text-column sentence1,sentence2 \\
    --output predictions.jsonl --threads 2 --cache-size 0
```

The sub-command of `keras_bertopt.cli` (registered by its `build_parser`); the
work is `keras_bertopt.predict.predict_file`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable


def _progress(stream: Any) -> Callable[[int, float], None]:
    def report(done: int, seconds: float) -> None:
        rate = done / seconds if seconds > 0 else 0.0
        stream.write(f"\r[keras-bertopt] predict: {done} texts ({rate:.1f}/s)")
        stream.flush()

    return report


def _columns(value: str) -> list[str]:
    columns = [c.strip() for c in value.split(",")]
    if not 1 <= len(columns) <= 2 or not all(columns):
        raise ValueError(f"--text-column must be one column name or two separated by a comma "
                         f"(sentence pairs), got {value!r}")
    return columns


def cmd_predict(args: argparse.Namespace) -> int:
    from keras_bertopt.export.pool import check_workers
    from keras_bertopt.predict import predict_file

    columns = _columns(args.text_column)
    check_workers(args.threads, "--threads")
    if args.cache_size < 0:
        raise ValueError(f"--cache-size must be >= 0, got {args.cache_size}")
    labels = [x.strip() for x in args.labels.split(",")] if args.labels else None
    if not os.path.isfile(args.input):
        raise FileNotFoundError(f"--input {args.input!r} does not exist")
    from keras_bertopt import console

    quiet = args.verbosity == console.QUIET
    progress = None if quiet or not sys.stderr.isatty() else _progress(sys.stderr)
    summary = predict_file(
        args.model, args.input, args.output, text_columns=columns, format=args.format,
        progress=progress, preprocessor=args.preprocessor, sequence_length=args.sequence_length,
        workers=args.threads, cache_size=args.cache_size, batch_size=args.batch_size,
        labels=labels,
    )
    if progress is not None:
        sys.stderr.write("\n")
    print(f"[keras-bertopt] wrote {summary['examples']} predictions to {summary['output']} in "
          f"{summary['seconds']:.1f} s ({summary['examples_per_second']:.1f} texts/s; cache "
          f"{summary['cache_hits']} hits, {summary['cache_misses']} misses)", flush=True)
    return 0


def add_parser(sub: Any) -> None:
    """Add the ``predict`` sub-command to `keras_bertopt.cli`'s sub-parsers."""
    from keras_bertopt import console

    p = sub.add_parser(
        "predict", help="label a file of new texts with a .tflite or .keras classifier",
        description="Write one JSON line per input text (line, label, label_name, "
        "probabilities), in input order, streaming; the output appears only when complete. "
        "A .tflite file finds its preprocessor in its recipe run folder or in its MediaPipe "
        "metadata, or takes --preprocessor.",
    )
    p.add_argument("model", metavar="MODEL", help="a .tflite or .keras classifier")
    p.add_argument("--input", required=True, metavar="FILE",
                   help="texts: .txt (one per line), or .tsv/.csv/.jsonl with --text-column")
    p.add_argument("--output", required=True, metavar="X.jsonl")
    p.add_argument("--text-column", default="sentence",
                   help="the text column of a .tsv/.csv/.jsonl input; two separated by a comma "
                   "for sentence pairs (default: %(default)s)")
    p.add_argument("--format", choices=("txt", "tsv", "csv", "jsonl"),
                   help="input format (default: from the extension)")
    p.add_argument("--preprocessor", help="for .tflite: a .keras model, a Hugging Face "
                   "checkpoint directory or 'tiny'")
    p.add_argument("--sequence-length", type=int,
                   help="for --preprocessor directories / 'tiny' (default: the file's)")
    p.add_argument("--threads", type=int, default=None,
                   help="interpreters run side by side (default: all cores)")
    p.add_argument("--cache-size", type=int, default=10_000,
                   help="predictions kept for repeated texts (0: off; default %(default)s)")
    p.add_argument("--batch-size", type=int, default=32,
                   help="texts per call on dynamic-batch files and .keras models")
    p.add_argument("--labels", help="comma-separated class names (default: the file's "
                   "metadata labels, else 0,1,...)")
    console.add_arguments(p)
    p.set_defaults(func=cmd_predict)
