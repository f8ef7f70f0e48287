"""Latency the way users meet it: SST-2 dev sentences one at a time, at their own lengths.

For one fine-tuned MiniLM-L6 (`common.finetuned_minilm()`, or ``--model
PATH.keras``), measured in one run on this machine:

* files: float32, dynamic-range, post-training int8 (256 SST-2 train sentences
  of calibration) and three QAT models, each `quantize_aware` + ``--qat-steps``
  steps of 32 length-bucketed SST-2 train sentences, `create_optimizer(2e-5)`
  (default 50; with ``--qat-distill`` learning from the float model by KD):
  ``qat_int8`` (static int8 activations, the ``"int8"`` file), ``qat_dynamic``
  (``QuantizationConfig(activations="dynamic")``: int8 weights learned, the
  ``"dynamic"`` file) and ``qat_fully_integer`` (``fully_integer=True``, every
  op int8 / int32; ``--no-fully-integer`` skips it);
* each in three layouts: ``fixed128`` (``length_buckets=None,
  dynamic_length=False``: every sentence padded to 128), ``buckets``
  (``length_buckets="default"``: 16/24/32/48/64/96/128, each sentence in the
  shortest bucket that holds it) and ``default`` (`to_tflite`'s default: one
  dynamic-length signature, each sentence at its own length, with MediaPipe
  metadata when `mediapipe` is installed); post-training int8 as fixed-128 only
  (its default is fixed length: calibration is per static shape);
* per file: the 872 dev sentences in dataset order, batch 1, one interpreter
  thread, each call timed through the package's interpreter call (bucket choice and
  trimming included) in a fresh process that holds only LiteRT
  (`keras_bertopt.compress.time_in_fresh_process`), in ``--rounds`` (3)
  paired rounds: every file
  is loaded at once and each sentence runs through all files back to back (order
  rotating per sentence), so load changes on the shared machine hit every file
  alike: median over rounds of each round's median, p90 and mean ms; paired
  ratios (median over sentences of this file's time / float32 fixed-128's and /
  dynamic-range's in the same layout, same sentence and round); dev accuracy;
  label agreement with the same mode's fixed-128 file; size; op counts;
* ratios against float32 fixed-128 (latency) and accuracy deltas against it;
* MediaPipe (`mediapipe_timing`): MediaPipe Tasks' `TextClassifier` per dev
  sentence, raw text in, on the dynamic-range default file and on a fixed-128
  metadata file, paired with `TFLiteClassifier.predict([text])` on the default
  file; label agreement of MediaPipe with `TFLiteClassifier`.

Default run: about 15-20 minutes on the shared 2-core machine (QAT ~3 of them).
``--quick``: 5 QAT steps, 100 dev sentences (development only, not a result).

    nohup flock /tmp/kbo_bench.lock python benchmarks/latency.py \
        > /tmp/kbo_latency.log 2>&1 &
    python benchmarks/latency.py --model my_finetune.keras --qat-steps 300

Writes benchmarks/results/latency.json (``--name``: another stem; ``_quick`` appended with
--quick).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    CACHE_DIR,
    evaluate_accuracy,
    finetuned_minilm,
    sst2_dataset,
    sst2_examples,
    write_result,
)
from mediapipe_timing import paired_mediapipe, print_table  # noqa: E402

SEQUENCE_LENGTH = 128
TRAIN_SEQUENCE_LENGTH = 64
#: Steps of 32 SST-2 train sentences of the cached fine-tune (`common.finetuned_minilm`).
FINETUNE_STEPS = 200
CALIBRATION_SAMPLES = 256
#: Peak learning rate of the QAT fine-tune (create_optimizer, 10% warm-up, linear decay).
QAT_PEAK_LEARNING_RATE = 2e-5
#: The file layouts compared: name -> `to_tflite` length arguments.
LAYOUTS = {
    "fixed128": {"length_buckets": None, "dynamic_length": False, "metadata": False},
    "buckets": {"length_buckets": "default"},  # 16/24/32/48/64/96/128
    "default": {},  # one dynamic-length signature (+ MediaPipe metadata when installed)
}
#: Sources measured in the fixed-128 layout only.
FIXED_ONLY = ("ptq_int8",)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def load_model(path: str | None):
    """The fine-tuned float model: `--model` or the cached 200-step fine-tune."""
    import keras

    if path is None:
        return finetuned_minilm(FINETUNE_STEPS, TRAIN_SEQUENCE_LENGTH, 32)
    if not os.path.isfile(path) or not path.endswith(".keras"):
        raise ValueError(f"`--model` must be an existing .keras file, got {path!r}")
    model = keras.saving.load_model(path)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["sparse_categorical_accuracy"])
    return model


def paired_ratios(times: dict, key: str) -> dict:
    """Median over sentences and rounds of this file's time / another's on the same call slot:
    against float32 fixed-128, against dynamic-range in the same layout and (for an
    alternative layout) against the same file in the default real-length layout."""
    import numpy as np

    name, layout = key.split("/")
    out = {}
    others = ["float32/fixed128", f"dynamic/{layout}"]
    if layout == "default":
        others.append(f"{name}/buckets")
    for other in others:
        if other in times and other != key:
            ratio = np.asarray(times[key]) / np.asarray(times[other])
            out[other] = round(float(np.median(ratio)), 4)
    return out


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p90_ms": round(ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
    }


def qat_model(model, steps: int, distill: bool, config=None) -> tuple:
    """`quantize_aware(model, config)` trained `steps` steps of 32 on length-bucketed SST-2 train.

    With `distill`, the float model is the teacher (`keras_bertopt.distillation.Distiller`,
    temperature 2, alpha 0.7, run live); otherwise hard labels only.
    """
    import keras

    from keras_bertopt.data import bucket_by_length, dynamic_padding
    from keras_bertopt.distillation import Distiller
    from keras_bertopt.optimizers import create_optimizer
    from keras_bertopt.quantization import QuantizationConfig, quantize_aware

    qat = quantize_aware(model, config or QuantizationConfig())
    fixed = qat.preprocessor
    dynamic_padding(qat)
    texts, labels = sst2_examples("train")
    train = bucket_by_length((texts, labels), qat.preprocessor, 32, seed=1).repeat()
    trainer = Distiller(model, qat, temperature=2.0, alpha=0.7) if distill else qat
    trainer.compile(
        optimizer=create_optimizer(QAT_PEAK_LEARNING_RATE, steps,
                                   warmup_steps=max(1, steps // 10), weight_decay=0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["sparse_categorical_accuracy"],
    )
    start = time.perf_counter()
    history = trainer.fit(train, epochs=1, steps_per_epoch=steps, verbose=2)
    seconds = time.perf_counter() - start
    qat.preprocessor = fixed
    model.trainable = True  # the Distiller froze the teacher
    return qat, {"config": qat.quantization_config.get_config(),
                 "steps": steps, "examples": steps * 32, "seconds": round(seconds, 1),
                 "data": "SST-2 train, length-bucketed batches of 32",
                 "distillation": ("float model as teacher, T 2, alpha 0.7" if distill
                                  else "none (hard labels)"),
                 "peak_learning_rate": QAT_PEAK_LEARNING_RATE,
                 "train_loss": float(history.history["loss"][-1])}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a fine-tuned .keras classifier")
    parser.add_argument("--qat-steps", type=int, default=None, help="QAT steps (50)")
    parser.add_argument("--quick", action="store_true", help="development run (not a result)")
    parser.add_argument("--name", default="latency",
                        help="result file stem: benchmarks/results/<name>.json (default latency)")
    parser.add_argument("--qat-distill", action="store_true",
                        help="QAT learns from the float model (Distiller, T 2, alpha 0.7)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="timing rounds over every file (order alternating)")
    parser.add_argument("--no-fully-integer", action="store_true",
                        help="skip the fully-integer QAT file")
    parser.add_argument("--no-mediapipe", action="store_true",
                        help="skip MediaPipe's TextClassifier timing")
    args = parser.parse_args(argv)
    qat_steps = args.qat_steps if args.qat_steps is not None else (5 if args.quick else 50)
    if qat_steps < 0:
        raise ValueError(f"`--qat-steps` must be >= 0, got {qat_steps}")
    import numpy as np

    from keras_bertopt.compress import time_in_fresh_process
    from keras_bertopt.export import preprocess_texts, to_tflite

    wall = time.perf_counter()
    limit = 100 if args.quick else None
    texts, truth = sst2_examples("dev", limit=limit)
    truth = np.asarray(truth)
    calibration, _ = sst2_examples("train", limit=CALIBRATION_SAMPLES)
    model = load_model(args.model)
    model.preprocessor.sequence_length = SEQUENCE_LENGTH
    preprocessor = model.preprocessor
    arrays = preprocess_texts(preprocessor, texts)
    lengths = arrays["padding_mask"].sum(-1)
    keras_accuracy = evaluate_accuracy(model, sst2_dataset("dev", 64, limit=limit))
    log(f"float Keras dev accuracy {keras_accuracy:.4f}; token lengths median "
        f"{np.median(lengths):.0f}, p90 {np.percentile(lengths, 90):.0f}")
    sources = {"float32": (model, "none", {}), "float16": (model, "float16", {}),
               "dynamic": (model, "dynamic", {}),
               "ptq_int8": (model, "int8", {"representative_data": calibration,
                                            "calibration_samples": CALIBRATION_SAMPLES})}
    result: dict = {"quick": args.quick, "model": args.model or "common.finetuned_minilm()",
                    "command": "python benchmarks/latency.py " + " ".join(sys.argv[1:]),
                    "versions": _runtime_versions(),
                    "keras_float_accuracy": keras_accuracy,
                    "budget": {"finetune": None if args.model else {
                                   "steps": FINETUNE_STEPS, "batch_size": 32, "examples":
                                   FINETUNE_STEPS * 32, "sequence_length":
                                   TRAIN_SEQUENCE_LENGTH, "data": "SST-2 train"},
                               "qat_steps": qat_steps, "dev_sentences": len(texts),
                               "calibration_samples": CALIBRATION_SAMPLES,
                               "sequence_length": SEQUENCE_LENGTH, "num_threads": 1,
                               "batch_size": 1},
                    "dev_token_lengths": {"median": float(np.median(lengths)),
                                          "p90": float(np.percentile(lengths, 90)),
                                          "max": int(lengths.max())}}
    if qat_steps:
        from keras_bertopt.quantization import QuantizationConfig

        variants = {"qat_int8": (QuantizationConfig(), "int8"),
                    "qat_dynamic": (QuantizationConfig(activations="dynamic"), "dynamic")}
        if not args.no_fully_integer:
            variants["qat_fully_integer"] = (QuantizationConfig(fully_integer=True), "int8")
        result["qat_training"] = {}
        for name, (config, mode) in variants.items():
            log(f"{name}: quantize_aware + {qat_steps} steps")
            qat, result["qat_training"][name] = qat_model(model, qat_steps, args.qat_distill,
                                                          config)
            qat.preprocessor.sequence_length = SEQUENCE_LENGTH
            sources[name] = (qat, mode, {})
    folder = tempfile.mkdtemp(prefix="latency_bench_", dir=_cache_dir())
    files: dict = {}
    for name, (source, quantization, kwargs) in sources.items():
        for layout, length_kwargs in LAYOUTS.items():
            if name in FIXED_ONLY and layout != "fixed128":
                continue
            key = f"{name}/{layout}"
            path = os.path.join(folder, f"{name}_{layout}.tflite")
            start = time.perf_counter()
            try:
                report = to_tflite(source, path, quantization, sequence_length=SEQUENCE_LENGTH,
                                   verify=False, **length_kwargs, **kwargs)
            except Exception as err:  # recorded in the JSON; the other files still run
                result.setdefault("failed_exports", {})[key] = f"{type(err).__name__}: {err}"
                log(f"{key}: export failed: {err}")
                continue
            files[key] = {"path": path, "size_bytes": report.size_bytes,
                          "layout": report.layout, "ops": report.ops,
                          "export_seconds": round(time.perf_counter() - start, 1)}
            log(f"{key}: exported, {report.size_bytes / 1e6:.2f} MB")
    # Paired timing: every runner is loaded at once and each sentence runs through every
    # file back to back (the file order rotating per sentence), so a change of load on the
    # shared machine hits all files alike; per-sentence ratios between files are kept.
    rounds = 1 if args.quick else args.rounds
    times, labels_of = time_in_fresh_process(
        {key: info["path"] for key, info in files.items()}, dict.fromkeys(files, arrays), rounds)
    times = {key: t.tolist() for key, t in times.items()}
    labels_of = {key: v.tolist() for key, v in labels_of.items()}
    per_round = {key: [summary(t) for t in times[key]] for key in files}
    log(f"{rounds} paired rounds timed")
    rows: dict = {}
    for key, info in files.items():
        stats = {k: round(statistics.median(s[k] for s in per_round[key]), 3)
                 for k in ("median_ms", "p90_ms", "mean_ms")}
        labels = labels_of[key]
        rows[key] = {**stats, "round_medians_ms": [s["median_ms"] for s in per_round[key]],
                     "paired_ratios": paired_ratios(times, key),
                     "accuracy": float(np.mean(np.asarray(labels) == truth)),
                     "labels": labels, **{k: v for k, v in info.items() if k != "path"}}
        log(f"{key}: median {rows[key]['median_ms']:.2f} ms, p90 {rows[key]['p90_ms']:.2f}, "
            f"accuracy {rows[key]['accuracy']:.4f}")
        os.remove(info["path"])
    result["budget"]["timing_rounds"] = rounds
    if not args.no_mediapipe:
        result["mediapipe"] = paired_mediapipe(model, folder, texts, truth, rounds,
                                               SEQUENCE_LENGTH, log)
    result["files"] = _compare(rows)
    result["seconds"] = round(time.perf_counter() - wall, 1)
    result["hours"] = round(result["seconds"] / 3600, 3)
    _print_table(result["files"])
    for key, row in result["files"].items():
        name, layout = key.split("/")
        if layout == "default" and f"{name}/buckets" in row.get("paired_ratios", {}):
            print(f"{key}: {row['paired_ratios'][f'{name}/buckets']:.3f}x the time of "
                  f"{name}/buckets in LiteRT (paired median)")
    if "mediapipe" in result:
        print_table(result["mediapipe"])
    return write_result(f"{args.name}_quick" if args.quick else args.name, result)


def _compare(rows: dict) -> dict:
    """Ratios against float32 fixed-128, label agreement with the same mode's fixed-128 file."""
    import numpy as np

    base = rows["float32/fixed128"]
    out = {}
    for key, row in rows.items():
        twin = rows.get(f"{key.split('/')[0]}/fixed128", row)
        row = dict(row)
        labels = np.asarray(row.pop("labels"))
        row["median_vs_float32_fixed128"] = round(row["median_ms"] / base["median_ms"], 4)
        row["p90_vs_float32_fixed128"] = round(row["p90_ms"] / base["p90_ms"], 4)
        row["accuracy_delta_pt"] = round(100 * (row["accuracy"] - base["accuracy"]), 2)
        row["label_agreement_with_fixed128"] = float(np.mean(labels == np.asarray(twin["labels"])))
        out[key] = row
    return out


def _print_table(files: dict) -> None:
    print("| file | median ms | p90 ms | x float32 fixed-128 (median) | x dynamic-range, same "
          "layout (paired) | accuracy | same labels as fixed-128 | MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for key, r in files.items():
        versus = r.get("paired_ratios", {}).get(f"dynamic/{key.split('/')[1]}")
        print(f"| {key} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | "
              f"{r['median_vs_float32_fixed128']:.3f} | "
              f"{'-' if versus is None else format(versus, '.3f')} | {100 * r['accuracy']:.2f} | "
              f"{100 * r['label_agreement_with_fixed128']:.1f}% | {r['size_bytes'] / 1e6:.2f} |")


def _runtime_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("ai-edge-litert", "mediapipe"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _cache_dir() -> str:
    os.makedirs(CACHE_DIR, exist_ok=True)
    return CACHE_DIR


if __name__ == "__main__":
    main()
