"""`MagnitudePruning`: gradual magnitude pruning of a Keras 3 model inside `model.fit`.

How it is wired (see `masks.py` for the math, `state.py` for `PruningState` and
`MaskConstraint`, `arguments.py` for the pattern arguments):

* **State in the model.** When `fit` hands the callback its model
  (`set_model`, before `on_train_begin`), a small non-trainable `PruningState`
  layer is attached to the model as the attribute ``_kbo_pruning_state``. It
  holds one 0/1 mask variable per pruned variable and the pruning step. Being a
  tracked sub-layer, its variables are part of ``model.weights``, of
  ``model.save_weights`` files and of ``keras.callbacks.BackupAndRestore``
  checkpoints, so an interrupted run resumes with the same masks and step.
  (A ``.keras`` file stores the pruned weights; `keras.saving.load_model`
  rebuilds the model from its config, which has no pruning state: attach a
  new `MagnitudePruning` to go on pruning.)
* **Zeros stay zero after every optimizer step.** Each pruned variable gets a
  `MaskConstraint` as its ``variable.constraint``. Keras optimizers apply
  variable constraints right after every update, inside the compiled train
  step (``BaseOptimizer.apply``), so the mask multiply runs in the traced graph
  with no Python work per step, under `tf.distribute` strategies as well. Adam's
  moments of pruned weights may stay non-zero, but the weight is reset to
  exactly zero after each update, so it never regrows (an existing constraint
  on the variable is kept and applied first).
* **On the JAX backend** the optimizer update is stateless and a constraint
  cannot read the mask variables; there the model's train step is wrapped so the
  mask multiply runs inside the same compiled step (`masking.py`). Either way
  there is no per-step Python work: the callback has no ``on_train_batch_end``.
* **Masks change only on schedule steps.** Before the step after the ``k``-th
  training batch (steps count from 1, as tfmot's ``pruning_step``; the last step of
  an epoch at the epoch's end) the callback asks ``schedule(k) -> (should_prune,
  sparsity)``; when True it recomputes the masks from the current magnitudes (on
  the device with `device_masks` on JAX, NumPy elsewhere) and zeroes the weights.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

import keras
import numpy as np

from keras_bertopt import _compat
from keras_bertopt.kernels import einsum_reduce_axes
from keras_bertopt.pruning import device_masks
from keras_bertopt.pruning import masks as mask_math
from keras_bertopt.pruning.arguments import PATTERNS as PATTERNS
from keras_bertopt.pruning.arguments import SCOPES, parse_pattern, pattern_config
from keras_bertopt.pruning.masking import (
    MaskBinding,
    MaskingCallback,
    constraints_see_masks,
    install_masked_step,
    sync_state,
)
from keras_bertopt.pruning.schedules import PruningSchedule
from keras_bertopt.pruning.state import (
    STATE_ATTR,
    MaskConstraint,
    PruningState,
    attach_state,
    get_state,
)
from keras_bertopt.pruning.state import detach_state as detach_state
from keras_bertopt.selection import TRANSFORMER_KERNELS, Pattern, select_variables, variable_path


def _reduction_axes_by_variable(model: Any) -> dict[int, tuple[int, ...]]:
    """id(kernel) -> reduction axes for every EinsumDense kernel in `model`."""
    out: dict[int, tuple[int, ...]] = {}
    for layer in _compat.flatten_layers(model):
        if isinstance(layer, keras.layers.EinsumDense):
            kernel = _compat.einsum_kernel(layer)
            try:
                axes = einsum_reduce_axes(layer.equation)
            except ValueError:  # an equation we cannot read: the Dense convention applies
                continue
            if kernel is not None:
                out[id(kernel)] = axes
    return out


def _to_numpy(x: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


@keras.saving.register_keras_serializable(package="keras_bertopt")
class MagnitudePruning(MaskingCallback):
    """Prune the smallest-magnitude weights of a model during `fit`.

    Args:
        schedule: a callable ``step -> (should_prune, sparsity)`` such as
            `PolynomialSparsity` or `ConstantSparsity` (tfmot's schedule objects
            work unchanged). Steps count training batches from 1.
        include: regex (or list) on ``variable.path`` choosing the variables to
            prune (via `keras_bertopt.selection.select_variables`); defaults to
            the transformer kernels (attention q/k/v/output and feed-forward).
        exclude: regex (or list) removing variables from `include`'s choice.
        pattern: ``"unstructured"``; ``"block"`` (blocks of `block_shape` on the
            2-D ``(inputs, outputs)`` view of each kernel: EinsumDense kernels
            have their summed-over axes flattened into rows, e.g. BERT's query
            kernel ``(hidden, heads, head_dim)`` is seen as
            ``(hidden, heads * head_dim)``); or ``"n:m"`` (keep the `n` largest of
            every `m` consecutive weights along the input/reduction axis, i.e.
            the ``m`` inputs feeding one output: the layout of TFLite's
            ``[out, in]`` weights and of NVIDIA 2:4 sparse tensor cores). A string
            like ``"2:4"`` means ``pattern="n:m", n_m=(2, 4)``. With n:m the
            sparsity is ``1 - n/m`` at every schedule step whose sparsity is > 0.
        block_shape: ``(rows, cols)`` of a block for ``pattern="block"``.
        n_m: ``(n, m)`` for ``pattern="n:m"``.
        scope: ``"per_variable"`` (each variable reaches the target sparsity)
            or ``"global"`` (one magnitude threshold across all selected
            variables; unstructured and block only).

    Pruning ``size`` weights to sparsity ``s`` zeroes exactly ``round(s * size)``
    of them (blocks: ``round(s * num_blocks)`` blocks), ties broken by index.
    Masks are applied after every optimizer update inside the train step
    (through ``variable.constraint``), so pruned weights stay exactly zero.
    With ``steps_per_execution > 1`` masks are recomputed between executions.
    Adds ``sparsity`` (the fraction of pruned weights among the selected
    variables) to the epoch logs.

    Example:

    ```python
    pruning = keras_bertopt.pruning.MagnitudePruning(
        schedule=keras_bertopt.pruning.PolynomialSparsity(
            initial_sparsity=0.0, final_sparsity=0.8, begin_step=0, end_step=2000,
            frequency=100),
        include=r"transformer_layer_\\d+/.*/kernel", pattern="unstructured")
    model.fit(train, epochs=3, callbacks=[pruning])
    model = keras_bertopt.pruning.strip_pruning(model)
    print(keras_bertopt.pruning.sparsity_report(model))
    ```

    Raises:
        ValueError: before training, for a bad schedule, pattern, block shape
            or n:m, an `include` matching no variable, or a kernel the block
            shape / m does not divide.
    """

    def __init__(
        self,
        schedule: Callable[[int], tuple[Any, Any]],
        include: Pattern = TRANSFORMER_KERNELS,
        exclude: Pattern = None,
        pattern: str = "unstructured",
        block_shape: Sequence[int] = (1, 4),
        n_m: Sequence[int] = (2, 4),
        scope: str = "per_variable",
    ) -> None:
        super().__init__()
        if not callable(schedule):
            raise ValueError(
                "`schedule` must be a callable step -> (should_prune, sparsity) such as "
                f"PolynomialSparsity(...); got {schedule!r}"
            )
        self.schedule = schedule
        self.include = include
        self.exclude = exclude
        self.pattern, self.block_shape, self.n_m = parse_pattern(pattern, block_shape, n_m)
        if scope not in SCOPES:
            raise ValueError(f"`scope` must be one of {SCOPES}, got {scope!r}")
        if scope == "global" and self.pattern == "n:m":
            raise ValueError(
                "`scope`='global' needs pattern 'unstructured' or 'block'; n:m groups are local"
            )
        self.scope = scope
        # Fail early on a schedule that does not return (bool, sparsity in [0, 1)).
        self._evaluate(1)
        self._variables: list[Any] = []
        self._views: list[mask_math.KernelView] = []
        self._state: PruningState | None = None
        self._sparsity: float | None = None

    # -- schedule ---------------------------------------------------------
    def _evaluate(self, step: int) -> tuple[bool, float]:
        try:
            should, sparsity = self.schedule(step)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"`schedule`({step}) must return (should_prune, sparsity); it raised {err!r}"
            ) from None
        should = bool(np.asarray(should))
        sparsity = float(np.asarray(sparsity))
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(
                f"`schedule`({step}) returned sparsity {sparsity}; it must be in [0, 1)"
            )
        return should, sparsity

    # -- model wiring -----------------------------------------------------
    @property
    def variables(self) -> list[Any]:
        """The variables being pruned (after `set_model`)."""
        return list(self._variables)

    @property
    def state(self) -> PruningState | None:
        return self._state

    def _prepare(self, model: Any) -> None:
        variables = select_variables(model, self.include, self.exclude, argument="include")
        not_float = [variable_path(v) for v in variables if "float" not in str(v.dtype)]
        if not_float:
            raise ValueError(
                f"`include` selected non-float variables, which cannot be pruned: {not_float}"
            )
        axes = _reduction_axes_by_variable(model)
        views = [mask_math.kernel_view(v.shape, axes.get(id(v))) for v in variables]
        for v, view in zip(variables, views, strict=True):
            if self.pattern == "block":
                mask_math.check_block_shape(view, self.block_shape, variable_path(v))
            elif self.pattern == "n:m":
                mask_math.check_n_m(view, self.n_m[0], self.n_m[1], variable_path(v))
        paths = [variable_path(v) for v in variables]
        shapes = [tuple(v.shape) for v in variables]
        state = get_state(model)
        if state is not None and (state.variable_paths != paths or state.shapes != shapes):
            raise ValueError(
                "the model already carries pruning state for other variables "
                f"({state.variable_paths[:3]}...); call keras_bertopt.pruning.strip_pruning(model) "
                "before pruning it with a different `include`/`exclude`"
            )
        if state is None:
            strategy = getattr(model, "distribute_strategy", None)
            scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
            with scope:
                state = PruningState(paths, shapes, [str(v.dtype) for v in variables])
            attach_state(model, state)
        in_step = constraints_see_masks()
        for v, mask in zip(variables, state.masks, strict=True):
            current = v.constraint
            if isinstance(current, MaskConstraint) and current.mask is mask and in_step:
                continue
            inner = current.inner if isinstance(current, MaskConstraint) else current
            # JAX: the wrapped train step masks, no constraint (it could not read the mask).
            v.constraint = MaskConstraint(mask, inner=inner) if in_step else inner
        self._variables, self._views, self._state = variables, views, state
        install_masked_step(model, STATE_ATTR, self._bindings(), state.step)

    # -- MaskingCallback hooks ----------------------------------------------
    def _bindings(self) -> list[MaskBinding]:
        return [MaskBinding(v, m) for v, m in zip(self._variables, self._state.masks, strict=True)]

    def _step_variable(self) -> Any:
        return None if self._state is None else self._state.step

    def _due(self, step: int) -> float | None:
        should, sparsity = self._evaluate(step)
        return sparsity if should else None

    def _update(self, updates: list[float]) -> None:
        self.update_masks(updates[-1])

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        if logs is not None:
            logs["sparsity"] = self.current_sparsity()

    # -- masks -------------------------------------------------------------
    def compute_masks(self, sparsity: float) -> list[np.ndarray]:
        """Masks for the current weights at `sparsity` (does not assign them)."""
        return [_to_numpy(m) for m in self._masks_for(sparsity)]

    def _masks_for(self, sparsity: float) -> list[Any]:
        """New masks as arrays of the backend (JAX: computed on the device)."""
        on_device = keras.backend.backend() == "jax"
        math = device_masks if on_device else mask_math
        weights = [v.value if on_device else _to_numpy(v) for v in self._variables]
        if sparsity <= 0.0:
            return [keras.ops.ones(w.shape, dtype=w.dtype) for w in weights]
        if self.pattern == "n:m":
            n, m = self.n_m
            return [math.n_m_mask(w, n, m, view)
                    for w, view in zip(weights, self._views, strict=True)]
        block = self.block_shape if self.pattern == "block" else None
        if self.scope == "global":
            return math.global_masks(weights, sparsity, block, self._views)
        if block is None:
            return [math.magnitude_mask(w, sparsity) for w in weights]
        return [math.block_mask(w, sparsity, block, view)
                for w, view in zip(weights, self._views, strict=True)]

    def update_masks(self, sparsity: float) -> None:
        """Recompute the masks at `sparsity` from the current magnitudes and zero the weights."""
        if self._state is None:
            raise ValueError("`update_masks` needs a model: call `set_model(model)` first")
        sync_state(self.model)
        for v, mask_var, mask in zip(self._variables, self._state.masks,
                                     self._masks_for(sparsity), strict=True):
            mask_var.assign(mask)
            v.assign(v.value * mask_var.value)
        self._sparsity = None  # read from the masks when asked

    def current_sparsity(self) -> float:
        """Fraction of pruned weights among the selected variables (from the masks)."""
        if self._state is None:
            return 0.0
        if self._sparsity is None:
            zeros = total = 0
            for mask_var in self._state.masks:
                mask = _to_numpy(mask_var)
                zeros += int(mask.size - np.count_nonzero(mask))
                total += int(mask.size)
            self._sparsity = zeros / max(total, 1)
        return self._sparsity

    def get_config(self) -> dict[str, Any]:
        if isinstance(self.schedule, PruningSchedule):
            schedule = keras.saving.serialize_keras_object(self.schedule)
        else:
            raise ValueError(
                f"`schedule` {self.schedule!r} is not a keras_bertopt schedule and cannot be "
                "serialized; use PolynomialSparsity or ConstantSparsity"
            )
        return {
            "schedule": schedule,
            "include": pattern_config(self.include),
            "exclude": pattern_config(self.exclude),
            "pattern": self.pattern,
            "block_shape": list(self.block_shape),
            "n_m": list(self.n_m),
            "scope": self.scope,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MagnitudePruning:
        config = dict(config)
        config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
        return cls(**config)
