"""Sparsity schedules: callables ``step -> (should_prune, sparsity)``.

They follow tensorflow-model-optimization's ``PolynomialDecay`` and
``ConstantSparsity`` exactly (same arguments, same values, same steps), but
are plain Python (no TensorFlow ops), serialize with Keras, and never import
tfmot. `MagnitudePruning` accepts any callable with this signature, so tfmot's
own schedule objects work unchanged too.

Steps count optimizer updates from 1: the schedule is asked at step ``k`` right
after the ``k``-th training batch (tfmot's ``pruning_step`` numbering).
"""

from __future__ import annotations

import math
import operator
from typing import Any

import keras


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    value = operator.index(value)
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value}")
    return value


def check_sparsity(value: Any, name: str) -> float:
    """Return `value` as a float, or raise ValueError unless it is in [0, 1)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a number in [0, 1), got {value!r}") from None
    if not (0.0 <= value < 1.0):
        raise ValueError(f"`{name}` must be in [0, 1), got {value}")
    return value


class PruningSchedule:
    """Base class: `__call__(step) -> (should_prune: bool, sparsity: float)`.

    Prunes every `frequency` steps from `begin_step` to `end_step` inclusive
    (``end_step=-1``: forever, where the subclass allows it).
    """

    begin_step: int
    end_step: int
    frequency: int

    def _check_steps(self, allow_forever: bool) -> None:
        self.begin_step = _check_int(self.begin_step, "begin_step", 0)
        self.frequency = _check_int(self.frequency, "frequency", 1)
        if allow_forever and self.end_step == -1:
            self.end_step = -1
            return
        self.end_step = _check_int(self.end_step, "end_step", -1 if allow_forever else 0)
        if self.end_step <= self.begin_step:
            raise ValueError(
                f"`end_step` must be greater than `begin_step`"
                f"{' (or -1 to prune forever)' if allow_forever else ''}; got "
                f"begin_step={self.begin_step}, end_step={self.end_step}"
            )

    def should_prune(self, step: int) -> bool:
        """True when masks are updated at `step`."""
        step = int(step)
        in_range = step >= self.begin_step and (self.end_step < 0 or step <= self.end_step)
        return in_range and (step - self.begin_step) % self.frequency == 0

    def sparsity(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, step: int) -> tuple[bool, float]:
        return self.should_prune(step), self.sparsity(step)

    def get_config(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PruningSchedule:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))


@keras.saving.register_keras_serializable(package="keras_bertopt")
class PolynomialSparsity(PruningSchedule):
    """Gradual pruning of Zhu & Gupta (2017), the formula of tfmot's ``PolynomialDecay``.

    ``sparsity(step) = final + (initial - final) * (1 - p) ** power`` with
    ``p = clip((step - begin_step) / (end_step - begin_step), 0, 1)``; masks are
    updated every `frequency` steps in ``[begin_step, end_step]``.

    Args:
        initial_sparsity: sparsity at `begin_step`, in [0, 1).
        final_sparsity: sparsity from `end_step` on, in [0, 1).
        begin_step: first pruning step (>= 0).
        end_step: last pruning step (> begin_step).
        power: exponent of the decay (3 in the paper).
        frequency: steps between mask updates (>= 1).

    Example:

    ```python
    schedule = PolynomialSparsity(0.0, 0.8, begin_step=0, end_step=2000, frequency=100)
    schedule(1000)  # (True, 0.7)
    ```
    """

    def __init__(
        self,
        initial_sparsity: float,
        final_sparsity: float,
        begin_step: int,
        end_step: int,
        power: float = 3,
        frequency: int = 100,
    ) -> None:
        self.initial_sparsity = check_sparsity(initial_sparsity, "initial_sparsity")
        self.final_sparsity = check_sparsity(final_sparsity, "final_sparsity")
        try:
            self.power = float(power)
        except (TypeError, ValueError):
            raise ValueError(f"`power` must be a positive number, got {power!r}") from None
        if not (math.isfinite(self.power) and self.power > 0):
            raise ValueError(f"`power` must be a positive number, got {power!r}")
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency
        self._check_steps(allow_forever=False)

    def sparsity(self, step: int) -> float:
        p = (float(step) - self.begin_step) / (self.end_step - self.begin_step)
        p = min(1.0, max(0.0, p))
        return (
            self.final_sparsity
            + (self.initial_sparsity - self.final_sparsity) * (1.0 - p) ** self.power
        )

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }


@keras.saving.register_keras_serializable(package="keras_bertopt")
class ConstantSparsity(PruningSchedule):
    """One sparsity, re-applied every `frequency` steps (tfmot's ``ConstantSparsity``).

    Args:
        target_sparsity: the sparsity, in [0, 1).
        begin_step: first pruning step (>= 0).
        end_step: last pruning step (> begin_step), or -1 to prune until training ends.
        frequency: steps between mask updates (>= 1).

    Example:

    ```python
    schedule = ConstantSparsity(0.5, begin_step=0, frequency=50)
    schedule(100)  # (True, 0.5)
    ```
    """

    def __init__(
        self,
        target_sparsity: float,
        begin_step: int = 0,
        end_step: int = -1,
        frequency: int = 100,
    ) -> None:
        self.target_sparsity = check_sparsity(target_sparsity, "target_sparsity")
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency
        self._check_steps(allow_forever=True)

    def sparsity(self, step: int) -> float:
        return self.target_sparsity

    def get_config(self) -> dict[str, Any]:
        return {
            "target_sparsity": self.target_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }
