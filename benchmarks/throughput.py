"""Training throughput of `model.fit` vs this machine's own measured matmul peak.

* Peak: FLOP/s of a large float32 matmul (`tf.linalg.matmul`, n x n, 2 n^3 FLOPs
  per product) in a `tf.function`, best of several timed repeats, measured
  before and after the fit (the best is kept, so a busy machine lowers the
  ratio rather than raising it).
* Model FLOPs per training step, analytic, from the model's own variable shapes:
  ``3 x forward`` (backward = 2 x forward) with
  forward = 2 * (matmul parameters per token) * tokens
          + 4 * layers * sequence_length * hidden * tokens   (QK^T and attention x V)
          + 2 * (pooler + classifier parameters) * batch.
  Tokens are padded tokens (batch x sequence_length): that is what the matmuls
  compute on. Embedding lookups, softmax, LayerNorm, GELU and the optimizer
  update are not counted (small next to the matmuls, and not matmul work).
* Achieved: FLOPs per step / median step time of `fit` on raw SST-2 sentences
  (MiniLM) or the demo data (tiny), first steps (tracing) excluded.

Target (DESIGN.md): achieved >= 50% of the matmul peak.

    flock /tmp/kbo_bench.lock python benchmarks/throughput.py            # MiniLM, ~3 min
    python benchmarks/throughput.py --model tiny --steps 20               # tiny, seconds

Budget: default MiniLM run (40 steps of batch 32 x 64 tokens) takes about 3-4
minutes on the 2-core machine; --quick about 2 minutes.
Writes benchmarks/results/throughput.json (or throughput_<model>.json for --model tiny).
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
    return {"n": n, "inner": inner, "repeats": repeats, "best_seconds": min(times),
            "flops_per_second": flops / min(times),
            "median_flops_per_second": flops / statistics.median(times)}


def training_flops_per_step(model: Any, batch_size: int, sequence_length: int) -> dict[str, Any]:
    """Analytic FLOPs of one training step (forward + backward) of a keras-hub BERT classifier."""
    import re

    from keras_bertopt.selection import variable_path

    per_token = per_sequence = 0
    layers = set()
    for v in model.weights:
        path = variable_path(v)
        if not path.endswith("kernel"):
            continue
        size = 1
        for d in v.shape:
            size *= int(d)
        match = re.search(r"transformer_layer_(\d+)/", path)
        if match:
            per_token += size
            layers.add(match.group(1))
        elif re.search(r"(pooled_dense|logits)/kernel$", path):
            per_sequence += size
    hidden = int(model.backbone.hidden_dim)
    tokens = batch_size * sequence_length
    forward_matmul = 2 * per_token * tokens + 2 * per_sequence * batch_size
    forward_attention = 4 * len(layers) * sequence_length * hidden * tokens
    return {
        "matmul_params_per_token": per_token,
        "matmul_params_per_sequence": per_sequence,
        "num_layers": len(layers),
        "hidden_dim": hidden,
        "tokens_per_step": tokens,
        "forward_flops": forward_matmul + forward_attention,
        "train_flops_per_step": 3 * (forward_matmul + forward_attention),
    }


def measure_fit(model: Any, train: Any, steps: int, skip: int) -> dict[str, Any]:
    """Per-step wall times of `fit` (a callback timestamps each batch)."""
    import keras

    stamps: list[float] = []

    class Stamp(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            if not stamps:
                stamps.append(time.perf_counter())

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            stamps.append(time.perf_counter())

    model.fit(train, epochs=1, steps_per_epoch=steps, callbacks=[Stamp()], verbose=0)
    times = [b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True)]
    kept = times[skip:]
    return {"steps": steps, "skipped_first_steps": skip, "step_seconds_median":
            statistics.median(kept), "step_seconds_mean": statistics.fmean(kept),
            "step_seconds_min": min(kept)}


def build(model_kind: str, sequence_length: int, batch_size: int, seed: int) -> tuple[Any, Any]:
    import keras

    from keras_bertopt import data, models

    keras.utils.set_random_seed(seed)
    if model_kind == "minilm":
        model = models.build_classifier(common.minilm_dir(), 2, sequence_length)
        train = common.sst2_dataset("train", batch_size, shuffle=True, seed=seed).repeat()
    else:
        model = models.build_classifier(models.TinyConfig(seed=seed), 2, sequence_length)
        train = data.demo_dataset("train", batch_size, seed=seed).repeat()
    try:
        from keras_bertopt.optimizers import create_optimizer

        optimizer = create_optimizer(5e-5, 10_000, warmup_steps=100)
    except ImportError:  # the optimizer module not present: Keras's AdamW is the same math
        optimizer = keras.optimizers.AdamW(5e-5, epsilon=1e-6, global_clipnorm=1.0)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, train


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("minilm", "tiny"), default="minilm")
    parser.add_argument("--quick", action="store_true", help="fewer steps and a smaller peak run")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-name", default=None)
    args = parser.parse_args(argv)
    steps = args.steps or (15 if args.quick else 40)
    skip = 3 if steps > 6 else 1
    n = 1024 if args.quick else 2048

    peak_before = matmul_peak(n)
    model, train = build(args.model, args.sequence_length, args.batch_size, args.seed)
    fit = measure_fit(model, train, steps, skip)
    peak_after = matmul_peak(n)
    peak = max(peak_before["flops_per_second"], peak_after["flops_per_second"])
    flops = training_flops_per_step(model, args.batch_size, args.sequence_length)
    achieved = flops["train_flops_per_step"] / fit["step_seconds_median"]
    fraction = achieved / peak
    result = {
        "model": args.model,
        "batch_size": args.batch_size,
        "sequence_length": args.sequence_length,
        "matmul_peak_before": peak_before,
        "matmul_peak_after": peak_after,
        "peak_flops_per_second": peak,
        "model_flops": flops,
        "fit": fit,
        "examples_per_second": args.batch_size / fit["step_seconds_median"],
        "achieved_flops_per_second": achieved,
        "fraction_of_peak": fraction,
        "target_fraction_of_peak": TARGET_FRACTION_OF_PEAK,
        "meets_target": fraction >= TARGET_FRACTION_OF_PEAK,
        "quick": args.quick,
    }
    default_name = "throughput" if args.model == "minilm" else f"throughput_{args.model}"
    name = args.output_name or default_name
    path = common.write_result(name, result)
    print(f"{args.model}: {result['examples_per_second']:.1f} examples/s, "
          f"{achieved / 1e9:.1f} GFLOP/s achieved vs {peak / 1e9:.1f} GFLOP/s matmul peak = "
          f"{fraction:.1%} (target >= {TARGET_FRACTION_OF_PEAK:.0%}); {path}")
    return result


if __name__ == "__main__":
    main()
