"""The pruning state a model carries: one 0/1 mask variable per pruned variable, and the step.

`PruningState` is the non-trainable layer `MagnitudePruning` attaches to the
model (``model._kbo_pruning_state``), so the masks and the pruning step are in
``model.weights``, weight files and `BackupAndRestore` checkpoints.
`MaskConstraint` is the ``variable.constraint`` that multiplies a pruned
variable by its mask after every optimizer update. See `callback.py` for how
the callback wires them.

```python
from keras_bertopt.pruning.state import detach_state, get_state
state = get_state(model)          # None when the model is not being pruned
masks = dict(zip(state.variable_paths, state.masks))
detach_state(model)               # what strip_pruning does first
```
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras

from keras_bertopt import _compat
from keras_bertopt.pruning.masking import uninstall_masked_step
from keras_bertopt.selection import variable_path

#: Attribute of the model that holds its `PruningState`.
STATE_ATTR = "_kbo_pruning_state"


@keras.saving.register_keras_serializable(package="keras_bertopt")
class MaskConstraint(keras.constraints.Constraint):
    """Variable constraint ``w -> inner(w) * mask`` applied after every optimizer update.

    Args:
        mask: the 0/1 mask variable (same shape as the constrained variable).
        inner: a constraint the variable had before pruning; applied first.
        mask_path: path of the mask variable (for `get_config`).

    The mask variable itself is not part of the config: a constraint restored
    from config is unbound until `bind` is called, and raises when applied.
    """

    def __init__(
        self, mask: Any = None, inner: Callable | None = None, mask_path: str | None = None
    ) -> None:
        self.mask = mask
        self.inner = inner
        self.mask_path = mask_path or (variable_path(mask) if mask is not None else None)

    def bind(self, mask: Any) -> MaskConstraint:
        self.mask = mask
        self.mask_path = variable_path(mask)
        return self

    def __call__(self, w: Any) -> Any:
        if self.inner is not None:
            w = self.inner(w)
        if self.mask is None:
            raise ValueError(
                f"MaskConstraint for mask {self.mask_path!r} is not bound to a mask "
                "variable; call `bind(mask_variable)` first"
            )
        return w * keras.ops.cast(self.mask, w.dtype)

    def get_config(self) -> dict[str, Any]:
        inner = None
        if isinstance(self.inner, keras.constraints.Constraint):
            inner = keras.saving.serialize_keras_object(self.inner)
        return {"inner": inner, "mask_path": self.mask_path}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MaskConstraint:
        inner = config.get("inner")
        if inner is not None:
            inner = keras.saving.deserialize_keras_object(inner)
        return cls(mask=None, inner=inner, mask_path=config.get("mask_path"))


def _mask_name(path: str) -> str:
    return "mask__" + path.replace("/", "__").replace(":", "_")


@keras.saving.register_keras_serializable(package="keras_bertopt")
class PruningState(keras.layers.Layer):
    """Non-trainable holder of the pruning step and one mask per pruned variable.

    Attached to a model by `MagnitudePruning`; not part of the model's graph.
    Removed by `strip_pruning`.

    Args:
        variable_paths: paths of the pruned variables, in selection order.
        shapes: their shapes.
        dtypes: their dtypes (float32 when None).
    """

    def __init__(
        self,
        variable_paths: Sequence[str],
        shapes: Sequence[Sequence[int]],
        dtypes: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", "kbo_pruning_state")
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        self.variable_paths = [str(p) for p in variable_paths]
        self.shapes = [tuple(int(d) for d in s) for s in shapes]
        self.dtypes = [str(d) for d in (dtypes or ["float32"] * len(self.shapes))]
        if not (len(self.variable_paths) == len(self.shapes) == len(self.dtypes)):
            raise ValueError("`variable_paths`, `shapes` and `dtypes` must have the same length")
        self.step = self.add_weight(
            shape=(), dtype="int64", initializer="zeros", trainable=False, name="pruning_step",
            aggregation="only_first_replica",  # counted inside the (replicated) train step
        )
        masks = [
            self.add_weight(
                shape=shape, dtype=dtype, initializer="ones", trainable=False, name=_mask_name(p)
            )
            for p, shape, dtype in zip(self.variable_paths, self.shapes, self.dtypes, strict=True)
        ]
        # A plain tuple (untracked: add_weight already tracks each variable).
        object.__setattr__(self, "_masks", tuple(masks))
        self.built = True

    @property
    def masks(self) -> tuple[Any, ...]:
        return self._masks

    def mask_for(self, path: str) -> Any:
        return self._masks[self.variable_paths.index(path)]

    def call(self, inputs: Any) -> Any:
        return inputs

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            variable_paths=list(self.variable_paths),
            shapes=[list(s) for s in self.shapes],
            dtypes=list(self.dtypes),
        )
        return config


def get_state(model: Any) -> PruningState | None:
    """The `PruningState` attached to `model`, or None."""
    return getattr(model, STATE_ATTR, None)


def attach_state(model: Any, state: PruningState) -> None:
    """Attach `state` to `model` as a tracked attribute (its variables join ``model.weights``)."""
    with _compat.unlocked_tracker(model):
        setattr(model, STATE_ATTR, state)


def detach_state(model: Any) -> None:
    """Remove the `PruningState` from `model` (its variables leave ``model.weights``)."""
    state = get_state(model)
    if state is None:
        return
    _compat.untrack(model, state)
    object.__delattr__(model, STATE_ATTR)
    uninstall_masked_step(model, STATE_ATTR)
