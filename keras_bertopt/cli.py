"""The ``keras-bertopt`` command.

```
keras-bertopt demo [--output DIR]                  # whole recipe, tiny model, offline, < 3 min
keras-bertopt run CONFIG.yaml [--output DIR] [--set finetune.epochs=1 ...]
keras-bertopt export MODEL.keras --output X.tflite --quantization int8 [--data demo]
    [--metadata --labels negative,positive | --no-metadata]
keras-bertopt evaluate FILE.tflite|FILE.keras --data dev.tsv [--preprocessor MODEL.keras]
keras-bertopt predict FILE.tflite|FILE.keras --input texts.txt --output predictions.jsonl
```

Exit status: 0 on success; 2 for bad arguments, a bad config or an output folder
that is refused, all found before any work starts; 1 when something fails once
work has started (a stage, a conversion, a prediction).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Sequence

from keras_bertopt import console
from keras_bertopt.export.modes import QUANTIZATION_MODES

log = console.logger()


class UsageError(ValueError):
    """Bad command-line input (exit status 2)."""


class WorkFailed(RuntimeError):
    """Something failed after the command started its work (exit status 1)."""


def _fit_verbose(args: argparse.Namespace) -> Any:
    """Keras progress bars on a terminal, one line per epoch in a log file, none with --quiet."""
    if args.verbosity == console.QUIET:
        return 0
    return 1 if sys.stdout.isatty() else 2


def _recipe_run(config: Any, args: argparse.Namespace) -> dict[str, Any]:
    from keras_bertopt import recipe

    try:
        return recipe.run(config, output_dir=args.output, fit_verbose=_fit_verbose(args))
    except recipe.RecipeError as err:
        raise WorkFailed(str(err)) from err


def cmd_demo(args: argparse.Namespace) -> int:
    from keras_bertopt import recipe

    start = time.perf_counter()
    report = _recipe_run(recipe.demo_config(), args)
    _print_summary(report)
    log.info(f"demo finished in {time.perf_counter() - start:.1f} s; "
             f"see {os.path.join(args.output, 'report.md')}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from keras_bertopt import recipe

    try:
        overrides = recipe.parse_overrides(args.set or [])
    except ValueError as err:
        raise UsageError(f"--set: {err}") from None
    config = recipe.load_config(args.config, overrides)
    if args.output is None and config.output_dir is None:
        raise UsageError("no output directory: pass --output DIR or set output_dir in the config")
    if args.check:
        log.info(f"{args.config}: config is valid")
        return 0
    start = time.perf_counter()
    _print_summary(_recipe_run(config, args))
    log.info(f"run finished in {time.perf_counter() - start:.1f} s")
    return 0


def _print_summary(report: dict[str, Any]) -> None:
    """The final table, on stdout even with --quiet."""
    splits = report.get("splits") or []
    if not splits:
        return
    split = splits[0]
    for item in report.get("models", []):
        acc = item["metrics"].get(split, {}).get("accuracy")
        print(f"  {item['stage']:>9} keras          {item['size_bytes'] / 1e6:8.3f} MB  "
              f"{split} accuracy {acc:.4f}", flush=True)
    for item in report.get("exports", []):
        acc = item["metrics"].get(split, {}).get("accuracy")
        print(f"  {item['stage']:>9} tflite {item['quantization']:<8}"
              f"{item['size_bytes'] / 1e6:8.3f} MB  {split} accuracy {acc:.4f}", flush=True)


def _check_keras_path(path: str) -> None:
    if not path.endswith(".keras"):
        raise UsageError(f"MODEL must be a .keras file, got {path!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MODEL {path!r} does not exist")


def _load_keras(path: str) -> Any:
    from keras_bertopt.predict import load_model

    _check_keras_path(path)
    return load_model(path)


def _read_data(spec: str, args: argparse.Namespace, num_classes: int | None = None):
    """(texts, labels) from ``demo``, ``demo:SPLIT`` or a TSV/CSV/JSONL file."""
    from keras_bertopt import data

    if spec == "demo" or spec.startswith("demo:"):
        split = spec.partition(":")[2] or "validation"
        if split not in data.DEMO_SIZES:
            raise UsageError(f"--data demo:SPLIT: SPLIT must be one of {sorted(data.DEMO_SIZES)}")
        texts, labels = data.demo_examples(split)
        if args.limit:
            texts, labels = texts[: args.limit], labels[: args.limit]
        return texts, labels
    if not os.path.isfile(spec):
        raise FileNotFoundError(
            f"--data {spec!r}: expected 'demo', 'demo:SPLIT' or an existing TSV/CSV/JSONL file"
        )
    return data.read_file(spec, args.text_column, args.label_column, num_classes=num_classes,
                          limit=args.limit)


def cmd_export(args: argparse.Namespace) -> int:
    from keras_bertopt.recipe.stages.export import export_model, metadata_arguments

    if not args.output.endswith(".tflite"):
        raise UsageError(f"--output must end in .tflite, got {args.output!r}")
    _check_keras_path(args.model)
    texts = labels = None
    if args.data is not None:
        texts, labels = _read_data(args.data, args)
    model = _load_keras(args.model)
    from keras_bertopt import data, quantization

    qat = quantization.is_quantize_aware(model)
    if args.quantization == "int8" and not qat and texts is None:
        raise UsageError(
            "--quantization int8 of a float model needs --data (representative examples "
            "for calibration: 'demo' or a TSV/CSV/JSONL file)"
        )
    representative = sample = None
    if texts is not None:
        sample = list(texts[:64]) if isinstance(texts, list) else None
        if args.quantization == "int8" and not qat:
            representative = data.from_examples(texts, labels, 32).map(lambda x, y: x).take(
                args.representative_batches)
    labels_arg = [x.strip() for x in args.labels.split(",")] if args.labels else []
    kwargs = metadata_arguments(model, args.metadata, labels_arg,
                                int(getattr(model, "num_classes", 0) or 2))
    sequence_length = args.sequence_length or _model_sequence_length(model)
    start = time.perf_counter()
    try:
        report = export_model(model, args.output, args.quantization,
                              representative_data=representative,
                              sequence_length=sequence_length, sample_data=sample, **kwargs)
    except Exception as err:
        raise WorkFailed(f"export failed: {type(err).__name__}: {err}") from err
    log.info(f"wrote {args.output} ({os.path.getsize(args.output) / 1e6:.3f} MB) "
             f"in {time.perf_counter() - start:.1f} s")
    log.info(str(report))
    return 0


def _model_sequence_length(model: Any) -> int:
    length = getattr(getattr(model, "preprocessor", None), "sequence_length", None)
    if not length:
        raise UsageError("cannot tell the sequence length of MODEL: pass --sequence-length")
    return int(length)


def _tflite_preprocessor(args: argparse.Namespace) -> Any:
    from keras_bertopt.predict import find_preprocessor

    return find_preprocessor(args.file, args.preprocessor, args.sequence_length)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from keras_bertopt.files import gzip_size
    from keras_bertopt.metrics import label_metrics
    from keras_bertopt.recipe.stages.evaluate import keras_labels, tflite_labels

    path = args.file
    if not path.endswith((".tflite", ".keras")):
        raise UsageError(f"FILE must be a .tflite or .keras file, got {path!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"FILE {path!r} does not exist")
    console.import_backend()
    texts, labels = _read_data(args.data, args)
    num_classes = max(int(max(labels)) + 1, args.num_classes)
    if path.endswith(".tflite"):
        from keras_bertopt.export import TFLiteClassifier

        model = TFLiteClassifier(path, _tflite_preprocessor(args))  # checks the file
        predict = tflite_labels
    else:
        model, predict = _load_keras(path), keras_labels
    start = time.perf_counter()
    try:
        predicted = predict(model, texts)
    except Exception as err:
        raise WorkFailed(f"prediction failed: {type(err).__name__}: {err}") from err
    metrics = label_metrics(labels, predicted, num_classes)
    metrics.update(seconds=time.perf_counter() - start, file=path,
                   size_bytes=os.path.getsize(path), gzip_bytes=gzip_size(path))
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        log.info(f"{path}: accuracy {metrics['accuracy']:.4f}, F1 {metrics['f1']:.4f} on "
                 f"{metrics['examples']} examples ({metrics['seconds']:.1f} s); size "
                 f"{metrics['size_bytes'] / 1e6:.3f} MB, gzip {metrics['gzip_bytes'] / 1e6:.3f} MB")
    return 0
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``keras-bertopt`` (demo, run, export, evaluate, predict)."""
    parser = argparse.ArgumentParser(
        prog="keras-bertopt",
        description="Fine-tune, prune, quantize and export keras-hub BERT classifiers to TFLite, "
        "and prove on held-out data that the small file still works.",
        epilog="Start with `keras-bertopt demo` (offline, tiny model, < 3 minutes on 2 cores). "
        "Exit status: 0 ok, 2 bad arguments/config, 1 failure.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_recipe_commands(sub)
    _add_file_commands(sub)

    from keras_bertopt import cli_predict

    cli_predict.add_parser(sub)
    return parser


def _add_recipe_commands(sub: Any) -> None:
    """``demo`` and ``run``."""
    common = console.add_arguments
    p = sub.add_parser(
        "demo", help="run the whole recipe on the built-in tiny model and data (offline)",
        description="Fine-tune -> prune (50%%) -> QAT -> export TFLite (float32, dynamic, int8, "
        "QAT int8) -> evaluate, on the built-in tiny BERT and demo data. Writes each stage's "
        ".keras model, the .tflite files and report.json/report.md/report.png to --output. "
        "Re-running into the same folder resumes; a folder holding something else is refused.",
    )
    p.add_argument("--output", default="keras-bertopt-demo", metavar="DIR",
                   help="output directory (default: %(default)s)")
    common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "run", help="run a recipe config (YAML or JSON)",
        description="Run the stages of a recipe config. The whole config is validated first "
        "(unknown keys and wrong types are errors naming the key). See examples/demo.yaml.",
    )
    p.add_argument("config", metavar="CONFIG", help="a .yaml/.yml/.json recipe config")
    p.add_argument("--output", metavar="DIR", help="output directory (overrides output_dir)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set finetune.epochs=1 (repeatable)")
    p.add_argument("--check", action="store_true", help="only validate the config")
    common(p)
    p.set_defaults(func=cmd_run)


