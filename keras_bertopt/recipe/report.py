"""The recipe's report: ``report.json``, ``report.md`` and ``report.png``.

Built from the recipe's ``state.json`` (see `keras_bertopt.recipe`): per stage
its wall time, training history and sparsity; per Keras model and per TFLite
file the accuracy / F1 on each evaluated split, file size and gzip size,
sparsity, TFLite latency and agreement with the Keras model. The PNG shows
accuracy against model size for every stage and export mode, and the training
curves of every training stage. Every file is written through
`keras_bertopt.files` (temporary name, then rename).

Example:

```python
import json
state = json.load(open("runs/demo/state.json"))
keras_bertopt.recipe.report.write_report("runs/demo", state)
```
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from typing import Any, Mapping

from keras_bertopt import files

REPORT_FILES = ("report.json", "report.md", "report.png")


def machine_info() -> dict[str, Any]:
    """Date, cores, platform and library versions (recorded with every report)."""
    info: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    for module in ("tensorflow", "keras", "keras_hub"):
        try:
            info[f"{module}_version"] = __import__(module).__version__
        except ImportError:  # pragma: no cover - all are dependencies
            info[f"{module}_version"] = None
    return info


def build_report(state: Mapping[str, Any]) -> dict[str, Any]:
    """The report dict (what ``report.json`` holds) from a recipe state.

    Keys: ``machine``, ``config``, ``stages`` (one row per completed stage),
    ``models`` (Keras models: sizes and metrics per split), ``exports`` (TFLite
    files: sizes, metrics, agreement, latency), ``splits`` and ``curves``.
    """
    stages_state = state.get("stages", {})
    stages = []
    for name in state.get("completed", []):
        result = stages_state.get(name, {})
        row: dict[str, Any] = {"stage": name, "seconds": result.get("seconds")}
        history = result.get("history") or {}
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "examples_per_second"):
            if history.get(key):
                row[key] = history[key][-1]
        if "steps" in result:
            row["steps"] = result["steps"]
        sparsity = result.get("sparsity")
        if isinstance(sparsity, Mapping) and "pruned_variables" in sparsity:
            row["sparsity"] = sparsity["pruned_variables"]
        stages.append(row)

    evaluation = stages_state.get("evaluate", {})
    models = [dict(item) for item in evaluation.get("models", [])]
    exports = []
    source = evaluation.get("exports") or stages_state.get("export", {}).get("files", [])
    for item in source:
        entry = dict(item)
        export_report = item.get("export_report") or {}
        entry.setdefault("latency_ms", export_report.get("latency_ms"))
        # Zeros among all constant weights of rank >= 2 in the file (as "overall" for Keras).
        entry["sparsity"] = export_report.get("all_weight_sparsity")
        entry["matmul_weight_sparsity"] = export_report.get("weight_sparsity")
        entry["max_abs_logit_diff"] = export_report.get("max_abs_logit_diff")
        entry["int8_ops"] = export_report.get("int8_ops")
        exports.append(entry)
    float32 = [e for e in exports if e["quantization"] == "none"]
    dense = [e for e in float32 if e["stage"] == "finetune"]
    baseline = (dense or float32 or [None])[0]
    for entry in exports:
        if baseline is not None and baseline.get("size_bytes") and baseline.get("gzip_bytes"):
            entry["size_vs_float32"] = entry["size_bytes"] / baseline["size_bytes"]
            entry["gzip_vs_float32_gzip"] = entry["gzip_bytes"] / baseline["gzip_bytes"]
    return {
        "machine": machine_info(),
        "size_baseline": baseline["name"] if baseline is not None else None,
        "config": state.get("config", {}),
        "completed": list(state.get("completed", [])),
        "stages": stages,
        "splits": list(evaluation.get("splits", [])),
        "models": models,
        "exports": exports,
        "curves": list(state.get("curves", [])),
        "importance": stages_state.get("prune_structure", {}).get("importance"),
        "target": stages_state.get("target"),
    }


def panels(report: Mapping[str, Any]) -> list[str]:
    """The panels `render_png` draws: always size and curves; latency when a file was
    timed; head importance when the recipe pruned structure."""
    out = ["size", "curves"]
    if any(e.get("latency_ms") for e in report.get("exports", [])):
        out.append("latency")
    if (report.get("importance") or {}).get("heads"):
        out.append("importance")
    return out


def format_number(value: Any, spec: str = ".4f") -> str:
    """`value` formatted with `spec`; ``-`` for None (a number not measured)."""
    if value is None:
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, spec)
    return str(value)


def _mb(n: Any) -> str:
    return "-" if n is None else f"{n / 1e6:.3f}"


def render_markdown(report: Mapping[str, Any]) -> str:
    """``report.md``: stage times, then one row per Keras model and TFLite file."""
    m = report["machine"]
    lines = [
        "# keras-bertopt report",
        "",
        f"{m['date_utc']} on {m['cpu_count']} cores ({m['platform']}); TensorFlow "
        f"{m['tensorflow_version']}, Keras {m['keras_version']}, keras-hub "
        f"{m['keras_hub_version']}.",
        "",
        "## Stages",
        "",
        "| stage | wall time (s) | steps | final loss | val accuracy | pruned-kernel sparsity |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["stages"]:
        lines.append(
            f"| {row['stage']} | {format_number(row.get('seconds'), '.1f')}"
            f" | {format_number(row.get('steps'), 'd')}"
            f" | {format_number(row.get('loss'))} | {format_number(row.get('val_accuracy'))}"
            f" | {format_number(row.get('sparsity'), '.3f')} |"
        )
    splits = report["splits"]
    if report["models"] or report["exports"]:
        head = ["model", "format", "size (MB)", "gzip (MB)", "sparsity (all weights)"]
        for split in splits:
            head += [f"{split} accuracy", f"{split} F1"]
        head += ["agreement with Keras", "latency b=1 (ms)", "gzip vs float32 gzip"]
        lines += ["", "## Models and files", "", "| " + " | ".join(head) + " |",
                  "| " + " | ".join(["---"] + ["---:"] * (len(head) - 1)) + " |"]
        for item in report["models"]:
            cells = [item["stage"], "keras", _mb(item.get("size_bytes")),
                     _mb(item.get("gzip_bytes")), format_number(item.get("sparsity"), ".3f")]
            for split in splits:
                met = item.get("metrics", {}).get(split, {})
                cells += [format_number(met.get("accuracy")), format_number(met.get("f1"))]
            cells += ["-", "-", "-"]
            lines.append("| " + " | ".join(cells) + " |")
        for item in report["exports"]:
            cells = [item["stage"], f"tflite {item['quantization']}", _mb(item.get("size_bytes")),
                     _mb(item.get("gzip_bytes")), format_number(item.get("sparsity"), ".3f")]
            for split in splits:
                met = item.get("metrics", {}).get(split, {})
                cells += [format_number(met.get("accuracy")), format_number(met.get("f1"))]
            agreement = item.get("agreement_with_keras", {})
            cells.append(format_number(agreement.get(splits[0]) if splits else None))
            cells.append(format_number(item.get("latency_ms"), ".2f"))
            cells.append(format_number(item.get("gzip_vs_float32_gzip"), ".3f"))
            lines.append("| " + " | ".join(cells) + " |")
    target = report.get("target")
    if target:
        from keras_bertopt.compress.report import versus_float

        lines += ["", "## Target", "",
                  f"Ship `{target['file']}` ({target['candidate']}): "
                  f"{target['latency_ratio']:.4g}x the float32 fixed-length file's time per "
                  f"sentence ({target['latency_ms']:.4g} ms), {target['validation_split']} "
                  f"accuracy {target['accuracy']:.4f}, {versus_float(target['accuracy_drop_pt'])}; "
                  f"every candidate in `{target['report']}`."]
    if report.get("size_baseline"):
        lines += ["", f"Size ratios are against `{report['size_baseline']}.tflite`."]
    lines += ["", "Files: `report.json` (everything above and the training curves), "
              "`report.png` (accuracy vs size, training curves).", ""]
    return "\n".join(lines)


def render_png(report: Mapping[str, Any], path: str) -> None:
    """Accuracy vs model size (file and gzip) and the training curves, via matplotlib Agg."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    names = panels(report)
    fig, axes = plt.subplots(1, len(names), figsize=(6.5 * len(names), 5))
    split = report["splits"][0] if report["splits"] else None
    cmap = plt.get_cmap("tab10")
    _size_panel(axes[0], report, split, cmap)
    _curves_panel(axes[1], report["curves"], cmap)
    if "latency" in names:
        _latency_panel(axes[names.index("latency")], report, split, cmap)
    if "importance" in names:
        _importance_panel(fig, axes[names.index("importance")], report["importance"])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _size_panel(ax: Any, report: Mapping[str, Any], split: str | None, cmap: Any) -> None:
    """Accuracy against file size (filled) and gzip size (hollow), log scale."""
    import matplotlib.ticker

    points = [(f"{item['stage']} (keras)", item, "o") for item in report["models"]]
    points += [(f"{item['stage']} tflite {item['quantization']}", item, "s")
               for item in report["exports"]]
    plotted = 0
    for i, (label, item, marker) in enumerate(points):
        accuracy = item.get("metrics", {}).get(split, {}).get("accuracy") if split else None
        if accuracy is None or not item.get("size_bytes"):
            continue
        color = cmap(i % 10)
        ax.scatter(item["size_bytes"] / 1e6, accuracy, marker=marker, color=color, s=60,
                   label=label)
        if item.get("gzip_bytes"):
            ax.scatter(item["gzip_bytes"] / 1e6, accuracy, marker=marker, s=60,
                       facecolors="none", edgecolors=color)
        plotted += 1
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("model size (MB, log scale; hollow = gzip)")
    ax.set_ylabel(f"{split} accuracy" if split else "accuracy")
    ax.set_title("Accuracy vs model size, every stage and export mode")
    ax.grid(True, alpha=0.3)
    if plotted:
        ax.legend(fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, "no evaluation yet", ha="center", transform=ax.transAxes)


