"""The run folder's state: `RunState` <-> ``state.json``, and the rules for resuming.

``state.json`` records the resolved config, the stages completed, what each one
produced, the training curves and the settings measured once for the run
(sequence length, batch size). Reopening a folder resumes it when the config is
the same, and refuses (`FileExistsError`) anything else, so a run is never
overwritten. Keys this version does not know are kept as they are.

```python
state = open_run("runs/demo", config)     # new, or the run already there
state.completed                           # ['finetune', ...]
state.save("runs/demo")
```
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

from keras_bertopt import files
from keras_bertopt.recipe.lock import LOCK_NAME

STATE_VERSION = 1


def plain(value: Any) -> Any:
    """JSON-able view of numbers, arrays, dataclasses and simple objects."""
    import numpy as np

    if isinstance(value, (str, bool, int, type(None))):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if hasattr(value, "to_dict"):
        return plain(value.to_dict())
    if hasattr(value, "numpy"):
        return plain(value.numpy())
    return str(value)


def config_diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Dotted key paths where two nested mappings differ."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = []
        for key in sorted(set(a) | set(b)):
            out += config_diff(a.get(key), b.get(key), f"{path}.{key}" if path else key)
        return out
    return [] if a == b else [path]


def _merged(defaults: Any, stored: Any) -> Any:
    """`stored` over `defaults`: keys a run folder predates read as their defaults."""
    if isinstance(defaults, Mapping) and isinstance(stored, Mapping):
        return {**defaults, **{k: _merged(defaults.get(k), v) for k, v in stored.items()}}
    return stored


def comparable(config: Any) -> dict[str, Any]:
    """The config as ``state.json`` records it (without `output_dir`, `checkpoint_every`)."""
    out = plain(config.to_dict())
    out.pop("output_dir", None)
    out.pop("checkpoint_every", None)  # how often to save does not change the result
    return out


@dataclasses.dataclass
class RunState:
    """What ``state.json`` holds.

    Attributes:
        config: the resolved config (without `output_dir`).
        completed: the stages finished, in order.
        stages: each finished stage's result.
        curves: training points ``{"stage", "step", "loss", ...}`` of every stage.
        sequence_length, length_report: measured when `model.sequence_length` is unset.
        batch_size, batch_size_search: measured when `data.batch_size` is ``auto``.
        extra: keys of the file this version does not know (written back unchanged).
    """

    config: dict[str, Any]
    completed: list[str] = dataclasses.field(default_factory=list)
    stages: dict[str, Any] = dataclasses.field(default_factory=dict)
    curves: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    sequence_length: int | None = None
    length_report: dict[str, Any] | None = None
    batch_size: int | None = None
    batch_size_search: dict[str, Any] | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def record(self, stage: str, result: dict[str, Any]) -> None:
        """Mark `stage` completed with `result`; its ``curves`` replace the stage's old ones."""
        curves = result.pop("curves", [])
        self.curves = [c for c in self.curves if c.get("stage") != stage] + list(curves)
        self.stages[stage] = result
        if stage not in self.completed:
            self.completed.append(stage)

    def to_dict(self) -> dict[str, Any]:
        """The ``state.json`` mapping (the format every version 1 run folder has)."""
        out: dict[str, Any] = {"version": STATE_VERSION, "config": self.config,
                               "completed": self.completed, "stages": self.stages,
                               "curves": self.curves}
        for key in ("sequence_length", "length_report", "batch_size", "batch_size_search"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return {**self.extra, **out}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RunState:
        """Read a ``state.json`` mapping (unknown keys kept in `extra`)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in raw.items() if k in names}
        extra = {k: v for k, v in raw.items() if k not in names and k != "version"}
        return cls(**{"config": {}, **known}, extra=extra)

    def save(self, out: str) -> None:
        """Write ``<out>/state.json`` (atomically)."""
        files.write_text(os.path.join(out, "state.json"),
                         json.dumps(plain(self.to_dict()), indent=2) + "\n")


def _reopen(out: str, config: Any) -> RunState:
    state_path = os.path.join(out, "state.json")
    if not os.path.isfile(state_path):
        raise FileExistsError(
            f"output directory {out!r} exists, is not empty and holds no keras-bertopt run "
            "(no state.json): refusing to overwrite it; choose another output directory")
    with open(state_path, encoding="utf-8") as f:
        raw = json.load(f)
    if not isinstance(raw, Mapping) or raw.get("version") != STATE_VERSION:
        version = raw.get("version") if isinstance(raw, Mapping) else None
        raise FileExistsError(
            f"output directory {out!r} holds a run of state version {version!r} (this code "
            f"reads and writes {STATE_VERSION}); refusing to overwrite it")
    state = RunState.from_dict(raw)
    current = comparable(config)
    defaults = comparable(type(config)())
    diff = config_diff(_merged(defaults, state.config), current)
    if diff:
        raise FileExistsError(
            f"output directory {out!r} holds a run of a different config (differs at "
            f"{', '.join(diff[:8])}): refusing to overwrite it; resume with the same config "
            "or choose another output directory")
    state.config = current
    return state


def open_run(out: str, config: Any) -> RunState:
    """Create the run folder `out` for `config`, or reopen it; return its state.

    Raises:
        FileExistsError: `out` holds something that is not this recipe's run, or a run
            of a different config.
    """
    # The runner's lock file is there already (and nothing else it writes, so a
    # folder holding only a '.tmp' of someone else's is refused, not emptied).
    if os.path.isdir(out) and any(name != LOCK_NAME for name in os.listdir(out)):
        return _reopen(out, config)
    if os.path.exists(out) and not os.path.isdir(out):
        raise FileExistsError(f"output path {out!r} exists and is not a directory")
    os.makedirs(out, exist_ok=True)
    state = RunState(config=comparable(config))
    files.write_text(os.path.join(out, "config.json"),
                     json.dumps(config.to_dict(), indent=2) + "\n")
    state.save(out)
    return state


def exported_model(path: str | os.PathLike[str]) -> str | None:
    """The ``<run>/<stage>/model.keras`` a recipe's ``<run>/export/*.tflite`` was made from,
    as the run's ``state.json`` records it; None for a file no recipe run lists."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    run = os.path.dirname(folder)
    state_path = os.path.join(run, "state.json")
    if os.path.basename(folder) != "export" or not os.path.isfile(state_path):
        return None
    with open(state_path, encoding="utf-8") as f:
        state = json.load(f)
    exports = state.get("stages", {}).get("export", {}) if isinstance(state, Mapping) else {}
    for item in exports.get("files", []):
        if os.path.normpath(os.path.join(run, item.get("file", ""))) == path:
            model = os.path.join(run, item["stage"], "model.keras")
            return model if os.path.isfile(model) else None
    return None
