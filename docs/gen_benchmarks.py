"""mkdocs hook: the tables of docs/benchmarks.md, built from benchmarks/results/*.json.

`docs/benchmarks.md` holds the prose and three markers, each replaced at build time:

* ``<!-- results:summary -->``: every measured number beside its target, the rows of
  `benchmarks/run_all.py` (`build_rows`, the same code that writes ``summary.md``), with the
  date of the JSON it comes from; rows from a stale result are marked.
* ``<!-- results:runs -->``: one line per result file: date, library versions, budget, the
  command that produced it, wall time, and whether it is stale.
* ``<!-- results:latency -->``: the per-file table of ``latency.json``;
* ``<!-- results:latency_layouts -->``: the same table of ``latency_layouts.json`` (the
  default real-length file against length buckets and fixed 128);
* ``<!-- results:mediapipe -->``: MediaPipe's `TextClassifier` timing of
  ``latency_layouts.json``;
* ``<!-- results:lengths -->``: SST-2 token lengths from ``sst2_lengths.json``.

A result is stale when it was measured on other TensorFlow / Keras / keras-hub versions than
the newest result, or more than `STALE_AFTER_DAYS` days before it (the code it measured has
moved on since). Nothing here is hand-copied: re-run a benchmark and rebuild the site.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import sys
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results")
PAGE = "benchmarks.md"
STALE_AFTER_DAYS = 7
VERSION_KEYS = ("tensorflow_version", "keras_version", "keras_hub_version")

#: How results written before the JSON files recorded their command were produced (the
#: commands quoted beside their numbers when they were measured). New results carry
#: ``command`` themselves (benchmarks/common.py `write_result`).
DOCUMENTED_COMMANDS = {
    "callback_overhead": "python benchmarks/callback_overhead.py --model minilm",
    "distillation": "python benchmarks/distillation.py --teacher <full-epoch fine-tune> "
                    "--examples 2048",
    "int8_file_size": "python benchmarks/int8_file_size.py",
    "latency": "python benchmarks/latency.py --model <full-epoch fine-tune> --qat-steps 200 "
               "--qat-distill --rounds 3",
    "op_profile": "python benchmarks/op_profile.py a.tflite b.tflite --length 32",
    "pruning_sweep": "python benchmarks/pruning_sweep.py",
    "quantization": "python benchmarks/quantization.py",
    "recipe_minilm": "python benchmarks/recipe_minilm.py",
    "sst2_lengths": "python benchmarks/sst2_lengths.py",
    "structured_pruning": "python benchmarks/structured_pruning.py --model <full-epoch "
                          "fine-tune> --recovery-examples 2048 --rounds 3 --runs 15",
    "structured_pruning_sparse": "python benchmarks/structured_pruning.py --model <full-epoch "
                                 "fine-tune> --sparse-only --rounds 1 --runs 15",
    "throughput": "python benchmarks/throughput.py --configs padded,bucketed,bucketed_bf16 "
                  "--rounds 2 --steps 4 --accuracy-steps 0",
}

#: Names on the page of latency.json's file keys (``<mode>/<layout>``); unknown parts show as
#: they are, so a new mode or layout appears in the table without a change here.
LATENCY_MODES = {
    "float32": "float32", "float16": "float16", "dynamic": "dynamic-range",
    "ptq_int8": "post-training int8", "qat_int8": "QAT int8",
    "qat_dynamic": "QAT with dynamic activations", "qat_fully_integer": "fully-integer QAT",
}
LATENCY_LAYOUTS = {
    "fixed128": "fixed 128", "real_length": "length buckets", "buckets": "length buckets",
    "default": "default layout", "dynamic_length": "one dynamic-length signature",
    "real_length_x2": "buckets 16/32/64/128",
}


def _run_all() -> Any:
    """benchmarks/run_all.py as a module (it is a script, not part of the package)."""
    folder = os.path.join(REPO, "benchmarks")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import run_all

    return run_all


def _date(data: dict[str, Any]) -> datetime.date | None:
    text = str(data.get("machine", {}).get("date_utc") or "")[:10]
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        return None


def load_results(folder: str = RESULTS) -> dict[str, dict[str, Any]]:
    """Every full-run result file, by name (smoke runs, ``*_quick.json``, left out)."""
    results = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        name = os.path.basename(path)[:-5]
        if name.endswith("_quick") or name.startswith("run_all"):
            continue
        with open(path, encoding="utf-8") as f:
            results[name] = json.load(f)
    return results


def staleness(results: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Why each stale result is stale, by name ("" for a current one)."""
    dated = {n: d for n, d in results.items() if _date(d) is not None}
    if not dated:
        return {name: "" for name in results}
    newest_name = max(dated, key=lambda n: _date(dated[n]))
    newest, machine = _date(dated[newest_name]), dated[newest_name]["machine"]
    reasons = {}
    for name, data in results.items():
        m, date, why = data.get("machine", {}), _date(data), []
        if date is None:
            why.append("no date recorded")
        elif (newest - date).days > STALE_AFTER_DAYS:
            why.append(f"{(newest - date).days} days older than the newest result")
        versions = [k for k in VERSION_KEYS if m.get(k) and m.get(k) != machine.get(k)]
        if not any(m.get(k) for k in VERSION_KEYS):
            why.append("library versions not recorded")
        elif versions:
            why.append("other versions (" + ", ".join(
                f"{k.replace('_version', '')} {m[k]}" for k in versions) + ")")
        reasons[name] = "; ".join(why)
    return reasons


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _budget(data: dict[str, Any]) -> str:
    budget = data.get("budget")
    if isinstance(budget, dict):
        return ", ".join(f"{k} {v}" for k, v in budget.items())
    return _cell(budget) if budget else "see the JSON file"


