"""Knowledge distillation on MiniLM-L6 + SST-2: shallower students, pruning and QAT under KD.

One run, the same training budget for every trained row (``--examples`` SST-2
train sentences, one epoch, batch 32, sequence length 64; default 512 = 16
steps), all rows starting from the same teacher and seeing the same batches:

* teacher: `common.finetuned_minilm()` (200 AdamW steps, cached), or a `.keras`
  classifier given with ``--teacher PATH`` (e.g. a full-epoch fine-tune);
* the teacher's logits on the training examples are computed once
  (`keras_bertopt.distillation.cache_teacher_logits`) and every KD row trains on
  them; the hard-label rows train on the same batches with ``alpha=0`` (no
  teacher term);
* (a) a ``--student-layers`` (3) student from `shrink(teacher)` (evenly spaced
  layers 0, 3, 5 copied) with KD vs with hard labels only, vs the 6-layer
  teacher; float32 TFLite latency at sequence length 128, batch 1, one thread
  (`keras_bertopt.export.measure_latency`, interleaved ``--rounds``);
* (b) 50% / 80% unstructured magnitude pruning of every transformer kernel
  (`MagnitudePruning`, PolynomialSparsity 0 -> target over the first 70% of
  the steps) with KD vs without;
* (c) QAT (`quantize_aware`, embeddings too) with KD vs without, exported to
  int8 TFLite (learned ranges) and evaluated as a file on SST-2 dev;
* step time: a few timed steps of plain `student.fit` vs `Distiller` with the
  teacher run live vs with cached logits (median step, steps after the first).

KD: temperature ``--temperature`` (2), soft-target weight ``--alpha`` (0.7).
Optimizer: `create_optimizer` (AdamW, 10% warm-up, linear decay, weight decay
0.01), peak ``--student-lr`` (1e-4) for the shallow students, ``--lr`` (3e-5)
for pruning and QAT.

Run serialised with the other benchmarks, in the background (about 40 minutes on
the shared 2-core machine at the default budget):

    nohup flock /tmp/kbo_bench.lock python benchmarks/distillation.py \
        > /tmp/kbo_distillation.log 2>&1 &

``--quick``: 64 examples, 128 dev sentences, one latency round (a smoke run,
not a result; written to distillation_quick.json). Writes
benchmarks/results/distillation.json and prints its path.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    evaluate_accuracy,
    finetuned_minilm,
    sst2_dataset,
    sst2_examples,
    write_result,
)

BATCH_SIZE = 32
EXPORT_SEQUENCE_LENGTH = 128
NUM_THREADS = 1
KERNELS = r"transformer_layer_\d+/.*kernel$"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def load_teacher(path: str | None):
    import keras

    if path is None:
        return finetuned_minilm()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--teacher {path!r} is not a file (expected a .keras classifier)")
    teacher = keras.saving.load_model(path)
    teacher.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["sparse_categorical_accuracy"],
    )
    return teacher


class StepTimer:
    """Seconds between consecutive on_train_batch_end calls (end-to-end step times)."""

    def __init__(self):
        import keras

        timer = self

        class _Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                now = time.perf_counter()
                if timer.last is not None:
                    timer.times.append(now - timer.last)
                timer.last = now

        self.times: list[float] = []
        self.last = None
        self.callback = _Callback()


def distill(teacher, student, data, *, alpha, temperature, lr, steps, callbacks=()):
    """Train `student` for one epoch of `data` under a Distiller; returns training info."""
    import keras

    from keras_bertopt.distillation import Distiller
    from keras_bertopt.optimizers import create_optimizer

    distiller = Distiller(teacher, student, temperature=temperature, alpha=alpha)
    distiller.compile(
        optimizer=create_optimizer(lr, steps, warmup_steps=max(1, steps // 10), weight_decay=0.01),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    timer = StepTimer()
    start = time.perf_counter()
    history = distiller.fit(data, epochs=1, callbacks=[*callbacks, timer.callback], verbose=0)
    seconds = time.perf_counter() - start
    return {
        "median_step_ms": round(statistics.median(timer.times) * 1000, 1) if timer.times else None,
        "alpha": alpha,
        "temperature": temperature,
        "peak_learning_rate": lr,
        "steps": steps,
        "train_seconds": round(seconds, 1),
        "train_loss": round(float(history.history["loss"][-1]), 4),
        "train_accuracy": round(float(history.history["accuracy"][-1]), 4),
    }


def step_times(teacher, train, args) -> dict:
    """Median step time of the student: plain `fit` vs `Distiller` running the teacher live.

    (With cached logits the KD rows' own step times apply: see `training`.)
    """
    import keras

    from keras_bertopt.distillation import Distiller, shrink

    n = args.timing_steps + 1
    out = {}
    for name in ("plain_fit", "distiller_live_teacher"):
        student = shrink(teacher, num_layers=args.student_layers)
        timer = StepTimer()
        if name == "plain_fit":
            model, data = student, train
            model.compile(
                optimizer=keras.optimizers.AdamW(1e-5),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            )
        else:
            model = Distiller(teacher, student, temperature=args.temperature, alpha=args.alpha)
            model.compile(optimizer=keras.optimizers.AdamW(1e-5))
            data = train
        model.fit(data.take(n), epochs=1, callbacks=[timer.callback], verbose=0)
        out[name] = round(statistics.median(timer.times) * 1000, 1)
        log(f"step time {name}: {out[name]} ms (median of {len(timer.times)})")
        del model, student
        gc.collect()
    out["ratio_live_vs_plain"] = round(out["distiller_live_teacher"] / out["plain_fit"], 3)
    return out


def interleaved_latency(files: dict, rounds: int, runs: int) -> dict:
    from keras_bertopt.export import measure_latency

    medians: dict = {name: [] for name in files}
    for _ in range(rounds):
        for name, path in files.items():
            medians[name].append(
                measure_latency(path, runs=runs, warmup=3, num_threads=NUM_THREADS)["median_ms"]
            )
    return {name: sorted(v)[len(v) // 2] for name, v in medians.items()}


def checkpoint(args, result: dict, accuracy: dict, sections: str) -> None:
    """Write what is measured so far (a long run cut short still leaves its rows)."""
    partial = {
        **result,
        "accuracy": {k: round(v, 4) for k, v in accuracy.items()},
        "partial": f"sections ({sections}) only",
    }
    write_result("distillation_quick" if args.quick else "distillation", partial)


def run(args) -> dict:
    import keras

    import keras_bertopt as kb
    from keras_bertopt.distillation import cache_teacher_logits, shrink
    from keras_bertopt.export import TFLiteClassifier, to_tflite
    from keras_bertopt.quantization import QuantizationConfig, quantize_aware

    keras.utils.set_random_seed(0)
    teacher = load_teacher(args.teacher)
    dev = sst2_dataset("dev", 64, limit=args.dev_limit)
    dev_texts, dev_labels = sst2_examples("dev", limit=args.dev_limit)
    train = sst2_dataset("train", BATCH_SIZE, limit=args.examples)
    steps = -(-args.examples // BATCH_SIZE)
    accuracy: dict = {"teacher": evaluate_accuracy(teacher, dev)}
    log(f"teacher dev accuracy {accuracy['teacher']:.4f}")

    start = time.perf_counter()
    cached = cache_teacher_logits(teacher, train, shuffle=True, seed=0)
    cache_seconds = round(time.perf_counter() - start, 1)
    log(f"teacher logits cached for {args.examples} examples in {cache_seconds} s")
    result: dict = {"teacher_logits_cache_seconds": cache_seconds, "training": {}}
    kd = {"temperature": args.temperature}

    # (a) shallow students ----------------------------------------------------
    out_dir = tempfile.mkdtemp(prefix="kbo_distill_")
    files = {}
    for name, alpha in (("student_kd", args.alpha), ("student_hard", 0.0)):
        student = shrink(teacher, num_layers=args.student_layers)
        result["training"][name] = distill(
            teacher, student, cached, alpha=alpha, lr=args.student_lr, steps=steps, **kd
        )
        accuracy[name] = evaluate_accuracy(student, dev)
        log(f"{name}: dev accuracy {accuracy[name]:.4f} ({result['training'][name]})")
        if name == "student_kd":
            files["student"] = os.path.join(out_dir, "student.tflite")
            to_tflite(
                student,
                files["student"],
                sequence_length=EXPORT_SEQUENCE_LENGTH,
                sample_data=dev_texts[:16],
                num_samples=16,
                latency_runs=0,
            )
            result["student_layers"] = [
                int(i)
                for i in kb.distillation.evenly_spaced(
                    teacher.backbone.num_layers, args.student_layers
                )
            ]
        del student
        gc.collect()
    files["teacher"] = os.path.join(out_dir, "teacher.tflite")
    to_tflite(
        teacher,
        files["teacher"],
        sequence_length=EXPORT_SEQUENCE_LENGTH,
        sample_data=dev_texts[:16],
        num_samples=16,
        latency_runs=0,
    )
    latency = interleaved_latency(files, args.rounds, args.runs)
    latency["student_vs_teacher"] = round(latency["student"] / latency["teacher"], 3)
    result["latency_ms_float32_len128"] = latency
    checkpoint(args, result, accuracy, "a")
    log(f"latency {latency}")

    # (b) magnitude pruning with / without KD ---------------------------------
    sparsity_reached = {}
    for sparsity in args.sparsities:
        for name, alpha in (
            (f"pruned{int(sparsity * 100)}_kd", args.alpha),
            (f"pruned{int(sparsity * 100)}_hard", 0.0),
        ):
            student = shrink(
                teacher, num_layers=teacher.backbone.num_layers
            )  # a trainable full copy
            end = max(1, int(round(0.7 * steps)))
            pruning = kb.pruning.MagnitudePruning(
                kb.pruning.PolynomialSparsity(
                    0.0, sparsity, begin_step=0, end_step=end, frequency=max(1, steps // 10)
                ),
                include=KERNELS,
            )
            result["training"][name] = distill(
                teacher,
                student,
                cached,
                alpha=alpha,
                lr=args.lr,
                steps=steps,
                callbacks=[pruning],
                **kd,
            )
            sparsity_reached[name] = round(
                kb.pruning.sparsity_report(student, include=KERNELS).sparsity, 4
            )
            accuracy[name] = evaluate_accuracy(student, dev)
            log(f"{name}: dev accuracy {accuracy[name]:.4f}, sparsity {sparsity_reached[name]}")
            del student, pruning
            gc.collect()
    result["sparsity_reached"] = sparsity_reached
    checkpoint(args, result, accuracy, "a, b")

    # (c) QAT int8 with / without KD ------------------------------------------
    for name, alpha in (("qat_kd", args.alpha), ("qat_hard", 0.0)):
        qat = quantize_aware(
            shrink(teacher, num_layers=teacher.backbone.num_layers),
            QuantizationConfig(quantize_embeddings=True),
        )
        result["training"][name] = distill(
            teacher, qat, cached, alpha=alpha, lr=args.lr, steps=steps, **kd
        )
        accuracy[f"{name}_keras"] = evaluate_accuracy(qat, dev)
        path = os.path.join(out_dir, f"{name}.tflite")
        to_tflite(
            qat,
            path,
            quantization="int8",
            sample_data=dev_texts[:16],
            num_samples=16,
            latency_runs=0,
        )
        runner = TFLiteClassifier(path, teacher.preprocessor, num_threads=NUM_THREADS)
        accuracy[f"{name}_tflite_int8"] = runner.evaluate(dev_texts, dev_labels)["accuracy"]
        log(
            f"{name}: Keras {accuracy[f'{name}_keras']:.4f}, "
            f"TFLite int8 {accuracy[f'{name}_tflite_int8']:.4f}"
        )
        del qat, runner
        gc.collect()

    checkpoint(args, result, accuracy, "a, b, c")
    timing = step_times(teacher, train, args)
    kd_row = result["training"]["student_kd"]["median_step_ms"]
    hard_row = result["training"]["student_hard"]["median_step_ms"]
    if kd_row and hard_row:
        timing["student_kd_cached_row"] = kd_row
        timing["student_hard_row"] = hard_row
        timing["ratio_cached_vs_plain"] = round(kd_row / timing["plain_fit"], 3)
    result["step_time_ms"] = timing
    result["accuracy"] = {k: round(v, 4) for k, v in accuracy.items()}
    return result


def summary(result: dict) -> dict:
    a = result["accuracy"]
    t = a["teacher"]
    out = {
        "student_kd_minus_teacher_pt": round(100 * (a["student_kd"] - t), 2),
        "student_hard_minus_teacher_pt": round(100 * (a["student_hard"] - t), 2),
        "student_latency_vs_teacher": result["latency_ms_float32_len128"]["student_vs_teacher"],
        "qat_kd_int8_minus_float_pt": round(100 * (a["qat_kd_tflite_int8"] - t), 2),
        "qat_hard_int8_minus_float_pt": round(100 * (a["qat_hard_tflite_int8"] - t), 2),
    }
    for key in a:
        if key.startswith("pruned"):
            out[f"{key}_minus_dense_pt"] = round(100 * (a[key] - t), 2)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--teacher",
        help="a .keras classifier to distil from (default: common.finetuned_minilm(), 200 steps)",
    )
    parser.add_argument(
        "--examples",
        type=int,
        default=512,
        help="SST-2 train examples per trained row (one epoch)",
    )
    parser.add_argument("--student-layers", type=int, default=3)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--alpha", type=float, default=0.7)
    parser.add_argument("--student-lr", type=float, default=1e-4)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.8])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--timing-steps", type=int, default=3)
    parser.add_argument("--dev-limit", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.examples, args.dev_limit, args.rounds, args.runs, args.timing_steps = 64, 128, 1, 3, 2
    log(f"distillation benchmark: {vars(args)}")
    result = run(args)
    result["summary"] = summary(result)
    result["settings"] = {
        **vars(args),
        "batch_size": BATCH_SIZE,
        "train_sequence_length": 64,
        "export_sequence_length": EXPORT_SEQUENCE_LENGTH,
        "num_threads": NUM_THREADS,
    }
    result["targets"] = {
        "student_kd": ">= teacher - 1.5 pt at <= 0.55x latency",
        "pruned50_kd / pruned80_kd": ">= dense - 0.5 / - 1.5 pt",
        "qat_kd_tflite_int8": ">= float - 0.3 pt",
    }
    log(f"accuracy {result['accuracy']}")
    log(f"summary {result['summary']}")
    write_result("distillation_quick" if args.quick else "distillation", result)


if __name__ == "__main__":
    main()
