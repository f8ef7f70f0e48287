"""QAT int8 vs post-training quantization of MiniLM-L6 on SST-2, exported to TFLite.

One fixed CPU budget (the default run), measured in one process on this machine:

* float model: `common.finetuned_minilm()` (200 AdamW steps, batch 32, sequence
  length 64; cached and shared with the other benchmarks), or ``--model PATH``
  (a saved fine-tuned `.keras` classifier);
* QAT: `quantize_aware(float model, QuantizationConfig(quantize_embeddings=True))`
  (every Dense/EinsumDense per-channel, embedding tables per-tensor; the default
  graph: int8 matmuls, float LayerNorm / softmax / attention matmuls) fine-tuned
  ``--qat-steps`` (default 100) more steps, batch 32, sequence length 64,
  `create_optimizer(2e-5, warm-up 10%, linear decay)`;
* fully-integer QAT: the same with `QuantizationConfig(fully_integer=True)`
  (``--integer-steps``, default = ``--qat-steps``; 0 skips it);
* float baseline given the same extra steps without fake quantization
  (``--float-steps``, default = ``--qat-steps``; 0 skips it), so the QAT row is
  not credited with the extra training;
* TFLite files at sequence length 128, batch 1: float32, dynamic-range,
  post-training full int8 (256 SST-2 train sentences of calibration), QAT int8
  (learned ranges, no calibration data), the same QAT weights converted the old
  way (``qat_int8_old_graph``: the converter carries ranges into the attention
  matmul) and the fully-integer QAT file;
* SST-2 dev accuracy (872 sentences) of the Keras models and every file; file
  size and gzip -9 size; QUANTIZE / DEQUANTIZE counts; batch-1 latency of every
  file at each of ``--lengths`` (default 128 and 32, every position real; the
  shorter files are exported for timing only), interleaved over ``--rounds``
  rounds so machine load hits all alike, one interpreter thread each;
* with ``--op-profile``: per-op-type latency (benchmarks/op_profile.py) of the
  dynamic-range and QAT files at each length.

Default run: about 40 minutes on the shared 2-core machine. ``--quick``: 10 QAT
steps, 200 dev sentences, 1 latency round (a smoke run, not a result).

Run it serialised with the other benchmarks, in the background:

    nohup flock /tmp/kbo_bench.lock python benchmarks/quantization.py --op-profile \
        > /tmp/kbo_quantization.log 2>&1 &

Writes benchmarks/results/quantization.json (``quantization_quick.json`` with
``--quick``) and prints its path.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    CACHE_DIR,
    evaluate_accuracy,
    finetuned_minilm,
    minilm_preprocessor,
    sst2_dataset,
    sst2_examples,
    write_result,
)

TRAIN_SEQUENCE_LENGTH = 64
EXPORT_SEQUENCE_LENGTH = 128
BATCH_SIZE = 32
QAT_PEAK_LEARNING_RATE = 2e-5
CALIBRATION_SAMPLES = 256
NUM_THREADS = 1


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def fine_tune(model, steps: int, seed: int) -> dict:
    """`steps` more AdamW steps on SST-2 train (same recipe for QAT and float)."""
    import keras

    from keras_bertopt.optimizers import create_optimizer

    optimizer = create_optimizer(
        QAT_PEAK_LEARNING_RATE, steps, warmup_steps=max(1, steps // 10), weight_decay=0.01
    )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["sparse_categorical_accuracy"],
    )
    train = sst2_dataset("train", BATCH_SIZE, shuffle=True, seed=seed).repeat()
    start = time.perf_counter()
    history = model.fit(train, epochs=1, steps_per_epoch=steps, verbose=2)
    seconds = time.perf_counter() - start
    return {
        "steps": steps,
        "seconds": round(seconds, 1),
        "examples_per_second": round(steps * BATCH_SIZE / seconds, 2),
        "train_loss": float(history.history["loss"][-1]),
    }


#: Converter settings of the previous QAT conversion (ranges carried into attention matmuls).
OLD_GRAPH_CONVERTER_OPTIONS = {"_experimental_qdq_conversion_mode": None,
                               "_experimental_strict_qdq": False}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (not a result)")
    parser.add_argument("--model", default=None,
                        help="a fine-tuned .keras classifier to start from (default: the "
                             "cached common.finetuned_minilm())")
    parser.add_argument("--qat-steps", type=int, default=None, help="QAT fine-tune steps (100)")
    parser.add_argument("--integer-steps", type=int, default=None,
                        help="fully-integer QAT steps (default: = --qat-steps; 0 skips)")
    parser.add_argument("--float-steps", type=int, default=None,
                        help="float baseline extra steps (default: = --qat-steps; 0 skips)")
    parser.add_argument("--finetune-steps", type=int, default=200,
                        help="steps of the cached float fine-tune (common.finetuned_minilm)")
    parser.add_argument("--lengths", default="128,32", help="latency sequence lengths")
    parser.add_argument("--rounds", type=int, default=None, help="latency rounds (3)")
    parser.add_argument("--runs", type=int, default=20, help="timed calls per round and file")
    parser.add_argument("--no-ptq", action="store_true",
                        help="skip the post-training int8 file (its calibrated export is the "
                             "slowest step)")
    parser.add_argument("--op-profile", action="store_true",
                        help="per-op-type latency of the dynamic and QAT files")
    parser.add_argument("--timing-lock", default=None,
                        help="take this flock file for the latency part only (then run the "
                             "script itself without flock: training and exports do not wait)")
    parser.add_argument("--lock-timeout", type=float, default=3600.0,
                        help="seconds to wait for --timing-lock before timing anyway "
                             "(recorded in the JSON)")
    parser.add_argument("--name", default=None,
                        help="result file stem (default quantization / quantization_quick)")
    args = parser.parse_args(argv)
    qat_steps = args.qat_steps if args.qat_steps is not None else (10 if args.quick else 100)
    args.qat_steps = qat_steps
    args.integer_steps = qat_steps if args.integer_steps is None else args.integer_steps
    args.float_steps = qat_steps if args.float_steps is None else args.float_steps
    args.rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    try:
        args.lengths = [int(v) for v in args.lengths.split(",")]
    except ValueError:
        raise ValueError(
            f"`--lengths` must be comma-separated integers, got {args.lengths!r}"
        ) from None
    for name, value in (("--qat-steps", qat_steps), ("--rounds", args.rounds),
                        ("--runs", args.runs), ("--lengths", min(args.lengths))):
        if value < 1:
            raise ValueError(f"`{name}` must be >= 1, got {value}")
    for name, value in (("--float-steps", args.float_steps),
                        ("--integer-steps", args.integer_steps)):
        if value < 0:
            raise ValueError(f"`{name}` must be >= 0, got {value}")
    if args.model is not None and not os.path.exists(args.model):
        raise ValueError(f"`--model` {args.model!r} does not exist")
    return args


def _load_model(args: argparse.Namespace):
    if args.model is None:
        return finetuned_minilm(args.finetune_steps, TRAIN_SEQUENCE_LENGTH, BATCH_SIZE)
    import keras

    model = keras.saving.load_model(args.model)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["sparse_categorical_accuracy"])
    return model


def _qdq_counts(report) -> dict:
    signatures = report.op_signatures
    return {
        "QUANTIZE": sum(n for k, n in signatures.items() if k.startswith("QUANTIZE(")),
        "DEQUANTIZE": sum(n for k, n in signatures.items() if k.startswith("DEQUANTIZE(")),
        "float_signatures": sorted(k for k in signatures if "FLOAT32" in k),
    }


def main(argv: list[str] | None = None) -> str:
    args = _parse(argv)
    dev_limit = 200 if args.quick else None

    from keras_bertopt.export import TFLiteClassifier, measure_latency, to_tflite
    from keras_bertopt.quantization import QuantizationConfig, quantize_aware

    wall = time.perf_counter()
    out_dir = tempfile.mkdtemp(prefix="quantization_bench_", dir=_cache_dir())
    dev_texts, dev_labels = sst2_examples("dev", limit=dev_limit)
    dev = sst2_dataset("dev", 64, limit=dev_limit)
    calibration_texts, _ = sst2_examples("train", limit=CALIBRATION_SAMPLES)
    preprocessor_128 = minilm_preprocessor(EXPORT_SEQUENCE_LENGTH)
    result: dict = {
        "quick": args.quick,
        "budget": {
            "model": args.model or f"common.finetuned_minilm({args.finetune_steps} steps)",
            "qat_steps": args.qat_steps,
            "fully_integer_qat_steps": args.integer_steps,
            "float_extra_steps": args.float_steps,
            "batch_size": BATCH_SIZE,
            "train_sequence_length": TRAIN_SEQUENCE_LENGTH,
            "qat_optimizer": f"create_optimizer(peak {QAT_PEAK_LEARNING_RATE}, 10% warm-up, "
                             "linear decay, weight_decay 0.01)",
            "export_sequence_length": EXPORT_SEQUENCE_LENGTH,
            "latency_sequence_lengths": args.lengths,
            "export_batch_size": 1,
            "calibration_samples_ptq": CALIBRATION_SAMPLES,
            "dev_examples": len(dev_labels),
            "latency_rounds": args.rounds,
            "latency_runs_per_round": args.runs,
            "num_threads": NUM_THREADS,
        },
    }

    log("loading / fine-tuning the float model")
    model = _load_model(args)
    accuracy: dict = {"float_keras": evaluate_accuracy(model, dev)}
    log(f"float Keras dev accuracy {accuracy['float_keras']:.4f}")

    reports: dict = {}
    files: dict = {}  # name -> {length: path}

    def export(name: str, source, quantization: str, **kwargs) -> None:
        files[name] = {}
        for length in sorted(set(args.lengths) | {EXPORT_SEQUENCE_LENGTH}, reverse=True):
            path = os.path.join(out_dir, f"{name}_{length}.tflite")
            main_file = length == EXPORT_SEQUENCE_LENGTH
            log(f"exporting {name} ({quantization}) at length {length}")
            report = to_tflite(source, path, quantization=quantization, sequence_length=length,
                               sample_data=dev_texts[:64], num_samples=64, latency_runs=0,
                               num_threads=NUM_THREADS, verify=main_file, **kwargs)
            files[name][length] = path
            if main_file:
                reports[name] = report
                log(str(report).splitlines()[0])

    export("float32", model, "none")
    export("dynamic", model, "dynamic")
    if not args.no_ptq:
        export("ptq_int8", model, "int8", representative_data=calibration_texts,
               calibration_samples=CALIBRATION_SAMPLES)

    log(f"QAT: quantize_aware + {args.qat_steps} steps")
    qat_config = QuantizationConfig(quantize_embeddings=True)
    qat = quantize_aware(model, qat_config)
    result["qat_config"] = qat_config.get_config()
    result["qat_training"] = fine_tune(qat, args.qat_steps, seed=1)
    result["qat_quantized_layers"] = len(qat.quantized_paths)
    accuracy["qat_keras"] = evaluate_accuracy(qat, dev)
    log(f"QAT Keras dev accuracy {accuracy['qat_keras']:.4f}")
    export("qat_int8", qat, "int8")
    export("qat_int8_old_graph", qat, "int8", converter_options=OLD_GRAPH_CONVERTER_OPTIONS)
    del qat

    if args.integer_steps:
        log(f"fully-integer QAT: quantize_aware(fully_integer=True) + {args.integer_steps} steps")
        integer_config = QuantizationConfig(fully_integer=True)
        integer = quantize_aware(model, integer_config)
        result["fully_integer_config"] = integer_config.get_config()
        result["fully_integer_training"] = fine_tune(integer, args.integer_steps, seed=1)
        accuracy["qat_fully_integer_keras"] = evaluate_accuracy(integer, dev)
        log(f"fully-integer QAT Keras dev accuracy {accuracy['qat_fully_integer_keras']:.4f}")
        export("qat_fully_integer", integer, "int8")
        del integer

    if args.float_steps:
        log(f"float baseline: {args.float_steps} more steps without fake quantization")
        from keras_bertopt.quantization.wrapper import copy_task

        continued = copy_task(model)
        result["float_extra_training"] = fine_tune(continued, args.float_steps, seed=1)
        accuracy["float_keras_plus_extra_steps"] = evaluate_accuracy(continued, dev)
        log(f"float + {args.float_steps} steps dev accuracy "
            f"{accuracy['float_keras_plus_extra_steps']:.4f}")
        del continued

    for name, paths in files.items():
        runner = TFLiteClassifier(paths[EXPORT_SEQUENCE_LENGTH], preprocessor_128,
                                  num_threads=NUM_THREADS)
        evaluation = runner.evaluate(dev_texts, dev_labels)
        accuracy[f"tflite_{name}"] = evaluation["accuracy"]
        log(f"TFLite {name} dev accuracy {evaluation['accuracy']:.4f}")

    lock = _take_lock(args.timing_lock, args.lock_timeout)
    result["latency_under_lock"] = lock is not None or args.timing_lock is None
    log("latency (interleaved)")
    latency_by_length: dict = {}
    medians_by_length: dict = {}
    for length in args.lengths:
        medians: dict = {name: [] for name in files}
        for _ in range(args.rounds):
            for name in files:
                timing = measure_latency(files[name][length], runs=args.runs, warmup=3,
                                         num_threads=NUM_THREADS)
                medians[name].append(timing["median_ms"])
        latency_by_length[str(length)] = {n: sorted(v)[len(v) // 2] for n, v in medians.items()}
        medians_by_length[str(length)] = medians
        log(f"length {length}: " + ", ".join(
            f"{n} {v:.2f} ms" for n, v in latency_by_length[str(length)].items()))
    if args.op_profile:
        result["op_profile"] = _op_profiles(files, args.lengths,
                                            ("dynamic", "qat_int8", "qat_int8_old_graph",
                                             "qat_fully_integer"))
    if lock is not None:
        lock.close()
    _summarise(result, accuracy, reports, latency_by_length, medians_by_length)
    result["wall_seconds"] = round(time.perf_counter() - wall, 1)
    name = args.name or ("quantization_quick" if args.quick else "quantization")
    path = write_result(name, result)
    for paths in files.values():
        for path_ in paths.values():
            os.remove(path_)
    os.rmdir(out_dir)
    return path


def _take_lock(path: str | None, timeout: float):
    """An open file holding an exclusive flock on `path`, or None (no path, or timed out)."""
    if path is None:
        return None
    import fcntl

    handle = open(path, "a")  # noqa: SIM115 - held until the timing is done
    deadline = time.monotonic() + timeout
    log(f"waiting for {path} (at most {timeout:.0f} s)")
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            log(f"holding {path}")
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                log(f"{path} still busy after {timeout:.0f} s: timing without it")
                handle.close()
                return None
            time.sleep(5)


def _op_profiles(files: dict, lengths: list[int], names: tuple) -> dict:
    from op_profile import example_inputs, format_table, profile_ops

    out: dict = {}
    for length in lengths:
        out[str(length)] = {}
        for name in names:
            if name not in files:
                continue
            with open(files[name][length], "rb") as f:
                content = f.read()
            profile = profile_ops(content, example_inputs(length), NUM_THREADS, copies=3,
                                  runs=10)
            print(format_table(profile, f"{name} at length {length}"), flush=True)
            out[str(length)][name] = {k: profile[k] for k in ("by_signature", "sum_ms",
                                                              "model_ms")}
    return out


def _summarise(result: dict, accuracy: dict, reports: dict, latency_by_length: dict,
               medians_by_length: dict) -> None:
    sizes = {name: {"bytes": r.size_bytes, "gzip_bytes": r.gzip_bytes} for name, r in
             reports.items()}
    float_size = sizes["float32"]["bytes"]
    main_length = str(EXPORT_SEQUENCE_LENGTH)
    latency = latency_by_length.get(main_length, {})
    result.update(
        {
            "dev_accuracy": accuracy,
            "sizes": sizes,
            "size_ratio_vs_float32": {n: s["bytes"] / float_size for n, s in sizes.items()},
            "gzip_ratio_vs_float32": {
                n: s["gzip_bytes"] / sizes["float32"]["gzip_bytes"] for n, s in sizes.items()
            },
            "latency_ms_batch1": latency_by_length,
            "latency_ms_batch1_seq128": latency,
            "latency_round_medians_ms": medians_by_length,
            "latency_ratio_vs_float32": {n: v / latency["float32"] for n, v in latency.items()}
            if latency else {},
            "latency_ratio_vs_dynamic": {
                length: {n: v / values["dynamic"] for n, v in values.items()}
                for length, values in latency_by_length.items()
            },
            "export_reports": {
                n: {
                    "ops": r.ops,
                    "op_signatures": r.op_signatures,
                    "quantize_dequantize": _qdq_counts(r),
                    "int8_ops": r.int8_ops,
                    "hybrid_ops": r.hybrid_ops,
                    "float_ops": r.float_ops,
                    "fake_quant_ops": r.fake_quant_ops,
                    "label_agreement_vs_keras_64_dev": r.label_agreement,
                    "max_abs_logit_diff_vs_keras": r.max_abs_logit_diff,
                    "export_seconds": round(r.seconds, 1),
                }
                for n, r in reports.items()
            },
        }
    )
    qat_acc = accuracy["tflite_qat_int8"]
    ratio = result["latency_ratio_vs_dynamic"]
    targets = {
        "qat_int8_vs_float_keras_pt": 100 * (qat_acc - accuracy["float_keras"]),
        "qat_int8_ge_float_minus_0.3pt": qat_acc >= accuracy["float_keras"] - 0.003,
        "qat_int8_ge_dynamic": qat_acc >= accuracy["tflite_dynamic"],
        "int8_size_le_0.27x": result["size_ratio_vs_float32"]["qat_int8"] <= 0.27,
    }
    if "tflite_ptq_int8" in accuracy:
        targets["qat_int8_ge_ptq_int8"] = qat_acc >= accuracy["tflite_ptq_int8"]
    for length, values in ratio.items():
        targets[f"qat_int8_latency_le_dynamic_at_{length}"] = values["qat_int8"] <= 1.0
    if "float_keras_plus_extra_steps" in accuracy:
        targets["qat_int8_vs_float_plus_extra_steps_pt"] = 100 * (
            qat_acc - accuracy["float_keras_plus_extra_steps"]
        )
    result["targets"] = targets
    for name in reports:
        ratio_size = result["size_ratio_vs_float32"][name]
        timing = "  ".join(f"{length}: {values.get(name, float('nan')):.2f} ms"
                           for length, values in latency_by_length.items())
        log(f"{name:20s} acc {accuracy['tflite_' + name]:.4f}  size x{ratio_size:.3f}  "
            f"Q/DQ {_qdq_counts(reports[name])['QUANTIZE']}/"
            f"{_qdq_counts(reports[name])['DEQUANTIZE']}  {timing}")
    log(f"targets: {targets}")


def _cache_dir() -> str:
    os.makedirs(CACHE_DIR, exist_ok=True)
    return CACHE_DIR


if __name__ == "__main__":
    main()
