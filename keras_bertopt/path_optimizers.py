"""Keras optimizers with BERT's rules by variable path: `BertAdamW`, `BertLamb`, `BertAdam`.

Two things Keras's optimizers do not do are added by the optimizer classes here
(the Keras optimizer of the same kind plus these rules), and both are stored as
*path patterns* in the optimizer config, so they survive `model.save` /
`keras.saving.load_model` (also in safe mode) and need no model at construction
time:

* **Weight-decay exclusion by `variable.path`.** Keras's
  `optimizer.exclude_from_weight_decay(var_names=[...])` searches its patterns
  in `variable.name`. On the TensorFlow backend the optimizer sees the
  underlying `tf.Variable`, whose name happens to carry the layer path; a Keras 3
  variable's own `.name` is the short name (``gamma``, ``bias``), so the same
  list is not guaranteed on other backends. Here the patterns are matched
  against `variable.path` (through `keras_bertopt.selection`) when the
  optimizer is built, i.e. when it first sees the model's variables, and the
  selected variables are handed to Keras's public
  `exclude_from_weight_decay(var_list=...)`, which keys them by variable
  identity on every backend.
* **Per-variable learning-rate multipliers** (layer-wise LR decay and explicit
  ``(pattern, multiplier)`` pairs). Resolved from variable paths at build time
  and applied in `update_step`, which scales the learning rate each variable's
  Keras update step sees (so Adam's first step moves a variable by about
  ``lr * multiplier``, not just its gradient). Decoupled weight decay is applied
  in the same place with the same scaled rate (as ELECTRA's and Hugging Face's
  layer-wise-decay implementations do), instead of in Keras's separate
  all-variables decay pass.

Example (`keras_bertopt.optimizers.create_optimizer` builds them with the BERT recipe):

```python
from keras_bertopt.path_optimizers import BertAdamW
from keras_bertopt.selection import NO_DECAY
optimizer = BertAdamW(learning_rate=5e-5, weight_decay=0.01, layerwise_lr_decay=0.9,
                      exclude_from_weight_decay_paths=list(NO_DECAY))
model.compile(optimizer=optimizer, loss=..., metrics=["accuracy"])
```
"""

from __future__ import annotations

import numbers
import re
from typing import Any, Iterable, Sequence

import keras
from keras import ops

from keras_bertopt._compat import (
    OPTIMIZER_OVERRIDES,
    check_overrides,
    learning_rate_schedule,
    optimizer_variable_key,
    uses_weight_decay,
)
from keras_bertopt.lr_multipliers import (
    EMBEDDING_PATTERN,
    LAYER_PATTERN,
    check_pairs,
    layerwise_multipliers,
)
from keras_bertopt.selection import select_variables, variable_path


