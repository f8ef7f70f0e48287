"""The compression target: how fast the shipped file must be, and how much accuracy it may lose.

A target is three keys, checked before any work is done:

* ``latency``: a number in ``(0, 1]`` is a fraction of the float32
  fixed-length file's time per validation sentence (``0.05`` = 20x faster);
  a string ``"<number> ms"`` is an absolute time per sentence. Either way it
  is measured on the exported file, on this machine, batch 1, one thread, at
  the sentences' real lengths.
* ``max_accuracy_drop``: accuracy points (``1.0`` = one point) the shipped
  file may lose against the fine-tuned float model on validation (>= 0).
* ``device``: where the file runs, which sets the file's quantization:
  ``"cpu"`` (dynamic-range int8 weights, float activations: the fastest mode
  measured on LiteRT / XNNPack CPUs) or ``"int8"`` (static int8 for
  integer-only accelerators). Default ``"cpu"``.

Example:

```python
target = parse_target({"latency": 0.05, "max_accuracy_drop": 1.0, "device": "cpu"})
target.quantization        # "dynamic"
target.meets(latency_ratio=0.04, latency_ms=1.2, accuracy_drop=0.8)   # True
```
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Mapping

#: device -> the `to_tflite` quantization the file is written with.
DEVICES = {"cpu": "dynamic", "int8": "int8"}
KEYS = ("latency", "max_accuracy_drop", "device")
_MS = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*ms\s*$")


@dataclasses.dataclass(frozen=True)
class Target:
    """A parsed target (see the module docstring); build it with `parse_target`."""

    latency: float
    latency_unit: str  # "ratio" (of the float32 fixed-length file's time) or "ms"
    max_accuracy_drop: float
    device: str = "cpu"

    @property
    def quantization(self) -> str:
        """The `to_tflite` quantization mode for `device`."""
        return DEVICES[self.device]

    def meets_latency(self, latency_ratio: float, latency_ms: float) -> bool:
        """True when a file measured at `latency_ratio` / `latency_ms` is fast enough."""
        value = latency_ratio if self.latency_unit == "ratio" else latency_ms
        return value <= self.latency

    def meets(self, latency_ratio: float, latency_ms: float, accuracy_drop: float) -> bool:
        """True when a file meets both the latency and the accuracy budget (drop in points)."""
        return (self.meets_latency(latency_ratio, latency_ms)
                and accuracy_drop <= self.max_accuracy_drop)

    def describe(self) -> str:
        """The target in words, for reports and messages."""
        latency = (f"<= {self.latency:g}x the float32 fixed-length file's time"
                   if self.latency_unit == "ratio" else f"<= {self.latency:g} ms")
        return (f"latency {latency} per sentence, accuracy drop <= {self.max_accuracy_drop:g} "
                f"pt, device {self.device} ({self.quantization} file)")

    def to_dict(self) -> dict[str, Any]:
        latency: Any = self.latency if self.latency_unit == "ratio" else f"{self.latency:g} ms"
        return {"latency": latency, "max_accuracy_drop": self.max_accuracy_drop,
                "device": self.device}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _latency(value: Any, where: str) -> tuple[float, str]:
    number = _number(value)
    if number is not None:
        if not 0 < number <= 1:
            raise ValueError(
                f"`{where}.latency` must be a fraction in (0, 1] of the float32 fixed-length "
                f"file's time or a string like '12 ms', got {value!r}")
        return number, "ratio"
    match = _MS.match(value) if isinstance(value, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(
            f"`{where}.latency` must be a fraction in (0, 1] or a positive time like '12 ms', "
            f"got {value!r}")
    return float(match.group(1)), "ms"


def parse_target(value: Mapping[str, Any] | Target, where: str = "target") -> Target:
    """Check and parse a target mapping (e.g. the recipe's ``target:`` section).

    Args:
        value: ``{"latency": ..., "max_accuracy_drop": ..., "device": ...}``
            (device optional), or a `Target` (returned as is).
        where: the key path used in error messages.

    Returns:
        A `Target`.

    Raises:
        ValueError: naming the key (``target.latency``, ...): a missing or
            unknown key, latency <= 0 or > 1 as a fraction, a negative or
            non-number drop, an unknown device.
    """
    if isinstance(value, Target):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"`{where}` must be a mapping with keys {list(KEYS)}, "
                         f"got {type(value).__name__}")
    unknown = sorted(set(value) - set(KEYS))
    if unknown:
        raise ValueError(f"`{where}.{unknown[0]}` is not a target key; expected {list(KEYS)}")
    for key in ("latency", "max_accuracy_drop"):
        if key not in value or value[key] is None:
            raise ValueError(f"`{where}.{key}` is required")
    latency, unit = _latency(value["latency"], where)
    drop = _number(value["max_accuracy_drop"])
    if drop is None or drop < 0:
        raise ValueError(f"`{where}.max_accuracy_drop` must be a number of accuracy points "
                         f">= 0, got {value['max_accuracy_drop']!r}")
    device = value.get("device", "cpu")
    if device not in DEVICES:
        raise ValueError(f"`{where}.device` must be one of {sorted(DEVICES)}, got {device!r}")
    return Target(latency=latency, latency_unit=unit, max_accuracy_drop=drop, device=device)
