"""Masks inside the compiled train step; the schedule bookkeeping of the pruning callbacks.

How the masks reach every optimizer step:

* **TensorFlow (and torch).** Each masked variable carries a mask constraint
  (``variable.constraint``), which Keras optimizers apply right after the update,
  inside the compiled step.
* **JAX.** The optimizer update is stateless and sees only the trainable and optimizer
  variables, so a constraint cannot read the mask variables (they would be baked into
  the compiled program as constants). `install_masked_step` instead wraps the model's
  ``train_step(state, data)``: after the original step it multiplies each masked weight
  of the returned state by its mask, read from the same state (the masks are
  non-trainable model variables). The multiply is part of the one XLA program that
  runs the forward pass, the gradients and the optimizer update, so there is no
  per-step host work and `jax.jit`, ``steps_per_execution`` and
  `keras.distribution` shardings apply to it as to the rest of the step.
* **The step counter** of each pruning state is incremented inside the step as well
  (on every backend), so `keras.callbacks.BackupAndRestore` saves the true step.

`MaskingCallback` is the base of `MagnitudePruning` and `StructuredPruning`: it reads
the step once per epoch, counts steps on the host from the batch index, evaluates the
schedule in ``on_train_batch_begin`` (before the step that must see the new masks) and
in ``on_epoch_end`` (for the last step of an epoch), and touches the device only on
schedule steps. It has no ``on_train_batch_end``, so Keras keeps dispatching steps
asynchronously. A model whose masks were installed keeps them in every later `fit`,
with or without the callback, until the pruning is stripped.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import keras
import numpy as np

from keras_bertopt import _compat

#: Attribute of the model holding ``{state name: (bindings, step variable)}``.
REGISTRY_ATTR = "_kbo_masked_step"


@dataclasses.dataclass(frozen=True)
class MaskBinding:
    """One mask applied to one variable inside the train step.

    Attributes:
        variable: the masked model variable.
        mask: the 0/1 mask variable (a non-trainable model variable).
        axis: None for an elementwise mask of the variable's shape; an axis of the
            variable for a 1-D unit mask broadcast along it.
    """

    variable: Any
    mask: Any
    axis: int | None = None


def apply_mask(weights: Any, mask: Any, axis: int | None = None) -> Any:
    """``weights * mask``; a 1-D `mask` is broadcast along `axis` of `weights`."""
    mask = keras.ops.cast(mask, weights.dtype)
    if axis is not None:
        shape = [1] * len(weights.shape)
        shape[axis] = -1
        mask = keras.ops.reshape(mask, shape)
    return weights * mask


def constraints_see_masks() -> bool:
    """Whether a variable constraint can read mask variables inside the train step.

    False on JAX, whose optimizer update runs in a stateless scope holding only the
    trainable and optimizer variables.
    """
    return keras.backend.backend() != "jax"


def _registry(model: Any) -> dict[str, tuple[list[MaskBinding], Any]]:
    return getattr(model, REGISTRY_ATTR, None) or {}


def install_masked_step(
    model: Any, name: str, bindings: Sequence[MaskBinding], step: Any
) -> None:
    """Make `model`'s train step apply `bindings` (JAX) and count `step` after each update.

    `name` identifies the caller's state (one entry per name; installing again replaces
    it). The model's compiled train function is dropped so the next `fit` traces the
    new step.
    """
    registry = dict(_registry(model))
    entry = (list(bindings), step)
    changed = not _same_entry(registry.get(name), entry)
    registry[name] = entry
    object.__setattr__(model, REGISTRY_ATTR, registry)
    if "train_step" not in vars(model):
        object.__setattr__(model, "train_step", _masked_train_step(model))
        changed = True
    if changed and getattr(model, "train_function", None) is not None:
        model.train_function = None  # a step traced before would not apply these masks


def _same_entry(old: Any, new: tuple[list[MaskBinding], Any]) -> bool:
    if old is None or old[1] is not new[1] or len(old[0]) != len(new[0]):
        return False
    return all(a.variable is b.variable and a.mask is b.mask and a.axis == b.axis
               for a, b in zip(old[0], new[0], strict=True))


def uninstall_masked_step(model: Any, name: str) -> None:
    """Remove `name`'s masks; the plain train step is restored when none remain."""
    registry = dict(_registry(model))
    if registry.pop(name, None) is None:
        return
    if registry:
        object.__setattr__(model, REGISTRY_ATTR, registry)
    else:
        object.__delattr__(model, REGISTRY_ATTR)
        if "train_step" in vars(model):
            object.__delattr__(model, "train_step")
    if getattr(model, "train_function", None) is not None:
        model.train_function = None


