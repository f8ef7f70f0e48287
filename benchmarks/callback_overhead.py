"""Step time of `fit` with the metrics callbacks (and MagnitudePruning) vs plain `fit`.

Three variants on the same data, run one epoch at a time, interleaved (order
rotated every round) so machine load hits all alike; ``plain`` and ``metrics``
share one already-traced model, ``metrics+pruning`` has its own:

* ``plain``: `fit` with no callbacks of ours;
* ``metrics``: Throughput (with `count_tokens` in the input pipeline),
  LearningRateLogger, SparsityLogger and ValidationMetrics;
* ``metrics+pruning``: the same plus MagnitudePruning (PolynomialSparsity to 50%).

Step time is the median (and mean) interval between consecutive
`on_train_batch_end` calls seen by a timer placed last in the callback list, so
it includes every other callback's per-step work, the input pipeline and the
train step; the first round of each variant (tracing) is not counted. The
whole-epoch wall time (including ValidationMetrics' prediction pass at epoch
end, which is not step time) is reported as well.

Target (issue 5): step-time ratio <= 1.05 for both variants vs plain,
judged on the paired ratio (each round's median step time over plain's median in
the same round, then the median over rounds); pooled medians and means are
reported too.

    flock /tmp/kbo_bench.lock python benchmarks/callback_overhead.py                  # tiny
    flock /tmp/kbo_bench.lock python benchmarks/callback_overhead.py --model minilm   # MiniLM

Budget: tiny about 2-4 minutes; MiniLM (batch 32 x 64 tokens, 4 counted rounds of
12 steps per variant) about 15 minutes on the 2-core machine (stop it beyond 20).
Writes benchmarks/results/callback_overhead.json (one entry per model, merged).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402


class StepTimer:
    """Records the time of every on_train_batch_end (place it last)."""

    def __init__(self) -> None:
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self, owner: StepTimer) -> None:
                super().__init__()
                self.owner = owner

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self.owner.current = []

            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                self.owner.current.append(time.perf_counter())

        self.callback = _Timer(self)
        self.current: list[float] = []

    def intervals(self) -> list[float]:
        return [b - a for a, b in zip(self.current, self.current[1:], strict=False)]


def build(model_kind: str, sequence_length: int, learning_rate: float) -> Any:
    import keras

    import keras_bertopt as kb

    source = kb.models.TinyConfig() if model_kind == "tiny" else common.minilm_dir()
    model = kb.models.build_classifier(source, 2, sequence_length=sequence_length)
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["tiny", "minilm"], default="tiny")
    parser.add_argument("--rounds", type=int, default=None, help="counted rounds")
    parser.add_argument("--steps", type=int, default=None, help="steps per epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--note", default="", help="stored with the result (e.g. machine state)")
    args = parser.parse_args(argv)
    tiny = args.model == "tiny"
    rounds = args.rounds or (8 if tiny else 4)
    steps = args.steps or (40 if tiny else 12)
    sequence_length = 32 if tiny else 64
    batch = args.batch_size

    import keras_bertopt as kb
    from keras_bertopt.callbacks import (
        LearningRateLogger,
        SparsityLogger,
        Throughput,
        ValidationMetrics,
    )
    from keras_bertopt.pruning import MagnitudePruning, PolynomialSparsity

    if tiny:
        train = kb.data.demo_dataset("train", batch, size=steps * batch, shuffle=False)
        validation = kb.data.demo_dataset("validation", batch, size=64)
    else:
        train = common.sst2_dataset("train", batch, limit=steps * batch)
        validation = common.sst2_dataset("dev", batch, limit=64)
    learning_rate = 1e-3 if tiny else 5e-5
    total_steps = (rounds + 1) * steps

    variants: dict[str, dict[str, Any]] = {}
    for name in ("plain", "metrics", "metrics+pruning"):
        # plain and metrics share one model (one traced train function), so their
        # difference is the callbacks alone; pruning changes the model (mask
        # constraints in the train step), so it gets its own.
        if name == "metrics":
            model = variants["plain"]["model"]
        else:
            model = build(args.model, sequence_length, learning_rate)
        timer = StepTimer()
        callbacks: list[Any] = []
        data = train
        if name != "plain":
            throughput = Throughput(warmup_steps=2, verbose=0)
            data = throughput.count_tokens(train, model)
            callbacks = [throughput, LearningRateLogger(), SparsityLogger(),
                         ValidationMetrics(validation)]
        if name == "metrics+pruning":
            callbacks.insert(0, MagnitudePruning(PolynomialSparsity(
                0.0, 0.5, begin_step=0, end_step=total_steps, frequency=10)))
        variants[name] = {"model": model, "data": data, "timer": timer,
                          "callbacks": callbacks + [timer.callback],
                          "intervals": [], "epoch_seconds": [], "round_medians": []}

    order = list(variants)
    started = time.time()
    for round_index in range(rounds + 1):
        shift = round_index % len(order)
        for name in order[shift:] + order[:shift]:
            v = variants[name]
            t0 = time.perf_counter()
            v["model"].fit(v["data"], epochs=1, verbose=0, callbacks=v["callbacks"])
            seconds = time.perf_counter() - t0
            if round_index == 0:
                continue  # tracing / compilation round
            v["intervals"].extend(v["timer"].intervals())
            v["round_medians"].append(statistics.median(v["timer"].intervals()))
            v["epoch_seconds"].append(seconds)
        print(f"round {round_index}/{rounds} done, {time.time() - started:.0f} s", flush=True)

    summary: dict[str, Any] = {}
    for name, v in variants.items():
        summary[name] = {
            "median_step_seconds": statistics.median(v["intervals"]),
            "mean_step_seconds": statistics.fmean(v["intervals"]),
            "steps_measured": len(v["intervals"]),
            "mean_epoch_seconds": statistics.fmean(v["epoch_seconds"]),
        }
    plain = summary["plain"]
    ratios = {
        name: {
            "median_step_time_ratio": s["median_step_seconds"] / plain["median_step_seconds"],
            "mean_step_time_ratio": s["mean_step_seconds"] / plain["mean_step_seconds"],
            # Paired: each round's median step time over plain's in the same round,
            # then the median over rounds (robust to load drifting between rounds).
            "paired_median_step_time_ratio": statistics.median(
                a / b for a, b in zip(variants[name]["round_medians"],
                                      variants["plain"]["round_medians"], strict=True)
            ),
            "epoch_wall_time_ratio": s["mean_epoch_seconds"] / plain["mean_epoch_seconds"],
        }
        for name, s in summary.items()
        if name != "plain"
    }
    entry = {
        "model": "tiny BERT (TinyConfig: 2 layers, hidden 32)" if tiny
        else "all-MiniLM-L6-v2 (6 layers, hidden 384)",
        "data": "built-in demo data" if tiny else "SST-2 train sentences (raw strings)",
        "batch_size": batch,
        "sequence_length": sequence_length,
        "steps_per_epoch": steps,
        "counted_rounds": rounds,
        "variants": summary,
        "ratios_vs_plain": ratios,
        "target_step_time_ratio": 1.05,
        "meets_target": all(
            r["paired_median_step_time_ratio"] <= 1.05 for r in ratios.values()
        ),
        "wall_seconds": time.time() - started,
        "command": "python benchmarks/callback_overhead.py "
                   + " ".join(argv if argv is not None else sys.argv[1:]),
        "note": args.note,
    }
    print(json.dumps(entry, indent=2))

    previous: dict[str, Any] = {}
    path = os.path.join(common.RESULTS_DIR, "callback_overhead.json")
    if os.path.exists(path):
        with open(path) as f:
            previous = json.load(f).get("results", {})
    previous[args.model] = entry
    common.write_result("callback_overhead", {
        "method": "interleaved epochs of three already-traced models; step time = interval "
                  "between consecutive on_train_batch_end seen by a timer placed last",
        "results": previous,
    })
    return entry


if __name__ == "__main__":
    main()
