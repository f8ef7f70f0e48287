"""Every use of Keras internals, in one place, so a Keras upgrade is one file to read.

Keras 3 has public APIs for most of what this package does; these helpers cover
the rest. Each says which private attribute it reads and why no public API
serves (checked against Keras 3.15).
"""

from __future__ import annotations

from typing import Any


def learning_rate_schedule(optimizer: Any) -> Any:
    """The optimizer's learning rate as given: a `LearningRateSchedule` (or a number/variable).

    ``optimizer.learning_rate`` evaluates a schedule at the current step and
    returns a tensor; the schedule object itself is only ``_learning_rate``.
    """
    return optimizer._learning_rate