def masked_step_installed(model: Any) -> bool:
    """Whether `model`'s train step applies masks installed by `install_masked_step`."""
    return bool(_registry(model)) and "train_step" in vars(model)


def _masked_train_step(model: Any) -> Any:
    original = type(model).train_step.__get__(model)
    if keras.backend.backend() != "jax":

        def train_step(data: Any) -> Any:
            logs = original(data)
            for _, step in _registry(model).values():
                step.assign_add(1)
            return logs

        return train_step

    def jax_train_step(state: Any, data: Any) -> Any:
        logs, state = original(state, data)
        trainable, non_trainable, optimizer_vars, metrics_vars = state
        trainable, non_trainable = list(trainable), list(non_trainable)
        t_index = {id(v): i for i, v in enumerate(model.trainable_variables)}
        n_index = {id(v): i for i, v in enumerate(model.non_trainable_variables)}
        for bindings, step in _registry(model).values():
            for b in bindings:
                mask = non_trainable[n_index[id(b.mask)]]
                if id(b.variable) in t_index:
                    i = t_index[id(b.variable)]
                    trainable[i] = apply_mask(trainable[i], mask, b.axis)
                else:
                    i = n_index[id(b.variable)]
                    non_trainable[i] = apply_mask(non_trainable[i], mask, b.axis)
            j = n_index[id(step)]
            non_trainable[j] = non_trainable[j] + keras.ops.ones_like(non_trainable[j])
        return logs, (trainable, non_trainable, optimizer_vars, metrics_vars)

    return jax_train_step


def sync_state(model: Any) -> None:
    """Bring JAX `fit`'s state back into the model's variables (no-op elsewhere)."""
    _compat.sync_training_state(model)


def enforce(bindings: Sequence[MaskBinding]) -> None:
    """Multiply every bound variable by its mask now (outside the train step)."""
    for b in bindings:
        b.variable.assign(apply_mask(b.variable.value, b.mask.value, b.axis))


class MaskingCallback(keras.callbacks.Callback):
    """Base of the pruning callbacks: masks in the step, schedule work only on schedule steps.

    Subclasses implement ``_prepare(model)`` (attach the state, call
    `install_masked_step`), ``_bindings()``, ``_step_variable()``,
    ``_due(step) -> update or None`` (evaluate the schedule at a step counted from 1)
    and ``_update(updates)`` (recompute the masks; `updates` is the list of the due
    steps' results, oldest first). The model's state is synced before ``_update``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._step: int | None = None
        self._epoch_base: int | None = None

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        self._prepare(model)

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self._step_variable() is None:
            self._prepare(self.model)
        # Read the step (and enforce the masks) at the first batch, after every
        # callback's on_train_begin ran (BackupAndRestore may restore them).
        self._step = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_base = None

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self._epoch_base is None:
            # The variables hold fit's state here: at train begin, and after the
            # previous epoch's end, before this epoch's first step reads them.
            self._epoch_base = int(_to_numpy(self._step_variable())) - int(batch)
            if self._step is None:
                self._step = self._epoch_base + int(batch)
                enforce(self._bindings())
        self._advance(self._epoch_base + int(batch))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._step is not None:
            sync_state(self.model)  # fit already synced; a no-op then
            self._advance(int(_to_numpy(self._step_variable())))

    def _advance(self, upto: int) -> None:
        """Evaluate the schedule at the steps after the last one seen, up to `upto`."""
        updates = []
        while self._step < upto:
            self._step += 1
            due = self._due(self._step)
            if due is not None:
                updates.append(due)
        if updates:
            sync_state(self.model)
            self._update(updates)

    # -- for subclasses ------------------------------------------------------
    def _prepare(self, model: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _bindings(self) -> list[MaskBinding]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _step_variable(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _due(self, step: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _update(self, updates: list[Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def _to_numpy(x: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))