def _command(name: str, data: dict[str, Any]) -> str:
    command = data.get("command") or DOCUMENTED_COMMANDS.get(name)
    return f"`{command}`" if command else "not recorded"


def _hours(data: dict[str, Any]) -> str:
    seconds = data.get("wall_seconds") or data.get("seconds")
    return f"{float(seconds) / 3600:.2f} h" if isinstance(seconds, (int, float)) else "-"


def summary_table(results: dict[str, dict[str, Any]]) -> str:
    stale = staleness(results)
    rows, _ = _run_all().build_rows(quick=False)
    lines = ["| what | measured | target | status | date | source |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        what, shown, target, status, source = row.cells()
        data = results.get(source, {})
        if stale.get(source) and row.value is not None:
            status += " (stale)"
        date = _date(data)
        lines.append(f"| {what} | {shown} | {target} | {status} | {date or '-'} "
                     f"| [`{source}.json`](#{source}) |")
    return "\n".join(lines)


def runs_table(results: dict[str, dict[str, Any]]) -> str:
    stale = staleness(results)
    lines = ["| result | date | TensorFlow / Keras / keras-hub | budget | command | wall | stale |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, data in results.items():
        m = data.get("machine", {})
        versions = " / ".join(str(m.get(k) or "?") for k in VERSION_KEYS)
        lines.append(
            f'| <span id="{name}"></span>`{name}.json` | {_date(data) or "-"} | {versions} '
            f"| {_budget(data)} | {_command(name, data)} | {_hours(data)} "
            f"| {stale[name] or 'current'} |")
    return "\n".join(lines)


def latency_table(results: dict[str, dict[str, Any]], name: str = "latency") -> str:
    """One row per file of ``<name>.json``, in its order; paired ratios against the
    dynamic-range file of the same layout (or the one dynamic-range file it was paired with)."""
    files = results.get(name, {}).get("files") or {}
    lines = ["| file | median ms | p90 ms | x float32 fixed-128 | x dynamic-range (paired) "
             "| SST-2 dev | MB |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for key, f in files.items():
        mode, _, layout = key.partition("/")
        label = f"{LATENCY_MODES.get(mode, mode)}, {LATENCY_LAYOUTS.get(layout, layout)}"
        against = {k: v for k, v in (f.get("paired_ratios") or {}).items()
                   if k.startswith("dynamic/")}
        paired = against.get(f"dynamic/{layout}")
        if paired is None and len(against) == 1:
            paired = next(iter(against.values()))
        elif paired is None and mode == "dynamic":
            paired = 1.0                         # the reference itself
        ratio = f.get("median_vs_float32_fixed128")
        lines.append(
            f"| {label} | {f['median_ms']:.2f} | {f['p90_ms']:.2f} "
            f"| {'-' if ratio is None else f'{ratio:.3f}x'} "
            f"| {'-' if paired is None else f'{paired:.2f}x'} "
            f"| {100 * f['accuracy']:.2f} | {f['size_bytes'] / 1e6:.1f} |")
    return "\n".join(lines)


def mediapipe_table(results: dict[str, dict[str, Any]], name: str = "latency_layouts") -> str:
    """MediaPipe's TextClassifier per sentence on the default and the fixed-128 metadata file,
    beside `TFLiteClassifier` on the default file (paired per sentence)."""
    data = results.get(name, {}).get("mediapipe") or {}
    names = {"mediapipe_default": "MediaPipe `TextClassifier`, default file (real length)",
             "mediapipe_fixed": "MediaPipe `TextClassifier`, fixed-128 metadata file",
             "tflite_classifier_default": "`TFLiteClassifier.predict`, default file"}
    lines = ["| runtime and file | median ms per sentence | x fixed-128 in MediaPipe (paired) "
             "| SST-2 dev |", "| --- | --- | --- | --- |"]
    for key, row in (data.get("files") or {}).items():
        lines.append(f"| {names.get(key, key)} | {row['median_ms']:.2f} "
                     f"| {row['paired_vs_mediapipe_fixed']:.3f}x | {100 * row['accuracy']:.2f} |")
    if data:
        agreement = data["label_agreement_mediapipe_default_vs_tflite_classifier"]
        lines.append(f"\nLabel agreement, MediaPipe (default file) with `TFLiteClassifier`: "
                     f"{agreement:.4f} over {data['sentences']} sentences, {data['rounds']} "
                     "rounds.")
    return "\n".join(lines)


def lengths_table(results: dict[str, dict[str, Any]]) -> str:
    data = results.get("sst2_lengths", {})
    lines = ["| split | n | mean | p50 | p90 | p95 | p99 | max | truncated at 32 | at 64 "
             "| at 128 | suggested (<= 1% cut) |", "|" + " --- |" * 12]
    for split in ("train", "dev"):
        d = data.get(split)
        if not d:
            continue
        p, cut = d["percentiles"], d["truncated_share"]
        lines.append(
            f"| {split} | {d['count']:,} | {d['mean']:.1f} | {p['p50']} | {p['p90']} "
            f"| {p['p95']} | {p['p99']} | {p['max']} | "
            + " | ".join(f"{100 * cut[k]:.3g}%" for k in ("32", "64", "128"))
            + f" | {d['suggested_sequence_length_1pct']} |")
    return "\n".join(lines)


MARKERS = {
    "<!-- results:summary -->": summary_table,
    "<!-- results:runs -->": runs_table,
    "<!-- results:latency -->": latency_table,
    "<!-- results:latency_layouts -->": lambda results: latency_table(results, "latency_layouts"),
    "<!-- results:mediapipe -->": mediapipe_table,
    "<!-- results:lengths -->": lengths_table,
}


def render(markdown: str, folder: str = RESULTS) -> str:
    """`markdown` with each marker replaced by its table."""
    results = load_results(folder)
    for marker, table in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, table(results))
    return markdown


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """The mkdocs hook: fills the markers of docs/benchmarks.md."""
    if page.file.src_path != PAGE:
        return markdown
    return render(markdown)
