"""MediaPipe Tasks' TextClassifier per sentence, paired, for `latency.py`.

Two dynamic-range files of one model, both with MediaPipe metadata: `to_tflite`'s
default (one dynamic-length signature: MediaPipe tokenizes each text to its own
length) and a fixed-128 file (``length_buckets=None, dynamic_length=False``:
MediaPipe pads every text to 128). Every sentence runs, raw text in, through
MediaPipe on both files and through `TFLiteClassifier.predict([text])` on the
default file (the keras-hub tokenizer in Python included), back to back in an
order rotating per sentence and reversed every other round. Reported: median ms
per call, the paired ratio (median over sentences and rounds of one file's time
over the fixed-128 file's on the same sentence), accuracy, and the label
agreement of MediaPipe on the default file with `TFLiteClassifier` on it.
"""

from __future__ import annotations

import os
import statistics
import time

LABELS = ["negative", "positive"]


def _classifier(path: str):
    from mediapipe.tasks.python.core.base_options import BaseOptions
    from mediapipe.tasks.python.text import text_classifier

    options = text_classifier.TextClassifierOptions(
        base_options=BaseOptions(model_asset_path=path), max_results=1)
    return text_classifier.TextClassifier.create_from_options(options)


def _mediapipe_call(classifier):
    def call(text: str) -> int:
        return LABELS.index(classifier.classify(text).classifications[0].categories[0]
                            .category_name)

    return call


def _runner_call(runner):
    def call(text: str) -> int:
        return int(runner.predict([text])["labels"][0])

    return call


def export_files(model, folder: str, sequence_length: int) -> dict:
    """The default and the fixed-length metadata files (dynamic-range); name -> path."""
    from keras_bertopt.export import to_tflite

    paths = {}
    for name, kwargs in (("default", {}),
                         ("fixed", {"length_buckets": None, "dynamic_length": False})):
        path = os.path.join(folder, f"mediapipe_{name}.tflite")
        report = to_tflite(model, path, "dynamic", sequence_length=sequence_length,
                           metadata=True, labels=LABELS, verify=False, **kwargs)
        paths[name] = (path, report.layout)
    return paths


def paired_mediapipe(model, folder: str, texts: list, truth, rounds: int,
                     sequence_length: int, log=print) -> dict:
    """Time MediaPipe on the default and the fixed file and TFLiteClassifier on the default."""
    import numpy as np

    from keras_bertopt.export import TFLiteClassifier

    paths = export_files(model, folder, sequence_length)
    classifiers = {name: _classifier(path) for name, (path, _) in paths.items()}
    calls = {"mediapipe_default": _mediapipe_call(classifiers["default"]),
             "mediapipe_fixed": _mediapipe_call(classifiers["fixed"]),
             "tflite_classifier_default": _runner_call(
                 TFLiteClassifier(paths["default"][0], model.preprocessor, num_threads=1,
                                  cache_size=0))}
    keys = list(calls)
    for text in texts[:5]:  # warm-up
        for call in calls.values():
            call(text)
    n = len(texts)
    times = {key: np.zeros((rounds, n)) for key in keys}
    labels = {key: np.zeros(n, np.int64) for key in keys}
    for r in range(rounds):
        base = keys if r % 2 == 0 else keys[::-1]
        for i, text in enumerate(texts):
            shift = i % len(keys)
            for key in base[shift:] + base[:shift]:
                start = time.perf_counter()
                labels[key][i] = calls[key](text)
                times[key][r, i] = (time.perf_counter() - start) * 1000.0
    for classifier in classifiers.values():
        classifier.close()
    for path, _ in paths.values():
        os.remove(path)
    truth = np.asarray(truth)
    rows = {}
    for key in keys:
        rows[key] = {
            "median_ms": round(statistics.median(
                float(np.median(times[key][r])) for r in range(rounds)), 3),
            "paired_vs_mediapipe_fixed": round(float(np.median(
                times[key] / times["mediapipe_fixed"])), 4),
            "accuracy": float(np.mean(labels[key] == truth)),
        }
    agreement = float(np.mean(labels["mediapipe_default"]
                              == labels["tflite_classifier_default"]))
    log(f"MediaPipe default file: {rows['mediapipe_default']['median_ms']:.2f} ms median, "
        f"{rows['mediapipe_default']['paired_vs_mediapipe_fixed']:.3f}x the fixed-128 file "
        f"(paired); label agreement with TFLiteClassifier {agreement:.4f}")
    return {"files": rows, "sentences": n, "rounds": rounds,
            "layouts": {name: layout for name, (_, layout) in paths.items()},
            "quantization": "dynamic",
            "label_agreement_mediapipe_default_vs_tflite_classifier": agreement,
            "label_agreement_mediapipe_fixed_vs_mediapipe_default": float(np.mean(
                labels["mediapipe_fixed"] == labels["mediapipe_default"])),
            "threads": "MediaPipe's default (its Python API sets none); TFLiteClassifier 1"}


def print_table(result: dict) -> None:
    print("| MediaPipe / runner | median ms per sentence | paired vs MediaPipe fixed-128 | "
          "accuracy |")
    print("| --- | --- | --- | --- |")
    for key, row in result["files"].items():
        print(f"| {key} | {row['median_ms']:.2f} | {row['paired_vs_mediapipe_fixed']:.3f} | "
              f"{100 * row['accuracy']:.2f} |")
    print("MediaPipe default file vs TFLiteClassifier: "
          f"{100 * result['label_agreement_mediapipe_default_vs_tflite_classifier']:.2f}% "
          "same labels")
