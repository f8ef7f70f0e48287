"""Predict throughput: one sentence at a time vs batched on 2 threads, and the repeat cache.

For one fine-tuned MiniLM-L6 (``--model PATH.keras``; default: the cached
full-epoch bucketed fine-tune of `common.finetune_minilm_bucketed` when a run
made it, else `common.finetuned_minilm()`) exported as the shipped
dynamic-range file (`to_tflite(model, path, "dynamic")`: default layout, batch
1) and as a dynamic-batch copy
(``batch_size=None``), measured side by side in one run on this machine:

* texts: the SST-2 dev sentences then SST-2 train sentences, distinct, up to
  ``--texts`` (default 2000);
* ``one_at_a_time``: `TFLiteClassifier(num_threads=1, workers=1, cache_size=0)`,
  one ``predict([text])`` per sentence (tokenize, run, read: what a loop over a
  corpus does);
* ``batched_2_threads``: the same file, ``predict`` on chunks of 256 texts
  (one tokenizer call each) on an `InterpreterPool` of 2 single-thread
  interpreters, no cache;
* ``batched_2_threads_dynamic_batch``: the dynamic-batch file, batches of 32
  similar-length sentences on 2 interpreters, no cache;
* a stream of the same size where 30% of the texts repeat earlier ones (seeded
  shuffle), batched on 2 threads with ``cache_size=0`` and with the cache on;
* the cost of a cache hit: all-hit lookups on pre-tokenized inputs
  (`predict_logits`) per text vs one batch-1 model call per text on the same
  inputs (and, for the record, a whole ``predict`` of all-hit texts, tokenizer
  included).

Every mode runs ``--rounds`` (3) times, rounds interleaved so load changes on
the shared machine hit every mode alike; medians are reported. Labels of every
mode on the same file must be identical (checked, recorded).

    nohup flock /tmp/kbo_bench.lock python benchmarks/predict.py > /tmp/kbo_predict.log 2>&1 &

Writes benchmarks/results/predict.json (``predict_quick.json`` with --quick).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import numpy as np  # noqa: E402

CHUNK = 256


def _texts(limit: int) -> list[str]:
    texts, seen = [], set()
    for split in ("dev", "train"):
        for text in common.sst2_examples(split)[0]:
            if text not in seen:
                seen.add(text)
                texts.append(text)
            if len(texts) >= limit:
                return texts
    return texts


def _cached_full_epoch() -> str | None:
    """The full-epoch bucketed MiniLM fine-tune (latency.json's model) if a run cached it."""
    path = common.bucketed_cache_path(1, 64, 32, 0, common.FINETUNE_PEAK_LEARNING_RATE)
    return path if os.path.isfile(path) else None


def _repeating(texts: list[str], fraction: float, seed: int = 0) -> list[str]:
    """A stream of len(texts): (1 - fraction) distinct texts, the rest repeats of them."""
    rng = random.Random(seed)
    distinct = texts[: int(round(len(texts) * (1 - fraction)))]
    stream = distinct + [rng.choice(distinct) for _ in range(len(texts) - len(distinct))]
    rng.shuffle(stream)
    return stream


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def _one_at_a_time(runner, texts):
    return np.concatenate([runner.predict([t])["labels"] for t in texts])


def _batched(runner, texts):
    return np.concatenate([runner.predict(texts[i:i + CHUNK])["labels"]
                           for i in range(0, len(texts), CHUNK)])


def _hit_cost(runner_factory, texts: list[str]) -> dict:
    """Seconds per text: all-hit lookups vs batch-1 model calls on the same token ids."""
    plain = runner_factory(workers=1, cache_size=0)
    cached = runner_factory(workers=1, cache_size=len(texts) + 1)
    feeds = plain.encode(texts)
    rows = [{k: v[i:i + 1] for k, v in feeds.items()} for i in range(len(texts))]
    call_s, _ = _timed(lambda: [plain.predict_logits(r) for r in rows])
    cached.predict_logits(feeds)  # fill
    before = cached.cache_hits
    hit_s, _ = _timed(lambda: [cached.predict_logits(r) for r in rows])
    assert cached.cache_hits - before == len(texts)
    full_s, _ = _timed(_batched, cached, texts)
    return {"model_call_ms": 1e3 * call_s / len(texts), "hit_ms": 1e3 * hit_s / len(texts),
            "hit_with_tokenizer_ms": 1e3 * full_s / len(texts),
            "hit_over_call": hit_s / call_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a fine-tuned .keras classifier (default: MiniLM)")
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat-fraction", type=float, default=0.3)
    parser.add_argument("--quick", action="store_true", help="200 texts, 1 round (not a result)")
    args = parser.parse_args()
    if args.quick:
        args.texts, args.rounds = 200, 1
    started = time.time()
    from keras_bertopt.export import TFLiteClassifier, to_tflite
    from keras_bertopt.predict import load_model

    texts = _texts(args.texts)
    stream = _repeating(texts, args.repeat_fraction)
    model_path = args.model or _cached_full_epoch()
    model = load_model(model_path) if model_path else common.finetuned_minilm()
    folder = tempfile.mkdtemp(prefix="kbo_predict_")
    shipped, dynamic_batch = (os.path.join(folder, n) for n in ("dyn.tflite", "dyn_b.tflite"))
    to_tflite(model, shipped, "dynamic", latency_runs=0)
    to_tflite(model, dynamic_batch, "dynamic", batch_size=None, latency_runs=0)

    def runner(path=shipped, workers=2, cache_size=0):
        return TFLiteClassifier(path, model.preprocessor, num_threads=1, workers=workers,
                                cache_size=cache_size)

    modes = {
        "one_at_a_time": lambda: (_one_at_a_time, runner(workers=1), texts),
        "batched_2_threads": lambda: (_batched, runner(), texts),
        "batched_2_threads_dynamic_batch": lambda: (_batched, runner(dynamic_batch), texts),
        "repeats_no_cache": lambda: (_batched, runner(), stream),
        "repeats_cache": lambda: (_batched, runner(cache_size=10_000), stream),
    }
    seconds = {name: [] for name in modes}
    labels = {}
    cache_counts = {}
    for round_ in range(args.rounds):
        names = list(modes)
        names = names[round_ % len(names):] + names[:round_ % len(names)]
        for name in names:
            fn, run, data = modes[name]()  # a fresh runner: an empty cache every round
            run.predict(data[:8])  # warm up the interpreters
            run.cache.clear()
            s, out = _timed(fn, run, data)
            seconds[name].append(s)
            labels.setdefault(name, out)
            cache_counts[name] = {"hits": run.cache_hits, "misses": run.cache_misses}
            run.pool.close()
            print(f"round {round_} {name}: {len(data) / s:.1f} texts/s", flush=True)
    hit = _hit_cost(lambda **kw: runner(**kw), texts[:500])
    _report(args, texts, stream, seconds, labels, cache_counts, hit, model_path, started)


def _report(args, texts, stream, seconds, labels, cache_counts, hit, model_path,
            started) -> None:
    rate = {n: len(stream if n.startswith("repeats") else texts) / statistics.median(s)
            for n, s in seconds.items()}
    same_file = ["one_at_a_time", "batched_2_threads"]
    agree = {
        "batched_2_threads_vs_one_at_a_time": bool(np.array_equal(
            labels["batched_2_threads"], labels["one_at_a_time"])),
        "repeats_cache_vs_no_cache": bool(np.array_equal(
            labels["repeats_cache"], labels["repeats_no_cache"])),
        "dynamic_batch_file_vs_shipped_file": float(np.mean(
            labels["batched_2_threads_dynamic_batch"] == labels[same_file[0]])),
    }
    ratios = {
        "batched_2_threads_over_one_at_a_time": rate["batched_2_threads"] / rate["one_at_a_time"],
        "dynamic_batch_2_threads_over_one_at_a_time":
            rate["batched_2_threads_dynamic_batch"] / rate["one_at_a_time"],
        "cache_on_over_off_30pct_repeats": rate["repeats_cache"] / rate["repeats_no_cache"],
        "hit_over_model_call": hit["hit_over_call"],
    }
    for name, value in {**ratios, **agree}.items():
        print(f"{name}: {value:.3f}" if isinstance(value, float) else f"{name}: {value}")
    common.write_result("predict_quick" if args.quick else "predict", {
        "quick": args.quick,
        "model": model_path or "common.finetuned_minilm() (MiniLM-L6, SST-2, 200 steps)",
        "command": "python " + " ".join(sys.argv),
        "budget": {"texts": len(texts), "rounds": args.rounds, "chunk": CHUNK,
                   "repeat_fraction": args.repeat_fraction, "interpreter_threads": 1,
                   "workers": 2, "hit_cost_texts": 500},
        "files": {"shipped": "to_tflite(model, path, 'dynamic'): default layout, batch 1",
                  "dynamic_batch": "to_tflite(model, path, 'dynamic', batch_size=None)"},
        "examples_per_second": rate,
        "seconds_per_round": seconds,
        "ratios": ratios,
        "targets": {"batched_2_threads_over_one_at_a_time": ">= 1.8",
                    "cache_on_over_off_30pct_repeats": ">= 1.35",
                    "hit_over_model_call": "<= 0.02"},
        "label_agreement": agree,
        "cache_counts_last_round": cache_counts,
        "hit_cost": hit,
        "hours": (time.time() - started) / 3600,
    })


if __name__ == "__main__":
    main()
