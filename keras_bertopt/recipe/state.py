"""The run directory: ``config.json``, ``state.json`` and the rules for resuming.

``state.json`` records the resolved config, the stages completed, what each one
produced and the training curves. Reopening a directory resumes it when the
config is the same, and refuses (`FileExistsError`) anything else, so a run is
never overwritten.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

from keras_bertopt import files
from keras_bertopt.recipe.config import RecipeConfig

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


def _comparable(config: RecipeConfig) -> dict[str, Any]:
    cfg = config.to_dict()
    cfg.pop("output_dir", None)
    return plain(cfg)


def _reopen(out: str, config: RecipeConfig) -> dict[str, Any]:
    state_path = os.path.join(out, "state.json")
    if not os.path.isfile(state_path):
        raise FileExistsError(
            f"output directory {out!r} exists, is not empty and holds no "
            "keras-bertopt run (no state.json): refusing to overwrite it; choose "
            "another output directory"
        )
    with open(state_path, encoding="utf-8") as f:
        state = json.load(f)
    if state.get("version") != STATE_VERSION:
        raise FileExistsError(
            f"output directory {out!r} holds a run of state version "
            f"{state.get('version')!r} (this code writes {STATE_VERSION}); refusing to "
            "overwrite it"
        )
    diff = config_diff(state.get("config", {}), _comparable(config))
    if diff:
        raise FileExistsError(
            f"output directory {out!r} holds a run of a different config "
            f"(differs at {', '.join(diff[:8])}): refusing to overwrite it; resume with "
            "the same config or choose another output directory"
        )
    return state


def open_run(out: str, config: RecipeConfig) -> dict[str, Any]:
    """Create the run directory `out` for `config`, or reopen it; return its state.

    Raises:
        FileExistsError: `out` holds something that is not this recipe's run, or
            a run of a different config.
    """
    if os.path.isdir(out) and os.listdir(out):
        return _reopen(out, config)
    if os.path.exists(out) and not os.path.isdir(out):
        raise FileExistsError(f"output path {out!r} exists and is not a directory")
    os.makedirs(out, exist_ok=True)
    state = {
        "version": STATE_VERSION,
        "config": _comparable(config),
        "completed": [],
        "stages": {},
        "curves": [],
    }
    files.write_text(os.path.join(out, "config.json"),
                     json.dumps(config.to_dict(), indent=2) + "\n")
    save_state(out, state)
    return state


def save_state(out: str, state: dict[str, Any]) -> None:
    """Write ``state.json`` (atomically)."""
    files.write_text(os.path.join(out, "state.json"), json.dumps(plain(state), indent=2) + "\n")
