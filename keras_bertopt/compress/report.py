"""report.md and report.png of a compress-to-target search: every candidate's latency and
accuracy, the file to ship. Pure formatting of the search state (a dict, as in the state file).

Example:

```python
from keras_bertopt.compress.report import front_figure, render

text = render(state)           # the report.md text
figure = front_figure(state)   # matplotlib Figure: latency of every candidate, the front
```
"""

from __future__ import annotations

from typing import Any


def _cell(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _rows(state: dict[str, Any]) -> list[str]:
    trials = {t["name"]: t for t in state.get("trials", [])}
    lines = ["| candidate | layers | heads | FFN | latency ms | x float32 fixed | meets latency "
             "| accuracy | drop (pt) | file |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in state.get("candidates", []):
        trial = trials.get(c["name"], {})
        lines.append(
            f"| {c['name']} | {c['layers']} | {c['heads']} | {c['intermediate']} "
            f"| {_cell(trial.get('median_ms', c['median_ms']))} "
            f"| {_cell(trial.get('ratio', c['ratio']))} "
            f"| {'yes' if c['meets_latency'] else 'no'} | {_cell(trial.get('accuracy'))} "
            f"| {_cell(trial.get('accuracy_drop'), 3)} | {trial.get('file', '-')} |")
    return lines


def versus_float(drop_pt: float) -> str:
    """An accuracy drop in points, in words: ``"1.03 pt below the float model"``, or
    ``"0.803 pt above the float model"`` for a negative drop (the smaller model scored higher)."""
    if drop_pt == 0:
        return "the float model's accuracy"
    return f"{abs(drop_pt):.3g} pt {'below' if drop_pt > 0 else 'above'} the float model"


def render(state: dict[str, Any]) -> str:
    """The report text for a search state (see `keras_bertopt.compress.search`)."""
    outcome = state.get("outcome") or {}
    lines = ["# Compress to target", "", f"Target: {state['target_text']}.", "",
             f"Float model accuracy on validation: {state['baseline_accuracy']:.4f}; "
             f"reference: the float32 fixed-{state.get('reference_file_length', 'length')} file, "
             f"{state['reference_ms']:.4g} ms per sentence (median, batch 1, one thread).", ""]
    if outcome.get("met"):
        lines += [f"**Ship `{outcome['file']}`** ({outcome['name']}): "
                  f"{outcome['ratio']:.4g}x the float32 fixed-length time, "
                  f"{outcome['median_ms']:.4g} ms, accuracy {outcome['accuracy']:.4f} "
                  f"({versus_float(outcome['accuracy_drop'])}).", ""]
    elif outcome:
        best = outcome.get("file")
        lines += [f"**Target not met**: {outcome['reason']}",
                  f"Best file found: `{best}`." if best else "No file was made.", ""]
    else:
        lines += ["Search in progress (resume with the same command).", ""]
    lines += ["Candidates, fastest first among those timed (latency measured on exported "
              "files at real lengths, paired with the reference file per sentence):", ""]
    lines += _rows(state)
    lines += ["", f"Recovery: {state.get('recovery_text', '')}", "",
              "`report.png`: every candidate's measured latency, and accuracy against latency "
              "of the recovered ones (the front).", ""]
    return "\n".join(lines)


def front_figure(state: dict[str, Any]) -> Any:
    """A matplotlib Figure (Agg) of a search state: left, the measured latency of every
    candidate; right, accuracy against latency of every recovered candidate, the shipped
    one starred. Close it with ``matplotlib.pyplot.close(figure)``."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    candidates = state.get("candidates", [])
    for meets, color, label in ((True, "tab:green", "meets the latency"),
                                (False, "tab:gray", "too slow")):
        rows = [(i, c) for i, c in enumerate(candidates) if c["meets_latency"] == meets]
        if rows:
            left.scatter([c["ratio"] for _, c in rows], [i for i, _ in rows], color=color,
                         s=50, label=label)
    left.set_yticks(range(len(candidates)), [c["name"] for c in candidates], fontsize=7)
    left.invert_yaxis()
    _latency_axis(left, "Measured latency of every candidate (exported, before recovery)")
    if candidates:
        left.legend(fontsize=8, loc="best")
    _front_panel(right, state)
    fig.tight_layout()
    return fig


def _latency_axis(ax: Any, title: str) -> None:
    ax.set_xscale("log")
    ax.set_xlabel("time per sentence / float32 fixed-length file's (log scale)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)


def _front_panel(ax: Any, state: dict[str, Any]) -> None:
    """Accuracy against latency ratio of the recovered candidates; the shipped one starred."""
    trials = state.get("trials", [])
    if trials:
        ax.scatter([t["ratio"] for t in trials], [t["accuracy"] for t in trials], s=50,
                   color="tab:blue", label="recovered candidate")
        for t in trials:
            ax.annotate(t["name"], (t["ratio"], t["accuracy"]), fontsize=7,
                        textcoords="offset points", xytext=(4, 4))
    outcome = state.get("outcome") or {}
    if outcome.get("met"):
        ax.scatter([outcome["ratio"]], [outcome["accuracy"]], marker="*", s=250,
                   color="tab:orange", label=f"ship {outcome['name']}")
    if state.get("baseline_accuracy") is not None:
        ax.axhline(state["baseline_accuracy"], color="black", linewidth=0.8,
                   label="float model")
    _latency_axis(ax, "Accuracy vs latency of the recovered candidates (the front)")
    ax.set_ylabel("validation accuracy (of the exported file)")
    if trials:
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no candidate recovered yet", ha="center", transform=ax.transAxes)


def write_png(state: dict[str, Any], path: str) -> str:
    """`front_figure(state)` saved as a PNG at `path` (temp name, then renamed)."""
    import matplotlib.pyplot as plt

    from keras_bertopt.files import atomic_output

    fig = front_figure(state)
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path