def _curves_panel(ax: Any, curves: list[Mapping[str, Any]], cmap: Any) -> None:
    """Loss (solid) and accuracy (dashed) of every training stage, one step axis."""
    stages = list(dict.fromkeys(point["stage"] for point in curves))
    ax_acc = ax.twinx()
    offset = 0
    for i, stage in enumerate(stages):
        pts = [p for p in curves if p["stage"] == stage]
        steps = [offset + p["step"] for p in pts]
        color = cmap(i % 10)
        ax.plot(steps, [p.get("loss") for p in pts], color=color, label=f"{stage} loss")
        if any("accuracy" in p for p in pts):
            ax_acc.plot(steps, [p.get("accuracy") for p in pts], color=color, linestyle="--",
                        label=f"{stage} accuracy")
        if offset:
            ax.axvline(offset, color="gray", linewidth=0.8)
        offset = max(steps) if steps else offset
    ax.set_xlabel("training step (all stages)")
    ax.set_ylabel("training loss (solid)")
    ax_acc.set_ylabel("training accuracy (dashed)")
    ax.set_title("Training curves (Keras running means, reset each epoch)")
    ax.grid(True, alpha=0.3)
    if stages:
        ax.legend(fontsize=7, loc="upper right")


def _latency_panel(ax: Any, report: Mapping[str, Any], split: str | None, cmap: Any) -> None:
    """Accuracy against batch-1 latency of every timed TFLite file."""
    for i, item in enumerate(report["exports"]):
        accuracy = item.get("metrics", {}).get(split, {}).get("accuracy") if split else None
        if not item.get("latency_ms") or accuracy is None:
            continue
        ax.scatter(item["latency_ms"], accuracy, marker="s", s=60, color=cmap(i % 10),
                   label=f"{item['stage']} {item['quantization']}")
    ax.set_xlabel("batch-1 latency (ms, median, this machine)")
    ax.set_ylabel(f"{split} accuracy" if split else "accuracy")
    ax.set_title("Accuracy vs TFLite latency")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def _importance_panel(fig: Any, ax: Any, importance: Mapping[str, Any]) -> None:
    """Attention-head importance (layers x heads) the structured pruning used."""
    heads = importance["heads"]
    width = max(len(row) for row in heads)
    grid = [[row[j] if j < len(row) else float("nan") for j in range(width)] for row in heads]
    image = ax.imshow(grid, aspect="auto", cmap="viridis")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xlabel("head")
    ax.set_ylabel("transformer layer")
    ax.set_title(f"Head importance ({importance.get('method', '')}; low = pruned first)")


def write_report(output_dir: str, state: Mapping[str, Any]) -> list[str]:
    """Write ``report.json``, ``report.md`` and ``report.png`` into `output_dir`.

    Returns:
        The three paths written.
    """
    if not os.path.isdir(output_dir):
        raise FileNotFoundError(f"`output_dir` {output_dir!r} is not a directory")
    report = build_report(state)
    json_path = os.path.join(output_dir, "report.json")
    md_path = os.path.join(output_dir, "report.md")
    png_path = os.path.join(output_dir, "report.png")
    files.write_text(json_path, json.dumps(report, indent=2) + "\n")
    files.write_text(md_path, render_markdown(report))
    with files.atomic_output(png_path) as tmp:
        render_png(report, tmp)
    return [json_path, md_path, png_path]