class _Untracked:
    """A plain attribute holder that Keras's attribute tracking leaves alone."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


check_overrides(keras.optimizers.Optimizer, OPTIMIZER_OVERRIDES)


class _PathRules:
    """Mixin: weight-decay exclusion and LR multipliers chosen by `variable.path`.

    Must come before the Keras optimizer class in the bases. See the module
    docstring for how and why.
    """

    #: Adam-style L2 added to the gradient (torch.optim.Adam) instead of decoupled decay.
    _coupled_weight_decay = False

    def __init__(
        self,
        *args: Any,
        exclude_from_weight_decay_paths: Sequence[str] | None = None,
        layerwise_lr_decay: float | None = None,
        lr_multipliers: Sequence[Sequence[Any]] | None = None,
        layer_pattern: str = LAYER_PATTERN,
        embedding_pattern: str = EMBEDDING_PATTERN,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(exclude_from_weight_decay_paths, str):
            exclude_from_weight_decay_paths = [exclude_from_weight_decay_paths]
        self.exclude_from_weight_decay_paths = list(exclude_from_weight_decay_paths or [])
        for pattern in self.exclude_from_weight_decay_paths:
            try:
                re.compile(pattern)
            except (re.error, TypeError) as err:
                raise ValueError(
                    f"`exclude_from_weight_decay_paths` entry {pattern!r} is not a regex: {err}"
                ) from None
        if layerwise_lr_decay is not None:
            if (
                isinstance(layerwise_lr_decay, bool)
                or not isinstance(layerwise_lr_decay, numbers.Real)
                or not 0.0 < layerwise_lr_decay <= 1.0
            ):
                raise ValueError(
                    f"`layerwise_lr_decay` must be in (0, 1] (0.8-0.95 is usual); "
                    f"got {layerwise_lr_decay!r}"
                )
            layerwise_lr_decay = float(layerwise_lr_decay)
        self.layerwise_lr_decay = layerwise_lr_decay
        self.lr_multipliers = check_pairs(lr_multipliers)
        self.layer_pattern = layer_pattern
        self.embedding_pattern = embedding_pattern
        # Held in a plain object: a list of variables set as an attribute would be
        # tracked by Keras as optimizer variables.
        self._user_exclusions = _Untracked(var_list=[], var_names=None)
        self._multiplier_by_key: dict[Any, float] = {}
        self._multiplier_by_path: dict[str, float] = {}

    # -- the learning rate under gradient accumulation -------------------------------

    def _get_current_learning_rate(self) -> Any:
        # Keras 3.15 evaluates a schedule at `_iterations`, which counts micro-batches
        # when `gradient_accumulation_steps` is set, so warm-up and decay would run
        # `gradient_accumulation_steps` times too fast (and differ from one large
        # batch). The schedule's clock is the optimizer step: `iterations`.
        schedule = learning_rate_schedule(self)
        if self.gradient_accumulation_steps and isinstance(
            schedule, keras.optimizers.schedules.LearningRateSchedule
        ):
            return schedule(self.iterations)
        return super()._get_current_learning_rate()

    # -- weight decay ---------------------------------------------------------------

    def exclude_from_weight_decay(
        self, var_list: Sequence[Any] | None = None, var_names: Sequence[str] | None = None
    ) -> None:
        """Keras's method; what the caller passes is kept and merged at build time."""
        self._user_exclusions = _Untracked(
            var_list=list(var_list or []), var_names=list(var_names) if var_names else None
        )
        super().exclude_from_weight_decay(var_list=var_list, var_names=var_names)

    def _apply_weight_decay(self, variables: Any) -> None:
        # Applied per variable in `update_step` instead, with that variable's rate.
        return None

    # -- build: resolve the path rules ----------------------------------------------

    def build(self, var_list: Sequence[Any]) -> None:
        var_list = list(var_list)
        excluded = []
        if self.exclude_from_weight_decay_paths:
            excluded = select_variables(
                var_list,
                include=self.exclude_from_weight_decay_paths,
                trainable_only=False,
                argument="exclude_from_weight_decay_paths",
                allow_empty=True,
            )
        super().exclude_from_weight_decay(
            var_list=self._user_exclusions.var_list + excluded,
            var_names=self._user_exclusions.var_names,
        )
        paths = [variable_path(v) for v in var_list]
        multipliers = {p: 1.0 for p in paths}
        if self.layerwise_lr_decay is not None:
            multipliers = layerwise_multipliers(
                paths, self.layerwise_lr_decay, self.layer_pattern, self.embedding_pattern
            )
        for pattern, factor in self.lr_multipliers:
            chosen = select_variables(
                var_list, include=pattern, trainable_only=False, argument="lr_multipliers"
            )
            for v in chosen:
                multipliers[variable_path(v)] *= factor
        super().build(var_list)
        self._multiplier_by_path = multipliers
        self._multiplier_by_key = {
            optimizer_variable_key(self, v): multipliers[variable_path(v)] for v in var_list
        }

    def learning_rate_multiplier(self, variable: Any) -> float:
        """The multiplier of `variable` (a model variable, its path, or the backend variable)."""
        if isinstance(variable, str):
            return self._multiplier_by_path.get(variable, 1.0)
        return self._multiplier_by_key.get(optimizer_variable_key(self, variable), 1.0)

    @property
    def learning_rate_multipliers(self) -> dict[str, float]:
        """Path -> learning-rate multiplier, resolved when the optimizer was built."""
        return dict(self._multiplier_by_path)

    def decayed_variable_paths(self, variables: Iterable[Any]) -> list[str]:
        """Paths of `variables` that weight decay applies to (after the optimizer is built)."""
        if not self.weight_decay:
            return []
        return [variable_path(v) for v in variables if uses_weight_decay(self, v)]

    # -- the update -----------------------------------------------------------------

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        multiplier = self.learning_rate_multiplier(variable)
        lr = ops.cast(learning_rate, variable.dtype)
        if multiplier != 1.0:
            lr = ops.multiply(lr, multiplier)
        if self.weight_decay and uses_weight_decay(self, variable):
            wd = ops.cast(self.weight_decay, variable.dtype)
            if self._coupled_weight_decay:
                gradient = ops.add(
                    ops.convert_to_tensor(gradient, variable.dtype), ops.multiply(variable, wd)
                )
            else:
                self.assign_sub(variable, ops.multiply(variable, ops.multiply(wd, lr)))
        super().update_step(gradient, variable, lr)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "exclude_from_weight_decay_paths": list(self.exclude_from_weight_decay_paths),
                "layerwise_lr_decay": self.layerwise_lr_decay,
                "lr_multipliers": [list(pair) for pair in self.lr_multipliers],
                "layer_pattern": self.layer_pattern,
                "embedding_pattern": self.embedding_pattern,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_bertopt")
class BertAdamW(_PathRules, keras.optimizers.AdamW):
    """Keras `AdamW` + weight-decay exclusion and LR multipliers by variable path.

    Args:
        exclude_from_weight_decay_paths: regexes searched in `variable.path`;
            matching variables get no weight decay.
        layerwise_lr_decay: factor in (0, 1] for layer-wise LR decay (see
            `layerwise_multipliers`), or None.
        lr_multipliers: extra ``(regex, multiplier)`` pairs; every matching
            variable's rate is multiplied (after layer-wise decay).
        layer_pattern: how layer-wise decay finds the
            transformer layers (group 1: 0-based index) and the embeddings.
        embedding_pattern: as `layer_pattern`.
        **kwargs: `keras.optimizers.AdamW` arguments.
    """


@keras.saving.register_keras_serializable(package="keras_bertopt")
class BertLamb(_PathRules, keras.optimizers.Lamb):
    """Keras `Lamb` + the same path rules as `BertAdamW`.

    Keras's LAMB applies weight decay decoupled, outside the trust ratio (the
    LAMB paper puts it inside); the per-variable multiplier scales both.
    """


@keras.saving.register_keras_serializable(package="keras_bertopt")
class BertAdam(_PathRules, keras.optimizers.Adam):
    """Keras `Adam` + the path rules; `weight_decay` is L2 added to the gradient.

    That is `torch.optim.Adam(weight_decay=...)`'s coupled L2 (Adam rescales it
    per coordinate), not AdamW's decoupled decay; excluded paths get none.
    """

    _coupled_weight_decay = True
