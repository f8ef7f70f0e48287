"""Structured pruning of MiniLM-L6 on SST-2: accuracy and TFLite latency per setting, one run.

Rows (all from the same fine-tuned dense model, scored once with first-order
Taylor importance on 8 batches of 32 SST-2 train sentences):
dense; 25% / 50% of heads; 25% / 50% of feed-forward neurons; 2 / 3 layers
removed; combined (2 layers + 25% heads + 50% neurons). Every row, the dense
one included, gets the same recovery budget: ``--recovery-examples`` SST-2
train sentences (default 1024, batch 32, sequence length ``--train-length``
32, `create_optimizer(1e-4, 10% warm-up, linear decay)`), learning from the
dense model's logits (`keras_bertopt.distillation.Distiller`, temperature 2,
alpha 0.7, logits cached once with `cache_teacher_logits`); ``--no-distill``
recovers on hard labels only.

Each row is exported with `keras_bertopt.export.to_tflite` at the fine-tune's
sequence length (64), batch 1, as float32 and dynamic-range int8; SST-2 dev
accuracy (872 sentences) of both files with `TFLiteClassifier`; batch-1,
one-thread latency with `measure_latency` (full-length input), each row's two
files interleaved over ``--rounds`` rounds with the dense float32 file, so the
ratio compares files under the same machine load (median of round medians).

A second section measures LiteRT's sparse FULLY_CONNECTED kernels: the dense
model block-pruned to ``--sparsity`` (90%) with `MagnitudePruning(pattern="block")`
(one-shot, no recovery: a latency measurement only), written with and without
`tf.lite.Optimize.EXPERIMENTAL_SPARSITY`, run with the default interpreter
(XNNPack) and with ``BUILTIN_WITHOUT_DEFAULT_DELEGATES`` (no XNNPack). Block
shapes are in our ``(inputs, outputs)`` kernel convention: ``(4, 1)`` is
TFLite's float 1x4 block of its ``[out, in]`` weight, ``(16, 1)`` its int8 1x16.

Run (about 40 minutes on the shared 2-core machine):

    nohup flock /tmp/kbo_bench.lock python benchmarks/structured_pruning.py \
        > /tmp/kbo_structured.log 2>&1 &

``--model PATH`` uses another fine-tuned `.keras` classifier; ``--quick`` is a
smoke run (64 recovery examples, 100 dev sentences, 3 rows). Writes
benchmarks/results/structured_pruning.json (``_quick`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    finetuned_minilm,
    sst2_dataset,
    sst2_examples,
    write_result,
)

# The dense row first (every row's latency is measured beside it), then by expected speed-up.
ROWS: list[tuple[str, dict[str, Any]]] = [
    ("dense", {}),
    ("combined", {"layers": 2, "heads": 0.25, "intermediate": 0.5}),
    ("layers_3", {"layers": 3}),
    ("layers_2", {"layers": 2}),
    ("heads_50", {"heads": 0.5}),
    ("ffn_50", {"intermediate": 0.5}),
    ("heads_25", {"heads": 0.25}),
    ("ffn_25", {"intermediate": 0.25}),
]


KD_TEMPERATURE = 2.0
KD_ALPHA = 0.7


def _load(path: str | None) -> Any:
    import keras

    if path is None:
        return finetuned_minilm()
    model = keras.saving.load_model(path)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _recover(model: Any, examples: int, length: int, batch_size: int, seed: int) -> dict:
    """Train `model` (in place) on `examples` SST-2 train sentences at `length` tokens."""
    import keras

    from keras_bertopt.optimizers import create_optimizer

    steps = max(1, examples // batch_size)
    if examples == 0:
        return {"steps": 0, "seconds": 0.0}
    keras.utils.set_random_seed(seed)
    train = sst2_dataset("train", batch_size, sequence_length=length, shuffle=True, seed=seed)
    # The task's own fit would run its preprocessor again: train the same layers
    # through a plain functional view on token dicts.
    trainer = keras.Model(model.input, model.output)
    trainer.compile(
        optimizer=create_optimizer(1e-4, steps, warmup_steps=max(1, steps // 10),
                                   weight_decay=0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    start = time.perf_counter()
    history = trainer.fit(train.repeat(), epochs=1, steps_per_epoch=steps, verbose=0)
    seconds = time.perf_counter() - start
    return {"steps": steps, "examples": steps * batch_size, "seconds": round(seconds, 1),
            "examples_per_second": round(steps * batch_size / seconds, 2),
            "final_loss": float(history.history["loss"][-1])}


def _recover_kd(model: Any, teacher: Any, cached: Any, steps: int, length: int,
                seed: int) -> dict:
    """Train `model` (in place) against the dense model's cached logits (KD, T=2, alpha 0.7)."""
    import keras

    from keras_bertopt.distillation import Distiller
    from keras_bertopt.optimizers import create_optimizer

    if steps == 0:
        return {"steps": 0, "seconds": 0.0}
    keras.utils.set_random_seed(seed)
    export_length = model.preprocessor.sequence_length
    model.preprocessor.sequence_length = length
    distiller = Distiller(teacher, model, temperature=KD_TEMPERATURE, alpha=KD_ALPHA)
    distiller.compile(optimizer=create_optimizer(1e-4, steps, warmup_steps=max(1, steps // 10),
                                                 weight_decay=0.01))
    start = time.perf_counter()
    history = distiller.fit(cached, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    model.preprocessor.sequence_length = export_length
    teacher.trainable = True  # the Distiller froze it; the next rows copy it
    return {"steps": steps, "seconds": round(seconds, 1), "distillation":
            f"cached dense-model logits, temperature {KD_TEMPERATURE}, alpha {KD_ALPHA}",
            "final_loss": float(history.history["loss"][-1])}


def _export_and_score(model: Any, folder: str, name: str, dev: tuple, sample: list) -> dict:
    from keras_bertopt.export import TFLiteClassifier, inspect_tflite, to_tflite

    out = {}
    for mode in ("none", "dynamic"):
        path = os.path.join(folder, f"{name}_{mode}.tflite")
        report = to_tflite(model, path, quantization=mode, sample_data=sample,
                           num_samples=len(sample), latency_runs=0, num_threads=1)
        accuracy = TFLiteClassifier(path, model.preprocessor, num_threads=1).evaluate(dev)
        info = inspect_tflite(path)
        out[mode] = {"path": path, "accuracy": accuracy["accuracy"],
                     "size_bytes": report.size_bytes,
                     "label_agreement_vs_keras": report.label_agreement,
                     "matmul_weight_params": info["weight_params"]}
        print(f"  {name} {mode}: dev {accuracy['accuracy']:.4f}", flush=True)
    return out


def _interleaved_latency(paths: dict[str, str], rounds: int, runs: int) -> dict[str, dict]:
    from keras_bertopt.export import measure_latency

    medians: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(rounds):
        for key, path in paths.items():
            medians[key].append(measure_latency(path, runs=runs, num_threads=1)["median_ms"])
    return {k: {"median_ms": statistics.median(v), "round_medians_ms": v}
            for k, v in medians.items()}


def _sparse_tensors(path: str) -> int:
    """Tensors the converter wrote in a sparse format (with sparsity metadata)."""
    from keras_bertopt.export.flatbuffer import sparse_tensor_count

    return sparse_tensor_count(path)


def _row_latency(result: dict, row_name: str, row: dict, rounds: int, runs: int) -> None:
    """Latency of the row's files, interleaved with the dense float32 file (same load)."""
    dense = result["rows"].get("dense", row if row_name == "dense" else None)
    if dense is None:
        raise ValueError("the dense row must come first")
    paths = {"dense_none": dense["files"]["none"]["path"]}
    paths.update({m: row["files"][m]["path"] for m in ("none", "dynamic")})
    latency = _interleaved_latency(paths, rounds, runs)
    dense_ms = latency["dense_none"]["median_ms"]
    dense_acc = dense["files"]["none"]["accuracy"]
    for m in ("none", "dynamic"):
        f = row["files"][m]
        f["latency_ms"] = latency[m]["median_ms"]
        f["latency_round_medians_ms"] = latency[m]["round_medians_ms"]
        f["dense_float32_ms_same_rounds"] = dense_ms
        f["latency_vs_dense_float32"] = latency[m]["median_ms"] / dense_ms
        f["accuracy_vs_dense_float32_pt"] = 100 * (f["accuracy"] - dense_acc)
    f, d = row["files"]["none"], row["files"]["dynamic"]
    print(f"RESULT {row_name:10} params {row['params']:>9} | float32 acc {f['accuracy']:.4f} "
          f"{f['latency_ms']:6.2f} ms x{f['latency_vs_dense_float32']:.2f} | dynamic acc "
          f"{d['accuracy']:.4f} {d['latency_ms']:6.2f} ms x{d['latency_vs_dense_float32']:.2f}",
          flush=True)


def _litert_latency(path: str, builtin_only: bool, runs: int, vocabulary: int) -> float:
    """Median batch-1 one-thread latency (ms), optionally without XNNPack."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs = {"num_threads": 1}
    if builtin_only:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_path=path, **kwargs)
    interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner("serving_default")
    length = int(runner.get_input_details()["token_ids"]["shape"][1])
    rng = np.random.default_rng(0)
    feed = {"token_ids": rng.integers(1, min(vocabulary, 1000), (1, length)).astype(np.int32),
            "segment_ids": np.zeros((1, length), np.int32),
            "padding_mask": np.ones((1, length), np.int32)}
    for _ in range(3):
        runner(**feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner(**feed)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def _block_pruned(model: Any, block: tuple[int, int], sparsity: float) -> Any:
    """A copy of `model` with its transformer kernels block-pruned to `sparsity` (one shot)."""
    import keras

    from keras_bertopt.pruning import ConstantSparsity, MagnitudePruning, strip_pruning
    from keras_bertopt.quantization.wrapper import copy_task

    pruned = copy_task(model)
    trainer = keras.Model(pruned.input, pruned.output)
    trainer.compile(optimizer=keras.optimizers.SGD(0.0),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruning = MagnitudePruning(ConstantSparsity(sparsity, begin_step=0, frequency=1),
                               pattern="block", block_shape=block)
    train = sst2_dataset("train", 8, sequence_length=16, limit=8)
    trainer.fit(train, epochs=1, steps_per_epoch=1, callbacks=[pruning], verbose=0)
    strip_pruning(trainer)  # bakes the masks into the variables `pruned` shares
    return pruned


def _sparse_kernels(model: Any, folder: str, sparsity: float, runs: int, dev: tuple) -> dict:

    from keras_bertopt.export import TFLiteClassifier, inspect_tflite, to_tflite

    settings = [("float32", "none", (4, 1)), ("dynamic", "dynamic", (16, 1))]
    out: dict[str, Any] = {"sparsity": sparsity, "rows": []}
    for label, mode, block in settings:
        pruned = _block_pruned(model, block, sparsity)
        for written in ("dense", "sparse"):
            path = os.path.join(folder, f"block_{label}_{written}.tflite")
            to_tflite(pruned, path, quantization=mode, sparse_weights=written == "sparse",
                      sample_data=dev[0][:16], num_samples=16, latency_runs=0, num_threads=1,
                      length_buckets=None)
            accuracy = TFLiteClassifier(path, model.preprocessor, num_threads=1).evaluate(dev)
            row = {"mode": label, "block_shape": list(block), "written": written,
                   "size_bytes": os.path.getsize(path),
                   "sparse_tensors": _sparse_tensors(path),
                   "dev_accuracy_one_shot": accuracy["accuracy"]}
            if written == "dense":  # values of sparse-format tensors are not readable here
                row["weight_sparsity"] = inspect_tflite(path)["weight_sparsity"]
            for key, builtin in (("xnnpack_ms", False), ("builtin_no_xnnpack_ms", True)):
                try:
                    row[key] = _litert_latency(path, builtin, runs,
                                               model.backbone.vocabulary_size)
                except RuntimeError as err:
                    row[key] = None
                    row[key + "_error"] = str(err)[:200]
            out["rows"].append(row)
            print(f"  sparse-kernel {row}", flush=True)
    return out


def _score_data(length: int, batches: int, batch_size: int) -> Any:
    return sst2_dataset("train", batch_size, sequence_length=length, shuffle=True,
                        seed=123).take(batches)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="a fine-tuned .keras classifier")
    parser.add_argument("--recovery-examples", type=int, default=1024)
    parser.add_argument("--train-length", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--rows", default=",".join(name for name, _ in ROWS))
    parser.add_argument("--skip-sparse", action="store_true")
    parser.add_argument("--sparse-only", action="store_true",
                        help="only the sparse-kernel section (structured_pruning_sparse.json)")
    parser.add_argument("--no-distill", action="store_true",
                        help="recover on hard labels only (default: KD from the dense model)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.recovery_examples, args.rounds, args.runs = 64, 1, 5
        args.rows = "dense,heads_50,combined"

    from keras_bertopt.pruning import importance_scores, prune_structure
    from keras_bertopt.quantization.wrapper import copy_task

    started = time.perf_counter()
    model = _load(args.model)
    texts, labels = sst2_examples("dev", limit=100 if args.quick else None)
    dev = (texts, labels)
    sample = texts[:32]
    if args.sparse_only:
        write_result("structured_pruning_sparse", {
            "model": args.model or "common.finetuned_minilm() (200 steps)",
            "sparse_kernels": _sparse_kernels(model, tempfile.mkdtemp(prefix="kbo_sparse_"),
                                              args.sparsity, args.runs * args.rounds, dev),
            "seconds": round(time.perf_counter() - started, 1)})
        return
    cached = None
    if not args.no_distill:
        from keras_bertopt.distillation import cache_teacher_logits

        # The dense model is the teacher; the preprocessor packs recovery batches to
        # --train-length while its logits are cached (the students see the same batches).
        export_length = model.preprocessor.sequence_length
        model.preprocessor.sequence_length = args.train_length
        cached = cache_teacher_logits(
            model, sst2_dataset("train", args.batch_size, limit=args.recovery_examples),
            shuffle=True, seed=1)
        model.preprocessor.sequence_length = export_length
    scores = importance_scores(model, "taylor", data=_score_data(args.train_length, 8, 32))
    result: dict[str, Any] = {
        "model": args.model or "common.finetuned_minilm() (200 steps)",
        "recovery": (f"{args.recovery_examples} SST-2 train examples per row, batch "
                     f"{args.batch_size}, length {args.train_length}, "
                     + ("hard labels" if args.no_distill else
                        f"KD from the dense model (T {KD_TEMPERATURE}, alpha {KD_ALPHA})")
                     + ", create_optimizer(1e-4, 10% warm-up)"),
        "importance": "taylor, 8 batches of 32 train sentences",
        "layer_scores": scores.layers.tolist(),
        "latency": f"batch 1, one thread, median of {args.rounds} interleaved rounds x "
                   f"{args.runs} runs",
        "rows": {},
    }
    name = "structured_pruning_quick" if args.quick else "structured_pruning"
    folder = tempfile.mkdtemp(prefix="kbo_structured_")
    chosen = [(n, kw) for n, kw in ROWS if n in args.rows.split(",")]
    for row_name, kwargs in chosen:
        print(f"row {row_name} {kwargs}", flush=True)
        small = prune_structure(model, importance=scores, **kwargs) if kwargs else copy_task(model)
        row = {"settings": kwargs, "params": int(small.count_params()),
               "num_heads": list(getattr(small.backbone, "num_heads", [])) if kwargs else None,
               "intermediate_dim": (list(small.backbone.intermediate_dim) if kwargs else None),
               "recovery": (_recover(small, args.recovery_examples, args.train_length,
                                     args.batch_size, seed=1) if cached is None else
                            _recover_kd(small, model, cached, -(-args.recovery_examples
                                                          // args.batch_size),
                                        args.train_length, seed=1))}
        row["files"] = _export_and_score(small, folder, row_name, dev, sample)
        _row_latency(result, row_name, row, args.rounds, args.runs)
        result["rows"][row_name] = row
        write_result(name, result)  # partial results survive an interruption
    write_result(name, result)
    if not args.skip_sparse:
        print("sparse kernels", flush=True)
        result["sparse_kernels"] = _sparse_kernels(model, folder, args.sparsity,
                                                   args.runs * args.rounds, dev)
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_result(name, result)


if __name__ == "__main__":
    main()
