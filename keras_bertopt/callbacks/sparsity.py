"""`SparsityLogger`: overall and per-variable fraction of exact zeros."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_bertopt import _compat
from keras_bertopt.callbacks._summary import ScalarWriter, check_every
from keras_bertopt.selection import (
    TRANSFORMER_KERNELS,
    Pattern,
    compile_patterns,
    select_variables,
    variable_path,
)


def sparsity_of(variables: Any) -> tuple[float, dict[str, float]]:
    """(overall, {variable path: sparsity}) where sparsity = fraction of exact zeros.

    The overall number pools all elements, so large matrices weigh more.
    """
    zeros = 0
    total = 0
    per_variable: dict[str, float] = {}
    for v in variables:
        value = np.asarray(keras.ops.convert_to_numpy(v))
        n_zero = int(value.size - np.count_nonzero(value))
        per_variable[variable_path(v)] = n_zero / value.size if value.size else 0.0
        zeros += n_zero
        total += value.size
    return (zeros / total if total else 0.0), per_variable


@keras.saving.register_keras_serializable(package="keras_bertopt")
class SparsityLogger(keras.callbacks.Callback):
    """Logs the sparsity (fraction of zeros) of the selected variables.

    Adds ``sparsity`` (all selected elements pooled) to `logs`; with
    ``per_layer=True`` also ``sparsity/<variable path>`` for each variable. The
    latest per-variable numbers are always in `self.layer_sparsity`.

    Example:

    ```python
    import keras, keras_bertopt as kb

    model = kb.models.build_classifier(kb.models.TinyConfig(), 2, 32)
    model.compile(optimizer="adamw",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    logger = kb.callbacks.SparsityLogger(include=r"transformer_layer_\\d+/.*kernel$")
    model.fit(kb.data.demo_dataset("train"), epochs=1, callbacks=[logger])
    logger.layer_sparsity   # {"transformer_layer_0/.../query/kernel": 0.0, ...}
    ```

    Args:
        include: regexes on `variable.path`, as in
            `keras_bertopt.selection.select_variables` (default: transformer kernels).
        exclude: as `include`.
        per_layer: also put each variable's sparsity into `logs`.
        every_n_steps: also log every N steps (None: epochs only).
        log_dir: optional TensorBoard directory.
    """

    def __init__(
        self,
        include: Pattern = TRANSFORMER_KERNELS,
        exclude: Pattern = None,
        *,
        per_layer: bool = False,
        every_n_steps: int | None = None,
        log_dir: str | None = None,
    ) -> None:
        super().__init__()
        compile_patterns(include, "include")
        compile_patterns(exclude, "exclude")
        self.include = include
        self.exclude = exclude
        self.per_layer = bool(per_layer)
        self.every_n_steps = check_every(every_n_steps, "every_n_steps")
        self._writer = ScalarWriter(log_dir)
        self.log_dir = self._writer.log_dir
        self._variables: list[Any] | None = None
        self.sparsity: float | None = None
        self.layer_sparsity: dict[str, float] = {}

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        self._variables = None

    def _measure(self) -> dict[str, float]:
        if self._variables is None:
            self._variables = select_variables(
                self.model, self.include, self.exclude, trainable_only=False
            )
        self.sparsity, self.layer_sparsity = sparsity_of(self._variables)
        values = {"sparsity": self.sparsity}
        if self.per_layer:
            values.update({f"sparsity/{k}": v for k, v in self.layer_sparsity.items()})
        return values

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._logged_windows = 0
        # Select now so a pattern that matches nothing fails before training starts.
        self._variables = select_variables(
            self.model, self.include, self.exclude, trainable_only=False
        )

    @property
    def async_safe(self) -> bool:
        """Without `every_n_steps` the batch hook does nothing: Keras may keep dispatching
        steps asynchronously (any other ``on_train_batch_end`` makes it wait every step)."""
        return self.every_n_steps is None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._logged_windows = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # `batch` is the last step of the execution (several with steps_per_execution):
        # log when a multiple of every_n_steps was passed.
        if self.every_n_steps is None or (batch + 1) // self.every_n_steps <= getattr(
                self, "_logged_windows", 0):
            return
        self._logged_windows = (batch + 1) // self.every_n_steps
        _compat.sync_training_state(self.model)  # JAX: the values live outside the variables
        values = self._measure()
        if logs is not None:
            logs.update(values)
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self._writer.write({"sparsity": self.sparsity, **{
            f"sparsity/{k}": v for k, v in self.layer_sparsity.items()}}, step, "batch_")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        values = self._measure()
        if logs is not None:
            logs.update(values)
        self._writer.write({"sparsity": self.sparsity, **{
            f"sparsity/{k}": v for k, v in self.layer_sparsity.items()}}, epoch, "epoch_")

    def on_train_end(self, logs: dict | None = None) -> None:
        self._writer.close()

    def get_config(self) -> dict[str, Any]:
        def plain(pattern: Pattern) -> Any:
            if pattern is None or isinstance(pattern, str):
                return pattern
            items = [pattern] if not isinstance(pattern, (list, tuple)) else pattern
            return [getattr(p, "pattern", p) for p in items]

        return {
            "include": plain(self.include),
            "exclude": plain(self.exclude),
            "per_layer": self.per_layer,
            "every_n_steps": self.every_n_steps,
            "log_dir": self.log_dir,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SparsityLogger:
        return cls(**config)
