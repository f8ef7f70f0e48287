"""`compress_to_target`: the fastest file that keeps the accuracy, found by measurement.

The search, every step recorded in ``<output_dir>/state.json`` so that a killed
run started again with the same arguments continues where it stopped (a
candidate being recovered when the run died is recovered again):

1. the fine-tuned float model's accuracy on the validation sentences (the
   baseline the drop is counted from);
2. every candidate shape (`candidate_shapes`) is pruned, exported in the
   device's quantization at real lengths and timed, paired per sentence with
   the float32 fixed-length file (`keras_bertopt.compress.timing`);
3. the candidates meeting the latency (only those no other one beats on speed,
   depth and size at once: the front, fewest layers and weights first,
   `trial_order`) are tried: pruned by Taylor importance, recovered by
   distillation from the model's cached logits, exported, timed again and
   evaluated as a file. The first (the smallest) is tried first; if it loses
   more than `max_accuracy_drop`, the search bisects the rest of the front (a
   candidate that lost too much rules out the ones before it, one that kept the
   accuracy the ones after it), at most `max_trials` recoveries. The fastest
   file within both budgets is shipped;
4. report.md names the file to ship, with every candidate's latency and accuracy;
   report.png plots them (the front).

When no candidate meets the latency, the fastest one is recovered anyway and
`TargetNotMet` is raised naming it as the best file found; when none of the
tried ones keeps the accuracy, the most accurate is the best file found.

Example:

```python
result = compress_to_target(model, {"latency": 0.05, "max_accuracy_drop": 1.0},
                            (train_texts, train_labels), (val_texts, val_labels), "out/")
result.file            # "out/L3-H12-F1536.tflite"
```
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping, Sequence

import numpy as np

from keras_bertopt.compress import recover, timing
from keras_bertopt.compress.candidates import Candidate, candidate_shapes, model_shape
from keras_bertopt.compress.report import render, write_png
from keras_bertopt.compress.target import Target, parse_target

STATE_FILE = "state.json"
REPORT_FILE = "report.md"
PLOT_FILE = "report.png"
STATE_VERSION = 1


class TargetNotMet(RuntimeError):
    """No candidate met the target; `best_file` is the best file found (or None)."""

    def __init__(self, message: str, best_file: str | None, state: dict[str, Any]) -> None:
        super().__init__(message)
        self.best_file = best_file
        self.state = state


@dataclasses.dataclass(frozen=True)
class CompressResult:
    """The shipped file and its measurements (accuracy drop in points)."""

    file: str
    name: str
    accuracy: float
    baseline_accuracy: float
    accuracy_drop: float
    ratio: float
    median_ms: float
    report: str


def _check_data(data: Any, name: str) -> tuple[list[str], list[int]]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"`{name}` must be a (texts, labels) pair")
    texts, labels = list(data[0]), [int(y) for y in data[1]]
    if not texts or len(texts) != len(labels) or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"`{name}` must hold as many labels as texts (strings), at least one; "
                         f"got {len(texts)} texts and {len(labels)} labels")
    return texts, labels


def _save(output_dir: str, state: dict[str, Any]) -> None:
    from keras_bertopt.files import write_text

    write_text(os.path.join(output_dir, STATE_FILE), json.dumps(state, indent=2) + "\n")
    write_text(os.path.join(output_dir, REPORT_FILE), render(state))
    write_png(state, os.path.join(output_dir, PLOT_FILE))


def _load_state(output_dir: str, fingerprint: dict[str, Any]) -> dict[str, Any]:
    path = os.path.join(output_dir, STATE_FILE)
    if not os.path.isfile(path):
        return {"version": STATE_VERSION, **fingerprint, "trials": []}
    with open(path, encoding="utf-8") as f:
        state = json.load(f)
    for key, value in fingerprint.items():
        if state.get(key) != value:
            raise ValueError(f"`output_dir` {output_dir!r} holds a search with another {key} "
                             f"({state.get(key)!r}, now {value!r}): use a new folder")
    return state


def _accuracy(model: Any, texts: list[str], labels: list[int]) -> float:
    predicted = []
    for start in range(0, len(texts), 64):
        logits = np.asarray(model.predict_on_batch(texts[start:start + 64]))
        predicted.extend(np.argmax(logits, axis=-1).tolist())
    return float(np.mean(np.asarray(predicted) == np.asarray(labels)))


def _time_candidates(model: Any, target: Target, candidates: Sequence[Candidate],
                     output_dir: str, texts: list[str], calibration: list[str],
                     how: tuple[int, int, int | None]) -> tuple[list[dict], float]:
    rounds, sentences, reference_length = how
    folder = os.path.join(output_dir, "timing")
    os.makedirs(folder, exist_ok=True)
    reference = timing.export_reference(model, os.path.join(output_dir, "reference.tflite"),
                                        reference_length)
    files = {}
    for candidate in candidates:
        small = recover.prune_to(model, candidate)
        files[candidate.name] = timing.export_candidate(
            small, os.path.join(folder, f"{candidate.name}.tflite"), target.quantization,
            calibration if target.quantization == "int8" else None)
    measured = timing.time_files(files, reference, model.preprocessor, texts,
                                 rounds=rounds, max_sentences=sentences)
    rows = []
    for candidate in candidates:
        m = measured[candidate.name]
        rows.append({**candidate.to_dict(), "median_ms": m["median_ms"], "ratio": m["ratio"],
                     "meets_latency": target.meets_latency(m["ratio"], m["median_ms"])})
        os.remove(files[candidate.name])
    rows.sort(key=lambda r: (r["ratio"], r["median_ms"]))
    return rows, measured[timing.REFERENCE]["median_ms"]


def trial_order(rows: list[dict], hidden_dim: int, key_dim: int) -> list[dict]:
    """Candidates to try, in the order the search bisects: those meeting the latency that no
    other one beats on speed, depth and size at once (the front), fewest layers first, then
    fewest encoder weights, then fastest; with none meeting it, the fastest candidate alone.

    A deeper shape stays on the front even when a shallower one is faster and has more weights:
    on MiniLM the recovered accuracy follows the layer count more than the weight count.
    """
    feasible = [r for r in rows if r["meets_latency"]]
    if not feasible:
        return rows[:1]
    size = {r["name"]: Candidate.from_dict(r).encoder_parameters(hidden_dim, key_dim)
            for r in feasible}

    def beaten(row: dict) -> bool:
        key = (row["ratio"], -row["layers"], -size[row["name"]])
        return any(o["ratio"] <= row["ratio"] and o["layers"] >= row["layers"]
                   and size[o["name"]] >= size[row["name"]]
                   and (o["ratio"], -o["layers"], -size[o["name"]]) != key for o in feasible)

    front = [r for r in feasible if not beaten(r)]
    return sorted(front, key=lambda r: (r["layers"], size[r["name"]], r["ratio"]))


def next_candidate(front: list[dict], trials: list[dict], max_accuracy_drop: float) -> dict | None:
    """The next candidate of `front` (`trial_order`) to recover, None when the search is done.

    The first (the smallest) first; then the middle of the candidates still open:
    a tried candidate that lost more than `max_accuracy_drop` points rules out the
    ones before it (smaller), one that kept the accuracy rules out the ones after it.
    """
    if not trials:
        return front[0] if front else None
    tried = {t["name"]: t for t in trials}
    low, high = 0, len(front)
    for i, row in enumerate(front):
        if row["name"] in tried:
            if tried[row["name"]]["accuracy_drop"] <= max_accuracy_drop:
                high = min(high, i)
            else:
                low = max(low, i + 1)
    return front[(low + high) // 2] if low < high else None


def _try(model: Any, row: dict, target: Target, data: dict, output_dir: str,
         settings: recover.RecoverySettings, baseline: float) -> dict:
    from keras_bertopt.export import TFLiteClassifier

    student = recover.recover_candidate(model, Candidate.from_dict(row), data["train_texts"],
                                        data["train_labels"], data["logits"], settings)
    from keras_bertopt.files import atomic_output

    with atomic_output(os.path.join(output_dir, f"{row['name']}.keras")) as tmp:
        student.save(tmp)
    path = os.path.join(output_dir, f"{row['name']}.tflite")
    timing.export_candidate(student, path, target.quantization,
                            data["train_texts"][:256] if target.quantization == "int8" else None)
    measured = timing.time_files({row["name"]: path}, os.path.join(output_dir, "reference.tflite"),
                                 model.preprocessor, data["val_texts"], rounds=data["rounds"],
                                 max_sentences=data["sentences"])[row["name"]]
    runner = TFLiteClassifier(path, model.preprocessor, num_threads=1)
    accuracy = runner.evaluate(data["val_texts"], data["val_labels"])["accuracy"]
    drop = round(100.0 * (baseline - accuracy), 4)
    return {"name": row["name"], "file": path, "model": path[:-len(".tflite")] + ".keras",
            "accuracy": round(accuracy, 6),
            "accuracy_drop": drop, "median_ms": measured["median_ms"],
            "ratio": measured["ratio"],
            "meets": target.meets(measured["ratio"], measured["median_ms"], drop)}


def _outcome(state: dict, order: list[dict], max_trials: int, target: Target) -> dict:
    trials = state["trials"]
    shipped = [t for t in trials if t["meets"]]
    if shipped:
        return {"met": True, **min(shipped, key=lambda t: (t["ratio"], t["median_ms"]))}
    latency_ok = [t for t in trials if any(r["name"] == t["name"] and r["meets_latency"]
                                           for r in state["candidates"])]
    best = max(latency_ok or trials, key=lambda t: t["accuracy"], default=None)
    if not any(r["meets_latency"] for r in state["candidates"]):
        reason = (f"no candidate meets the latency (fastest: {order[0]['name']}, "
                  f"{order[0]['ratio']:.4g}x, {order[0]['median_ms']:.4g} ms).")
    elif kept := [t for t in trials if t["accuracy_drop"] <= target.max_accuracy_drop]:
        slow = min(kept, key=lambda t: (t["ratio"], t["median_ms"]))
        reason = (f"{slow['name']} keeps the accuracy but its shipped file, timed again after "
                  f"recovery, misses the latency ({slow['ratio']:.4g}x, "
                  f"{slow['median_ms']:.2f} ms); {len(trials)} of at most {max_trials} "
                  "candidate(s) tried.")
    else:
        reason = (f"none of the {len(trials)} candidate(s) tried (at most {max_trials}) keeps "
                  "the accuracy within the allowed drop.")
    return {"met": False, "reason": reason, **({"file": best["file"]} if best else {})}


def compress_to_target(
    model: Any,
    target: Mapping[str, Any] | Target,
    train: tuple[Sequence[str], Sequence[int]],
    validation: tuple[Sequence[str], Sequence[int]],
    output_dir: str,
    *,
    candidates: Sequence[Candidate] | None = None,
    recovery: recover.RecoverySettings | None = None,
    max_trials: int = 3,
    timing_sentences: int = 200,
    timing_rounds: int = 1,
    reference_length: int | None = None,
) -> CompressResult:
    """Search candidate shapes for the fastest file meeting `target` (module docstring).

    Args:
        model: the fine-tuned keras-hub BERT classifier (with its preprocessor).
        target: ``{"latency", "max_accuracy_drop", "device"}`` (`parse_target`).
        train: (texts, labels) the candidates are recovered on.
        validation: (texts, labels) for timing and the accuracy check.
        output_dir: where the files, state.json and report.md go (resumable).
        candidates: shapes to consider (default `candidate_shapes(model)`).
        recovery: `RecoverySettings` (epochs, batch size, learning rate, KD).
        max_trials: most candidates recovered (the time budget, stated up front).
        timing_sentences: validation sentences timed.
        timing_rounds: passes over them.
        reference_length: the fixed length of the float32 reference file the
            latency ratio is counted against (e.g. 128, MediaPipe's usual
            fixed-length file); None: the preprocessor's `sequence_length`.

    Returns:
        A `CompressResult` naming the file to ship.

    Raises:
        ValueError: bad arguments, before any work.
        TargetNotMet: no candidate met the target (its `best_file` is kept).
    """
    target = parse_target(target)
    train_texts, train_labels = _check_data(train, "train")
    val_texts, val_labels = _check_data(validation, "validation")
    for name, value in (("max_trials", max_trials), ("timing_sentences", timing_sentences),
                        ("timing_rounds", timing_rounds)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}")
    if reference_length is not None and (isinstance(reference_length, bool) or not isinstance(
            reference_length, int) or reference_length < 2):
        raise ValueError(f"`reference_length` must be None or an integer >= 2, "
                         f"got {reference_length!r}")
    settings = recovery or recover.RecoverySettings()
    layers, heads, width = model_shape(model)
    shapes = list(candidate_shapes(model) if candidates is None else candidates)
    bad = [c for c in shapes if not isinstance(c, Candidate) or not (
        1 <= c.layers <= layers and 1 <= c.heads <= heads and 1 <= c.intermediate <= width)]
    if not shapes or bad:
        raise ValueError(f"`candidates` must be Candidates within the model's shape "
                         f"({layers}, {heads}, {width}), got {bad[0] if bad else 'none'}")
    os.makedirs(output_dir, exist_ok=True)
    state = _load_state(output_dir, {"target": target.to_dict(),
                                     "candidate_names": [c.name for c in shapes],
                                     "reference_length": reference_length})
    state["target_text"] = target.describe()
    state["recovery_text"] = (f"{settings.epochs} epoch(s) of {len(train_texts)} sentences, "
                              f"{settings.describe_distillation()}, "
                              f"at most {max_trials} candidate(s)")
    if "baseline_accuracy" not in state:
        state["baseline_accuracy"] = _accuracy(model, val_texts, val_labels)
    state["reference_file_length"] = reference_length or int(model.preprocessor.sequence_length)
    if "candidates" not in state:
        state["candidates"], state["reference_ms"] = _time_candidates(
            model, target, shapes, output_dir, val_texts, train_texts[:256],
            (timing_rounds, timing_sentences, reference_length))
    _save(output_dir, state)
    return _search(model, target, state, output_dir, settings, max_trials, {
        "train_texts": train_texts, "train_labels": train_labels, "val_texts": val_texts,
        "val_labels": val_labels, "rounds": timing_rounds, "sentences": timing_sentences})


def _search(model: Any, target: Target, state: dict, output_dir: str,
            settings: recover.RecoverySettings, max_trials: int, data: dict) -> CompressResult:
    from keras_bertopt.pruning.importance import encoder_parts

    part = encoder_parts(model)[0]
    order = trial_order(state["candidates"], int(part.output.kernel.shape[-1]), part.key_dim)
    logits_path = os.path.join(output_dir, "teacher_logits.npy")
    while len(state["trials"]) < max_trials:
        row = next_candidate(order, state["trials"], target.max_accuracy_drop)
        if row is None:
            break
        if "logits" not in data and settings.hidden_weight > 0:
            data["logits"] = None  # the teacher runs live for its hidden states and logits
        if "logits" not in data:
            if not os.path.isfile(logits_path):
                np.save(logits_path + ".tmp.npy", recover.teacher_logits(model,
                                                                         data["train_texts"]))
                os.replace(logits_path + ".tmp.npy", logits_path)
            data["logits"] = np.load(logits_path)
        state["trials"].append(_try(model, row, target, data, output_dir, settings,
                                    state["baseline_accuracy"]))
        _save(output_dir, state)
    state["outcome"] = _outcome(state, order, max_trials, target)
    _save(output_dir, state)
    report = os.path.join(output_dir, REPORT_FILE)
    outcome = state["outcome"]
    if not outcome["met"]:
        raise TargetNotMet(f"target not met ({target.describe()}): {outcome['reason']} "
                           f"Best file found: {outcome.get('file')}; see {report}",
                           outcome.get("file"), state)
    return CompressResult(file=outcome["file"], name=outcome["name"],
                          accuracy=outcome["accuracy"],
                          baseline_accuracy=state["baseline_accuracy"],
                          accuracy_drop=outcome["accuracy_drop"], ratio=outcome["ratio"],
                          median_ms=outcome["median_ms"], report=report)
