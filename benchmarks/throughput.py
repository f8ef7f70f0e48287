"""Training throughput: fixed padding vs length-bucketed batches, XLA on/off, mixed precision.

Same model (MiniLM-L6, or the tiny config with --model tiny), same data (SST-2
train sentences), same machine, one run. Configurations:

* ``padded``: every batch padded to `--sequence-length` (64), as plain `fit`.
* ``bucketed``: `keras_bertopt.data.bucket_by_length` + `dynamic_padding`
  (bounds 16/24/32/48/64): each batch padded to its bucket.
* ``padded_xla`` / ``bucketed_xla``: the same with ``compile(jit_compile=True)``.
* ``bucketed_bf16``: bucketed with Keras's ``mixed_bfloat16`` policy.

Interleaved: the machine is shared (2 cores, several users), so each round
trains every configuration for `--steps` steps, the order alternating between
rounds, so load changes hit every configuration alike. Before timing, each
model runs one step on a batch of every padded length it will see (inside
`keras_bertopt.batch_size.preserved_state`, so no training happens), which
keeps tracing and XLA compilation out of the rounds; the first step of every
round (a new input iterator filling its shuffle window) is left out too. Rates
come from `keras_bertopt.callbacks.Throughput`: examples/s, real tokens/s,
padded tokens/s and model FLOP utilization on real and on padded tokens
against this machine's float32 matmul peak, measured between the rounds (best
of all, so load lowers utilization rather than raising it).

Accuracy at equal examples (--accuracy-steps N, default 200): the bucketed
model, already trained during the rounds with the schedule of an N-step
fine-tune (`create_optimizer`, peak 1e-4, 10% warm-up), trains on to N steps
of batch 32; its SST-2 dev accuracy is compared with the padded fine-tune of
the same recipe and seed that `common.finetuned_minilm(N)` caches (trained or
loaded here).

    flock /tmp/kbo_bench.lock python benchmarks/throughput.py                # MiniLM
    python benchmarks/throughput.py --model tiny --rounds 2 --steps 4 --accuracy-steps 0
    python benchmarks/throughput.py --quick       # MiniLM, padded vs bucketed, 2 x 3 steps

Budget: MiniLM, 6 rounds x 6 steps x 5 configurations (180 timed steps of
batch 32) plus XLA compilation of 6 shapes and 200 - 36 bucketed accuracy
steps: about 15 minutes alone on the 2-core machine, 30-45 minutes shared.
Writes benchmarks/results/throughput.json (throughput_tiny.json for --model tiny).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

TARGET_FRACTION_OF_PEAK = 0.5
TARGET_SPEEDUP = 3.0
CONFIGS = ("padded", "bucketed", "padded_xla", "bucketed_xla", "bucketed_bf16")
SHUFFLE_WINDOW = 10_000


def matmul_peak(n: int = 2048, repeats: int = 5, inner: int = 4) -> dict[str, Any]:
    """Best FLOP/s of an n x n float32 matmul chain on this machine (TensorFlow)."""
    import tensorflow as tf

    a = tf.random.stateless_normal((n, n), seed=(1, 2), dtype=tf.float32)
    b = tf.random.stateless_normal((n, n), seed=(3, 4), dtype=tf.float32) / float(n) ** 0.5

    @tf.function
    def chain(x: Any) -> Any:
        for _ in range(inner):
            x = tf.linalg.matmul(x, b)
        return x

    chain(a).numpy()  # trace + warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        chain(a).numpy()
        times.append(time.perf_counter() - start)
    flops = 2.0 * n**3 * inner
    return {
        "n": n,
        "inner": inner,
        "repeats": repeats,
        "best_seconds": min(times),
        "flops_per_second": flops / min(times),
        "median_flops_per_second": flops / statistics.median(times),
    }


def _examples(model_kind: str, limit: int | None) -> tuple[list[str], list[int]]:
    if model_kind == "minilm":
        return common.sst2_examples("train", limit=limit)
    from keras_bertopt.data import demo_examples

    return demo_examples("train")


def _build_model(model_kind: str, sequence_length: int, seed: int, bf16: bool) -> Any:
    import keras

    from keras_bertopt import models

    keras.utils.set_random_seed(seed)
    policy = keras.config.dtype_policy()
    if bf16:
        keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        if model_kind == "minilm":
            return models.build_classifier(common.minilm_dir(), 2, sequence_length)
        return models.build_classifier(models.TinyConfig(seed=seed), 2, sequence_length)
    finally:
        keras.config.set_dtype_policy(policy)


def build(name: str, args: Any, texts: list[str], labels: list[int]) -> dict[str, Any]:
    """Model, compiled, and its training dataset (repeated) for configuration `name`."""
    import keras
    import tensorflow as tf

    from keras_bertopt.data import bucket_by_length, dynamic_padding
    from keras_bertopt.optimizers import create_optimizer

    bucketed = name.startswith("bucketed")
    model = _build_model(args.model, args.sequence_length, args.seed, name.endswith("bf16"))
    total = max(args.accuracy_steps, args.rounds * args.steps, 2)
    model.compile(
        optimizer=create_optimizer(1e-4, total, warmup_ratio=0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["sparse_categorical_accuracy"],
        jit_compile=name.endswith("xla"),
    )
    if bucketed:
        dynamic_padding(model)
        train = bucket_by_length(
            (texts, labels), model, args.batch_size, shuffle_window=SHUFFLE_WINDOW, seed=args.seed
        )
    else:
        train = (
            tf.data.Dataset.from_tensor_slices((texts, tf.constant(labels, tf.int32)))
            .shuffle(SHUFFLE_WINDOW, seed=args.seed, reshuffle_each_iteration=True)
            .batch(args.batch_size)
        )
    return {"name": name, "model": model, "train": train.repeat(), "rounds": []}


def warm_up(entry: dict[str, Any], texts: list[str], labels: list[int], args: Any) -> int:
    """Trace / XLA-compile every padded shape once through `fit`, without training.

    One batch per padded length goes through `fit` (same input signature as the
    rounds, so the same traced step and XLA cache), inside `preserved_state`,
    which puts weights and optimizer state back. Returns the number of shapes.
    """
    import tensorflow as tf

    from keras_bertopt.batch_size import preserved_state

    model = entry["model"]
    samples = _one_batch_per_length(texts, labels, model.preprocessor, args.batch_size)
    spec = entry["train"].element_spec
    data = tf.data.Dataset.from_generator(lambda: iter(samples), output_signature=spec)
    with preserved_state(model):
        model.fit(data, epochs=1, verbose=0)
    return len(samples)


def _one_batch_per_length(texts: list[str], labels: list[int], pre: Any, batch: int) -> list:
    """One full batch of sentences for each distinct padded length the preprocessor makes."""
    import numpy as np

    packed = pre.tokenizer(texts[:20_000])
    lengths = np.array([min(len(t) + 2, pre.sequence_length) for t in packed])
    bounds = getattr(pre, "bounds", (pre.sequence_length,))
    batches = []
    low = 0
    for bound in bounds:
        chosen = np.flatnonzero((lengths > low) & (lengths <= bound))[:batch]
        if len(chosen) == batch:
            batches.append(([texts[i] for i in chosen], [labels[i] for i in chosen]))
        low = bound
    return batches


def run_round(entry: dict[str, Any], steps: int, peak: float) -> dict[str, Any]:
    """`steps` training steps in one `fit`; the first is left out of the rates."""
    from keras_bertopt.callbacks import Throughput

    model = entry["model"]
    throughput = Throughput(warmup_steps=1, verbose=0, peak_flops=peak)
    history = model.fit(
        throughput.count_tokens(entry["train"], model),
        epochs=1,
        steps_per_epoch=steps,
        verbose=0,
        callbacks=[throughput],
    )
    rates = throughput.epoch_rates[0]
    rates["loss"] = float(history.history["loss"][-1])
    entry["rounds"].append(rates)
    return rates


def summarize(entry: dict[str, Any], peak: float) -> dict[str, Any]:
    from keras_bertopt.callbacks.flops import TransformerCost

    rounds = entry["rounds"]
    seconds = sum(r["seconds"] for r in rounds)
    examples = sum(r["examples"] for r in rounds)
    tokens = sum(r["tokens"] for r in rounds)
    padded = sum(r["padded_tokens"] for r in rounds)
    cost = TransformerCost.of(entry["model"])
    # utilization per round weights rounds by time: recompute from the rounds' rates
    real_flops = sum(r["mfu_real"] * peak * r["seconds"] for r in rounds)
    padded_flops = sum(r["mfu_padded"] * peak * r["seconds"] for r in rounds)
    return {
        "timed_steps": sum(r["steps"] for r in rounds),
        "seconds": round(seconds, 3),
        "examples": examples,
        "real_tokens": tokens,
        "padded_tokens": padded,
        "padding_efficiency": round(tokens / padded, 4),
        "examples_per_second": examples / seconds,
        "tokens_per_second": tokens / seconds,
        "padded_tokens_per_second": padded / seconds,
        "mfu_real": real_flops / (peak * seconds),
        "mfu_padded": padded_flops / (peak * seconds),
        "cost": {"matmul_weights": cost.matmul_weights, "attention_dims": cost.attention_dims},
        "per_round_examples_per_second": [round(r["examples_per_second"], 2) for r in rounds],
    }


def accuracy_at_equal_examples(entry: dict[str, Any], args: Any) -> dict[str, Any]:
    """Train the bucketed model on to `accuracy_steps` steps; dev accuracy vs padded cache."""
    model = entry["model"]
    done = int(model.optimizer.iterations)
    remaining = args.accuracy_steps - done
    start = time.perf_counter()
    if remaining > 0:
        model.fit(entry["train"], epochs=1, steps_per_epoch=remaining, verbose=2)
    seconds = time.perf_counter() - start
    dev = common.sst2_dataset("dev", batch_size=64)
    bucketed = common.evaluate_accuracy(model, dev)
    padded_model = common.finetuned_minilm(
        args.accuracy_steps, args.sequence_length, args.batch_size, args.seed
    )
    padded = common.evaluate_accuracy(padded_model, dev)
    return {
        "steps": args.accuracy_steps,
        "examples": args.accuracy_steps * args.batch_size,
        "bucketed_dev_accuracy": round(bucketed, 4),
        "padded_dev_accuracy": round(padded, 4),
        "difference_points": round(100 * (bucketed - padded), 2),
        "padded_model": common.finetune_cache_path(
            args.accuracy_steps, args.sequence_length, args.batch_size, args.seed
        ),
        "bucketed_untimed_training_seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("minilm", "tiny"), default="minilm")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=6, help="steps per round (first untimed)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--accuracy-steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peak-n", type=int, default=2048)
    parser.add_argument("--output-name", default=None, help="results file stem")
    parser.add_argument(
        "--no-warm-up",
        action="store_true",
        help="skip the compile pass (fine without XLA: the step is traced once, in the first "
        "round's first step, which the rates leave out)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: padded vs bucketed, 2 x 3 steps"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.configs, args.rounds, args.steps = "padded,bucketed", 2, 3
        args.accuracy_steps, args.peak_n = 0, 1024
        args.output_name = args.output_name or "throughput_quick"
    names = [c for c in args.configs.split(",") if c]
    if not names or any(c not in CONFIGS for c in names):
        parser.error(f"--configs must name some of {CONFIGS}")
    if args.model != "minilm":
        args.accuracy_steps = 0

    texts, labels = _examples(args.model, None)
    peaks = [matmul_peak(args.peak_n)]
    entries = []
    for name in names:
        entry = build(name, args, texts, labels)
        start = time.perf_counter()
        entry["compiled_shapes"] = 0 if args.no_warm_up else warm_up(entry, texts, labels, args)
        entry["warm_up_seconds"] = round(time.perf_counter() - start, 1)
        print(
            f"{name}: warmed up {entry['compiled_shapes']} shape(s) in "
            f"{entry['warm_up_seconds']} s",
            flush=True,
        )
        entries.append(entry)
    peak = peaks[0]["flops_per_second"]
    for r in range(args.rounds):
        order = entries if r % 2 == 0 else entries[::-1]
        for entry in order:
            rates = run_round(entry, args.steps, peak)
            print(
                f"round {r + 1}/{args.rounds} {entry['name']:>14}: "
                f"{rates['examples_per_second']:.1f} ex/s",
                flush=True,
            )
        peaks.append(matmul_peak(args.peak_n))
    peak = max(p["flops_per_second"] for p in peaks)
    results = {e["name"]: summarize(e, peak) for e in entries}
    for e in entries:
        results[e["name"]]["compiled_shapes"] = e["compiled_shapes"]
        results[e["name"]]["warm_up_seconds"] = e["warm_up_seconds"]
    ratios = {
        f"{name}_vs_padded_examples_per_second": results[name]["examples_per_second"]
        / results["padded"]["examples_per_second"]
        for name in results
        if name != "padded" and "padded" in results
    }
    best = results.get("bucketed") or next(iter(results.values()))
    result: dict[str, Any] = {
        "model": args.model,
        "batch_size": args.batch_size,
        "sequence_length": args.sequence_length,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "interleaved": "each round runs every configuration, order alternating; "
        "the machine was shared, so absolute rates are lower than alone",
        "peak_flops_per_second": peak,
        "matmul_peaks": [round(p["flops_per_second"] / 1e9, 1) for p in peaks],
        "configs": results,
        "ratios": ratios,
        # Keys kept from the earlier padded-only benchmark (run_all.py reads them):
        "examples_per_second": best["examples_per_second"],
        "achieved_flops_per_second": best["mfu_real"] * peak,
        "fraction_of_peak": best["mfu_real"],
        "target_fraction_of_peak": TARGET_FRACTION_OF_PEAK,
        "target_speedup": TARGET_SPEEDUP,
    }
    if args.accuracy_steps and "bucketed" in results:
        result["accuracy"] = accuracy_at_equal_examples(
            next(e for e in entries if e["name"] == "bucketed"), args
        )
    name = "throughput" if args.model == "minilm" else f"throughput_{args.model}"
    path = common.write_result(args.output_name or name, result)
    print(
        f"{'config':>14} {'ex/s':>7} {'real tok/s':>10} {'pad tok/s':>10} "
        f"{'MFU real':>8} {'MFU pad':>8} {'vs padded':>9}"
    )
    for key, row in results.items():
        ratio = ratios.get(f"{key}_vs_padded_examples_per_second", 1.0)
        print(
            f"{key:>14} {row['examples_per_second']:7.1f} {row['tokens_per_second']:10.0f} "
            f"{row['padded_tokens_per_second']:10.0f} {row['mfu_real']:8.1%} "
            f"{row['mfu_padded']:8.1%} {ratio:8.2f}x"
        )
    print(f"matmul peak {peak / 1e9:.1f} GFLOP/s; {path}")
    return result


if __name__ == "__main__":
    main()
