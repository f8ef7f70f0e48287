"""report.md of a compress-to-target search: every candidate's latency and accuracy, the file
to ship. Pure formatting of the search state (a dict, as in the state file)."""

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


def render(state: dict[str, Any]) -> str:
    """The report text for a search state (see `keras_bertopt.compress.search`)."""
    outcome = state.get("outcome") or {}
    lines = ["# Compress to target", "", f"Target: {state['target_text']}.", "",
             f"Float model accuracy on validation: {state['baseline_accuracy']:.4f}; "
             f"reference: the float32 fixed-length file, "
             f"{state['reference_ms']:.4g} ms per sentence (median, batch 1, one thread).", ""]
    if outcome.get("met"):
        lines += [f"**Ship `{outcome['file']}`** ({outcome['name']}): "
                  f"{outcome['ratio']:.4g}x the float32 fixed-length time, "
                  f"{outcome['median_ms']:.4g} ms, accuracy {outcome['accuracy']:.4f} "
                  f"({outcome['accuracy_drop']:.3g} pt below the float model).", ""]
    elif outcome:
        best = outcome.get("file")
        lines += [f"**Target not met**: {outcome['reason']}",
                  f"Best file found: `{best}`." if best else "No file was made.", ""]
    else:
        lines += ["Search in progress (resume with the same command).", ""]
    lines += ["Candidates, fastest first among those timed (latency measured on exported "
              "files at real lengths, paired with the reference file per sentence):", ""]
    lines += _rows(state)
    lines += ["", f"Recovery: {state.get('recovery_text', '')}", ""]
    return "\n".join(lines)
