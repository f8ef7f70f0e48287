"""Finish pruning (`strip_pruning`) and measure sparsity (`sparsity_report`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from keras_bertopt.pruning.state import MaskConstraint, detach_state, get_state
from keras_bertopt.selection import Pattern, select_variables, variable_path


def strip_pruning(model: Any) -> Any:
    """Bake the masks into the weights and remove every trace of pruning from `model`.

    Works in place and returns `model`: each pruned variable is multiplied by
    its mask, gets back the constraint it had before pruning (usually None),
    and the `PruningState` layer (masks and step) leaves the model, so
    ``model.weights`` is what it was before pruning. The model stays compiled;
    its next `fit` retraces the train step without the mask multiply.

    Example:

    ```python
    model.fit(train, callbacks=[keras_bertopt.pruning.MagnitudePruning(schedule)])
    model = keras_bertopt.pruning.strip_pruning(model)
    model.save("pruned.keras")
    ```
    """
    if not hasattr(model, "weights"):
        raise ValueError(f"`model` must be a Keras model, got {type(model).__name__}")
    for v in model.weights:
        constraint = getattr(v, "constraint", None)
        if isinstance(constraint, MaskConstraint):
            if constraint.mask is not None:
                v.assign(v * constraint.mask)
            v.constraint = constraint.inner
    had_state = get_state(model) is not None
    detach_state(model)
    if had_state and getattr(model, "train_function", None) is not None:
        model.train_function = None
    return model


@dataclasses.dataclass(frozen=True)
class VariableSparsity:
    """Zeros of one variable."""

    path: str
    shape: tuple[int, ...]
    size: int
    zeros: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.size if self.size else 0.0

    @property
    def nonzero(self) -> int:
        return self.size - self.zeros


@dataclasses.dataclass(frozen=True)
class SparsityReport:
    """Per-variable and overall sparsity of a model's weights.

    Attributes:
        variables: one `VariableSparsity` per reported variable, in model order.
        size: total number of parameters reported.
        zeros: how many of them are exactly zero.
        nonzero: ``size - zeros``.
        sparsity: ``zeros / size``.
    """

    variables: tuple[VariableSparsity, ...]

    @property
    def size(self) -> int:
        return sum(v.size for v in self.variables)

    @property
    def zeros(self) -> int:
        return sum(v.zeros for v in self.variables)

    @property
    def nonzero(self) -> int:
        return self.size - self.zeros

    @property
    def sparsity(self) -> float:
        return self.zeros / self.size if self.size else 0.0

    def __getitem__(self, path: str) -> VariableSparsity:
        for v in self.variables:
            if v.path == path:
                return v
        raise KeyError(path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "zeros": self.zeros,
            "nonzero": self.nonzero,
            "sparsity": self.sparsity,
            "variables": [
                {
                    "path": v.path,
                    "shape": list(v.shape),
                    "size": v.size,
                    "zeros": v.zeros,
                    "sparsity": v.sparsity,
                }
                for v in self.variables
            ],
        }

    def __str__(self) -> str:
        sparse = [v for v in self.variables if v.zeros]
        width = max([len(v.path) for v in sparse] + [8])
        lines = [
            f"sparsity {self.sparsity:.2%}: {self.nonzero:,} nonzero of {self.size:,} parameters "
            f"in {len(self.variables)} variables",
        ]
        if sparse:
            lines.append(f"{'variable':<{width}}  {'shape':<16} {'sparsity':>8} {'nonzero':>12}")
            for v in sparse:
                lines.append(
                    f"{v.path:<{width}}  {str(v.shape):<16} {v.sparsity:>8.2%} {v.nonzero:>12,}"
                )
        dense = len(self.variables) - len(sparse)
        if dense:
            lines.append(f"({dense} variables without zeros not listed)")
        return "\n".join(lines)


def sparsity_report(model: Any, include: Pattern = None, exclude: Pattern = None) -> SparsityReport:
    """Count exact zeros in the float weights of `model` (pruning masks excluded).

    Args:
        model: a Keras model or layer (or an iterable of variables).
        include: regexes on ``variable.path`` restricting the report
            (see `keras_bertopt.selection.select_variables`); all weights by default.
        exclude: as `include`.

    Returns:
        A `SparsityReport`; ``str(report)`` is a readable table.
    """
    import keras

    state = get_state(model)
    skip = {id(v) for v in state.weights} if state is not None else set()
    variables = [
        v
        for v in select_variables(model, include, exclude, trainable_only=False, argument="include")
        if id(v) not in skip and "float" in str(v.dtype)
    ]
    rows = []
    for v in variables:
        value = np.asarray(keras.ops.convert_to_numpy(v))
        rows.append(
            VariableSparsity(
                variable_path(v),
                tuple(value.shape),
                int(value.size),
                int(value.size - np.count_nonzero(value)),
            )
        )
    return SparsityReport(tuple(rows))
