"""QAT int8 vs post-training quantization of MiniLM-L6 on SST-2, exported to TFLite.

One fixed CPU budget (the default run), measured in one process on this machine:

* float model: `common.finetuned_minilm()` (200 AdamW steps, batch 32, sequence
  length 64; cached and shared with the other benchmarks);
* QAT: `quantize_aware(float model, QuantizationConfig(quantize_embeddings=True))`
  (every Dense/EinsumDense per-channel, embedding tables per-tensor) fine-tuned
  ``--qat-steps`` (default 100) more steps, batch 32, sequence length 64,
  `create_optimizer(2e-5, warm-up 10%, linear decay)`;
* float baseline given the same extra steps without fake quantization
  (``--float-steps``, default = ``--qat-steps``; 0 skips it), so the QAT row is
  not credited with the extra training;
* TFLite files at sequence length 128, batch 1: float32, dynamic-range,
  post-training full int8 (256 SST-2 train sentences of calibration) and QAT
  int8 (learned ranges, no calibration data);
* SST-2 dev accuracy (872 sentences) of the Keras models and every file; file
  size and gzip -9 size; batch-1 latency at length 128 of float32 / dynamic /
  int8 files, interleaved over ``--rounds`` rounds so machine load hits all
  alike, one interpreter thread each.

Default run: about 20-25 minutes on the shared 2-core machine (plus ~5 minutes
the first time, when the cached fine-tune does not exist yet). ``--quick``:
10 QAT steps, 200 dev sentences, 1 latency round (a smoke run, not a result).

Run it serialised with the other benchmarks, in the background:

    nohup flock /tmp/kbo_bench.lock python benchmarks/quantization.py \
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


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (not a result)")
    parser.add_argument("--qat-steps", type=int, default=None, help="QAT fine-tune steps (100)")
    parser.add_argument("--float-steps", type=int, default=None,
                        help="float baseline extra steps (default: = --qat-steps; 0 skips)")
    parser.add_argument("--finetune-steps", type=int, default=200,
                        help="steps of the cached float fine-tune (common.finetuned_minilm)")
    parser.add_argument("--rounds", type=int, default=None, help="latency rounds (3)")
    parser.add_argument("--runs", type=int, default=20, help="timed calls per round and file")
    parser.add_argument("--quantize-attention-probs", action="store_true",
                        help="QuantizationConfig(quantize_attention_probs=True)")
    parser.add_argument("--name", default=None,
                        help="result file stem (default quantization / quantization_quick)")
    args = parser.parse_args(argv)
    qat_steps = args.qat_steps if args.qat_steps is not None else (10 if args.quick else 100)
    float_steps = args.float_steps if args.float_steps is not None else qat_steps
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    dev_limit = 200 if args.quick else None
    for name, value in (("--qat-steps", qat_steps), ("--rounds", rounds), ("--runs", args.runs)):
        if value < 1:
            raise ValueError(f"`{name}` must be >= 1, got {value}")
    if float_steps < 0:
        raise ValueError(f"`--float-steps` must be >= 0, got {float_steps}")

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
            "float_finetune_steps": args.finetune_steps,
            "qat_steps": qat_steps,
            "float_extra_steps": float_steps,
            "batch_size": BATCH_SIZE,
            "train_sequence_length": TRAIN_SEQUENCE_LENGTH,
            "qat_optimizer": f"create_optimizer(peak {QAT_PEAK_LEARNING_RATE}, 10% warm-up, "
                             "linear decay, weight_decay 0.01)",
            "export_sequence_length": EXPORT_SEQUENCE_LENGTH,
            "export_batch_size": 1,
            "calibration_samples_ptq": CALIBRATION_SAMPLES,
            "dev_examples": len(dev_labels),
            "latency_rounds": rounds,
            "latency_runs_per_round": args.runs,
            "num_threads": NUM_THREADS,
        },
    }

    log("loading / fine-tuning the float model")
    model = finetuned_minilm(args.finetune_steps, TRAIN_SEQUENCE_LENGTH, BATCH_SIZE)
    accuracy: dict = {"float_keras": evaluate_accuracy(model, dev)}
    log(f"float Keras dev accuracy {accuracy['float_keras']:.4f}")

    reports: dict = {}
    files: dict = {}

    def export(name: str, source, quantization: str, **kwargs) -> None:
        path = os.path.join(out_dir, f"{name}.tflite")
        log(f"exporting {name} ({quantization})")
        report = to_tflite(source, path, quantization=quantization,
                           sequence_length=EXPORT_SEQUENCE_LENGTH, sample_data=dev_texts[:64],
                           num_samples=64, latency_runs=0, num_threads=NUM_THREADS, **kwargs)
        reports[name] = report
        files[name] = path
        log(str(report).splitlines()[0])

    export("float32", model, "none")
    export("dynamic", model, "dynamic")
    export("ptq_int8", model, "int8", representative_data=calibration_texts,
           calibration_samples=CALIBRATION_SAMPLES)

    log(f"QAT: quantize_aware + {qat_steps} steps")
    qat_config = QuantizationConfig(
        quantize_embeddings=True, quantize_attention_probs=args.quantize_attention_probs
    )
    qat = quantize_aware(model, qat_config)
    result["qat_config"] = qat_config.get_config()
    result["qat_training"] = fine_tune(qat, qat_steps, seed=1)
    result["qat_quantized_layers"] = len(qat.quantized_paths)
    result["qat_weight_granularity"] = qat.quantization_config.weight_granularity
    accuracy["qat_keras"] = evaluate_accuracy(qat, dev)
    log(f"QAT Keras dev accuracy {accuracy['qat_keras']:.4f}")
    export("qat_int8", qat, "int8")
    del qat

    if float_steps:
        log(f"float baseline: {float_steps} more steps without fake quantization")
        # A fresh copy of the same fine-tuned weights (the QAT copy was made the same way).
        from keras_bertopt.quantization.wrapper import copy_task

        continued = copy_task(model)
        result["float_extra_training"] = fine_tune(continued, float_steps, seed=1)
        accuracy["float_keras_plus_extra_steps"] = evaluate_accuracy(continued, dev)
        log(f"float + {float_steps} steps dev accuracy "
            f"{accuracy['float_keras_plus_extra_steps']:.4f}")
        del continued

    for name, path in files.items():
        runner = TFLiteClassifier(path, preprocessor_128, num_threads=NUM_THREADS)
        evaluation = runner.evaluate(dev_texts, dev_labels)
        accuracy[f"tflite_{name}"] = evaluation["accuracy"]
        log(f"TFLite {name} dev accuracy {evaluation['accuracy']:.4f} "
            f"({evaluation['examples_per_second']:.1f} ex/s)")

    log("latency (interleaved)")
    timed = ("float32", "dynamic", "ptq_int8", "qat_int8")
    medians: dict = {name: [] for name in timed}
    for _ in range(rounds):
        for name in timed:
            timing = measure_latency(files[name], runs=args.runs, warmup=3,
                                     num_threads=NUM_THREADS)
            medians[name].append(timing["median_ms"])
    latency = {name: sorted(values)[len(values) // 2] for name, values in medians.items()}

    sizes = {name: {"bytes": r.size_bytes, "gzip_bytes": r.gzip_bytes} for name, r in
             reports.items()}
    float_size = sizes["float32"]["bytes"]
    result.update(
        {
            "dev_accuracy": accuracy,
            "sizes": sizes,
            "size_ratio_vs_float32": {n: s["bytes"] / float_size for n, s in sizes.items()},
            "gzip_ratio_vs_float32": {
                n: s["gzip_bytes"] / sizes["float32"]["gzip_bytes"] for n, s in sizes.items()
            },
            "latency_ms_batch1_seq128": latency,
            "latency_round_medians_ms": medians,
            "latency_ratio_vs_float32": {n: v / latency["float32"] for n, v in latency.items()},
            "export_reports": {
                n: {
                    "ops": r.ops,
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
    result["targets"] = {
        "qat_int8_vs_float_keras_pt": 100 * (qat_acc - accuracy["float_keras"]),
        "qat_int8_ge_float_minus_0.5pt": qat_acc >= accuracy["float_keras"] - 0.005,
        "qat_int8_above_dynamic": qat_acc > accuracy["tflite_dynamic"],
        "qat_int8_above_ptq_int8": qat_acc > accuracy["tflite_ptq_int8"],
        "int8_size_le_0.27x": result["size_ratio_vs_float32"]["qat_int8"] <= 0.27,
        "int8_latency_le_0.5x": result["latency_ratio_vs_float32"]["qat_int8"] <= 0.5,
    }
    if "float_keras_plus_extra_steps" in accuracy:
        result["targets"]["qat_int8_vs_float_plus_extra_steps_pt"] = 100 * (
            qat_acc - accuracy["float_keras_plus_extra_steps"]
        )
    result["wall_seconds"] = round(time.perf_counter() - wall, 1)
    for name in files:
        ratio = result["size_ratio_vs_float32"][name]
        log(f"{name:9s} acc {accuracy['tflite_' + name]:.4f}  size "
            f"{sizes[name]['bytes'] / 2**20:6.1f} MiB (x{ratio:.3f})"
            f"  gzip x{result['gzip_ratio_vs_float32'][name]:.3f}  latency "
            f"{latency.get(name, float('nan')):.1f} ms")
    log(f"targets: {result['targets']}")
    name = args.name or ("quantization_quick" if args.quick else "quantization")
    path = write_result(name, result)
    for path_ in files.values():
        os.remove(path_)
    os.rmdir(out_dir)
    return path


def _cache_dir() -> str:
    os.makedirs(CACHE_DIR, exist_ok=True)
    return CACHE_DIR


if __name__ == "__main__":
    main()
