"""`StructuredPruning`: mask whole attention heads and feed-forward neurons during `fit`.

How it is wired (the scores are `importance.py`'s, the removal `structure.py`'s):

* **Masking a unit is zeroing weights.** A head is masked by zeroing its slice
  of the value kernel and bias and of the attention output kernel: its
  attention-weighted values are then zero and nothing of it reaches the
  output. A feed-forward neuron is masked by zeroing its intermediate kernel
  column and bias (GELU(0) = 0) and its output kernel row. So the masked model
  computes exactly what the smaller model from `strip_structure` computes.
* **State in the model.** A non-trainable `StructureState` layer (one 0/1
  vector per layer for heads, one for neurons, and the step) is attached to the
  model as ``_kbo_structure_state`` when `fit` hands the callback its model; its
  variables are part of ``model.weights`` and so of
  `keras.callbacks.BackupAndRestore` checkpoints.
* **Masked weights stay zero.** Each touched variable gets a
  `UnitMaskConstraint` (``w * mask`` broadcast along the unit axis), which Keras
  optimizers apply after every update inside the compiled train step; on JAX the
  train step itself is wrapped to apply the masks (`masking.py`). There is no
  per-step Python work: the callback has no ``on_train_batch_end``.
* **On schedule steps** (``schedule(step) -> (should_prune, fraction)``, steps
  counted from 1 as in `MagnitudePruning`) the callback scores the units and
  masks the lowest-scoring ``floor(fraction * n)`` of every layer. Masks only
  grow: a masked unit stays masked.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np

from keras_bertopt import _compat
from keras_bertopt.pruning.importance import METHODS, encoder_parts, importance_scores
from keras_bertopt.pruning.masking import (
    MaskBinding,
    MaskingCallback,
    constraints_see_masks,
    enforce,
    install_masked_step,
    sync_state,
)
from keras_bertopt.pruning.schedules import PruningSchedule
from keras_bertopt.pruning.structure import prune_structure

#: Attribute of the model that holds its `StructureState`.
STATE_ATTR = "_kbo_structure_state"
TARGETS = ("heads", "intermediate")


@keras.saving.register_keras_serializable(package="keras_bertopt")
class UnitMaskConstraint(keras.constraints.Constraint):
    """``w -> inner(w) * mask`` with a 1-D unit `mask` broadcast along `axis` of ``w``.

    Args:
        mask: the 0/1 vector variable (length ``w.shape[axis]``).
        axis: the unit axis of the constrained variable.
        inner: a constraint the variable had before; applied first.
    """

    def __init__(self, mask: Any = None, axis: int = 0, inner: Callable | None = None) -> None:
        self.mask = mask
        self.axis = int(axis)
        self.inner = inner

    def __call__(self, w: Any) -> Any:
        if self.inner is not None:
            w = self.inner(w)
        if self.mask is None:
            raise ValueError("UnitMaskConstraint is not bound to a mask variable")
        shape = [1] * len(w.shape)
        shape[self.axis] = -1
        return w * keras.ops.reshape(keras.ops.cast(self.mask, w.dtype), shape)

    def get_config(self) -> dict[str, Any]:
        inner = None
        if isinstance(self.inner, keras.constraints.Constraint):
            inner = keras.saving.serialize_keras_object(self.inner)
        return {"axis": self.axis, "inner": inner}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> UnitMaskConstraint:
        inner = config.get("inner")
        inner = keras.saving.deserialize_keras_object(inner) if inner is not None else None
        return cls(mask=None, axis=config.get("axis", 0), inner=inner)


@keras.saving.register_keras_serializable(package="keras_bertopt")
class StructureState(keras.layers.Layer):
    """Non-trainable holder of the step and the head / neuron masks of every layer.

    Args:
        num_heads: heads per transformer layer.
        intermediate_dim: feed-forward neurons per transformer layer.
    """

    def __init__(self, num_heads: Sequence[int], intermediate_dim: Sequence[int],
                 **kwargs: Any) -> None:
        kwargs.setdefault("name", "kbo_structure_state")
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        self.num_heads = [int(h) for h in num_heads]
        self.intermediate_dim = [int(n) for n in intermediate_dim]
        self.step = self.add_weight(shape=(), dtype="int64", initializer="zeros",
                                    trainable=False, name="structure_step",
                                    aggregation="only_first_replica")
        heads = [self.add_weight(shape=(h,), initializer="ones", trainable=False,
                                 name=f"head_mask_{i}") for i, h in enumerate(self.num_heads)]
        neurons = [self.add_weight(shape=(n,), initializer="ones", trainable=False,
                                   name=f"neuron_mask_{i}")
                   for i, n in enumerate(self.intermediate_dim)]
        object.__setattr__(self, "_masks", {"heads": tuple(heads), "intermediate": tuple(neurons)})
        self.built = True

    def masks(self, target: str) -> tuple[Any, ...]:
        return self._masks[target]

    def call(self, inputs: Any) -> Any:
        return inputs

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(num_heads=self.num_heads, intermediate_dim=self.intermediate_dim)
        return config


def get_structure_state(model: Any) -> StructureState | None:
    """The `StructureState` attached to `model` by `StructuredPruning`, or None."""
    return getattr(model, STATE_ATTR, None)


def _attach(model: Any, state: StructureState) -> None:
    with _compat.unlocked_tracker(model):
        setattr(model, STATE_ATTR, state)


def _masked_variables(parts: Any) -> dict[str, list[tuple[Any, int]]]:
    """Per target, (variable, unit axis) pairs whose zeroing removes a unit."""
    return {
        "heads": [(parts.value.kernel, 1), (parts.value.bias, 0), (parts.output.kernel, 0)],
        "intermediate": [(parts.intermediate.kernel, 1), (parts.intermediate.bias, 0),
                         (parts.ffn_output.kernel, 0)],
    }


def _to_numpy(x: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


def removed_units(model: Any) -> dict[str, list[list[int]]]:
    """Per target, the masked unit indices of every layer (from the model's `StructureState`)."""
    state = get_structure_state(model)
    if state is None:
        raise ValueError("`model` carries no StructuredPruning state (fit it with the callback)")
    return {t: [np.flatnonzero(_to_numpy(m) == 0).tolist() for m in state.masks(t)]
            for t in TARGETS}


def strip_structure(model: Any) -> Any:
    """The smaller model a `StructuredPruning` run stands for: masked units removed.

    Returns a new model (see `prune_structure`) with the masked heads and
    neurons physically gone; it computes what the masked model computes. The
    input model keeps its masks.

    Example:

    ```python
    model.fit(train, epochs=2, callbacks=[StructuredPruning(schedule)])
    small = keras_bertopt.pruning.strip_structure(model)
    ```
    """
    removed = removed_units(model)
    return prune_structure(model, heads=removed["heads"], intermediate=removed["intermediate"])


def _check_schedule(schedule: Any) -> dict[str, Callable]:
    if callable(schedule):
        return {"heads": schedule, "intermediate": schedule}
    if isinstance(schedule, Mapping) and schedule and set(schedule) <= set(TARGETS) and all(
        callable(s) for s in schedule.values()
    ):
        return dict(schedule)
    raise ValueError(
        "`schedule` must be a callable step -> (should_prune, fraction) such as "
        f"PolynomialSparsity(...), or a dict with keys from {TARGETS}; got {schedule!r}"
    )


@keras.saving.register_keras_serializable(package="keras_bertopt")
class StructuredPruning(MaskingCallback):
    """Mask the lowest-scoring attention heads and feed-forward neurons during `fit`.

    Args:
        schedule: ``step -> (should_prune, fraction)`` such as `PolynomialSparsity`
            (the fraction of each layer's heads / neurons masked), used for both
            targets; or a dict ``{"heads": schedule, "intermediate": schedule}``
            (a target left out is not pruned).
        importance: ``"magnitude"`` or ``"taylor"`` (scores from `data` on
            every pruning step; see `importance_scores`).
        data: ``(inputs, labels)`` batches for ``"taylor"``.
        batches: batches of `data` per scoring.

    Adds ``pruned_heads`` and ``pruned_intermediate`` (fractions masked) to the
    epoch logs. Works with `keras.callbacks.BackupAndRestore` (the masks and
    step are model weights). `strip_structure(model)` then gives the smaller model.

    Example:

    ```python
    pruning = keras_bertopt.pruning.StructuredPruning(
        schedule={"heads": keras_bertopt.pruning.PolynomialSparsity(0.0, 0.5, 0, 600, frequency=50),
                  "intermediate": keras_bertopt.pruning.PolynomialSparsity(0.0, 0.5, 0, 600,
                                                                           frequency=50)})
    model.fit(train, epochs=2, callbacks=[pruning])
    small = keras_bertopt.pruning.strip_structure(model)
    ```
    """

    def __init__(self, schedule: Any, importance: str = "magnitude", data: Any = None,
                 batches: int = 4) -> None:
        super().__init__()
        self.schedules = _check_schedule(schedule)
        if importance not in METHODS:
            raise ValueError(f"`importance` must be one of {METHODS}, got {importance!r}")
        if importance == "taylor" and data is None:
            raise ValueError("`importance`='taylor' needs `data`: a few (inputs, labels) batches")
        if not isinstance(batches, int) or batches < 1:
            raise ValueError(f"`batches` must be an integer >= 1, got {batches!r}")
        self.importance, self.data, self.batches = importance, data, batches
        for target in self.schedules:
            self._evaluate(target, 1)
        self._state: StructureState | None = None
        self._parts: list[Any] = []

    def _evaluate(self, target: str, step: int) -> tuple[bool, float]:
        try:
            should, fraction = self.schedules[target](step)
        except (TypeError, ValueError) as err:
            raise ValueError(f"`schedule`({step}) must return (should_prune, fraction); "
                             f"it raised {err!r}") from None
        fraction = float(np.asarray(fraction))
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"`schedule`({step}) returned {fraction}; it must be in [0, 1)")
        return bool(np.asarray(should)), fraction

    @property
    def state(self) -> StructureState | None:
        return self._state

    def _prepare(self, model: Any) -> None:
        parts = encoder_parts(model)
        heads = [p.num_heads for p in parts]
        widths = [p.intermediate_dim for p in parts]
        state = get_structure_state(model)
        if state is not None and (state.num_heads != heads or state.intermediate_dim != widths):
            raise ValueError("the model carries StructuredPruning state for other sizes")
        if state is None:
            strategy = getattr(model, "distribute_strategy", None)
            if strategy is not None:
                with strategy.scope():
                    state = StructureState(heads, widths)
            else:
                state = StructureState(heads, widths)
            _attach(model, state)
        self._state, self._parts = state, parts
        in_step = constraints_see_masks()
        for b in self._bindings():
            current = b.variable.constraint
            if isinstance(current, UnitMaskConstraint) and current.mask is b.mask:
                continue
            if in_step:
                b.variable.constraint = UnitMaskConstraint(b.mask, b.axis, inner=current)
        install_masked_step(model, STATE_ATTR, self._bindings(), state.step)

    # -- MaskingCallback hooks ----------------------------------------------
    def _bindings(self) -> list[MaskBinding]:
        return [MaskBinding(variable, self._state.masks(target)[i], axis)
                for i, p in enumerate(self._parts)
                for target, pairs in _masked_variables(p).items()
                for variable, axis in pairs]

    def _step_variable(self) -> Any:
        return None if self._state is None else self._state.step

    def _due(self, step: int) -> dict[str, float] | None:
        due = {}
        for target in self.schedules:
            should, fraction = self._evaluate(target, step)
            if should:
                due[target] = fraction
        return due or None

    def _update(self, updates: list[dict[str, float]]) -> None:
        targets: dict[str, float] = {}
        for due in updates:
            targets.update(due)
        self.update_masks(targets)

    def update_masks(self, fractions: Mapping[str, float]) -> None:
        """Mask the lowest-scoring ``floor(fraction * n)`` units of each layer per target."""
        sync_state(self.model)
        scores = importance_scores(self.model, self.importance, data=self.data,
                                   batches=self.batches)
        per_target = {"heads": scores.heads, "intermediate": scores.intermediate}
        for target, fraction in fractions.items():
            for i, mask_var in enumerate(self._state.masks(target)):
                mask = _to_numpy(mask_var)
                n = mask.size
                count = max(int(np.floor(fraction * n + 1e-9)), int(np.sum(mask == 0)))
                count = min(count, n - 1)
                s = np.where(mask == 0, -np.inf, per_target[target][i])
                new = np.ones(n, dtype=mask.dtype)
                new[np.argsort(s, kind="stable")[:count]] = 0
                mask_var.assign(new)
        enforce(self._bindings())

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        if logs is not None and self._state is not None:
            for target in TARGETS:
                masks = [_to_numpy(m) for m in self._state.masks(target)]
                total = sum(m.size for m in masks)
                logs[f"pruned_{target}"] = sum(int(np.sum(m == 0)) for m in masks) / total

    def get_config(self) -> dict[str, Any]:
        for s in self.schedules.values():
            if not isinstance(s, PruningSchedule):
                raise ValueError(f"schedule {s!r} is not a keras_bertopt schedule and cannot be "
                                 "serialized; use PolynomialSparsity or ConstantSparsity")
        if self.data is not None:
            raise ValueError("a StructuredPruning with `data` cannot be serialized")
        return {"schedule": {t: keras.saving.serialize_keras_object(s)
                             for t, s in self.schedules.items()},
                "importance": self.importance, "batches": self.batches}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> StructuredPruning:
        config = dict(config)
        config["schedule"] = {t: keras.saving.deserialize_keras_object(s)
                              for t, s in config["schedule"].items()}
        return cls(**config)