def _add_file_commands(sub: Any) -> None:
    """``export`` and ``evaluate``."""
    common = console.add_arguments
    p = sub.add_parser(
        "export", help="turn a saved .keras classifier into a TFLite file",
        description="Export a .keras BERT classifier (with its preprocessor) to TFLite, verify "
        "the file against the Keras model and print the export report.",
    )
    p.add_argument("model", metavar="MODEL.keras")
    p.add_argument("--output", required=True, metavar="X.tflite")
    p.add_argument("--quantization", choices=QUANTIZATION_MODES, default="none",
                   help="none (float32), float16, dynamic (dynamic-range int8 weights) or int8 "
                   "(full int8: a QAT model's learned ranges, or calibration on --data)")
    p.add_argument("--sequence-length", type=int, help="default: the model preprocessor's")
    p.add_argument("--data", help="representative data for int8 of a float model and sample "
                   "texts for the checks: 'demo', 'demo:SPLIT' or a TSV/CSV/JSONL file")
    p.add_argument("--representative-batches", type=int, default=8)
    p.add_argument("--metadata", action=argparse.BooleanOptionalAction, default=None,
                   help="embed MediaPipe TextClassifier metadata (vocabulary, --labels; the "
                   "file then outputs probabilities); default: on when mediapipe is installed "
                   "and the tokenizer is uncased. --no-metadata: logits out, no metadata. "
                   "Either way the file runs each text at its own length")
    p.add_argument("--labels", help="comma-separated class names for the metadata (default: "
                   "0,1,...)")
    _data_args(p)
    common(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "evaluate", help="score a .tflite or .keras classifier on a data set",
        description="Accuracy, F1 and the confusion matrix of a .tflite or .keras classifier on "
        "raw labelled text. A .tflite file needs the preprocessor: found automatically for "
        "files in a recipe's export/ folder and files with MediaPipe metadata.",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--data", required=True,
                   help="'demo', 'demo:SPLIT' or a TSV/CSV/JSONL file with text and label columns")
    p.add_argument("--preprocessor", help="for .tflite: a .keras model, a Hugging Face "
                   "checkpoint directory or 'tiny'")
    p.add_argument("--sequence-length", type=int,
                   help="for --preprocessor directories / 'tiny' (default 128)")
    p.add_argument("--num-classes", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    _data_args(p)
    common(p)
    p.set_defaults(func=cmd_evaluate)


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-column", default="sentence", help="default: %(default)s")
    p.add_argument("--label-column", default="label", help="default: %(default)s")
    p.add_argument("--limit", type=_positive_int, metavar="N",
                   help="read at most N examples (N >= 1)")


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``keras-bertopt``; returns (and, as a script, exits with) the status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        console.configure(args.verbosity)
        console.filter_native_stderr()
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        hint = "; run the same command again to resume" if args.command in ("demo", "run") else ""
        print(f"keras-bertopt {args.command}: interrupted{hint}", file=sys.stderr, flush=True)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError) as err:  # found before any work
        print(f"keras-bertopt {args.command}: error: {err}", file=sys.stderr, flush=True)
        return 2
    except Exception as err:  # failed once work had started
        print(f"keras-bertopt {args.command}: failed: {type(err).__name__}: {err}",
              file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
