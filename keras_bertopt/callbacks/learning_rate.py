"""`LearningRateLogger`: the learning rate the optimizer actually applied."""

from __future__ import annotations

import re
from typing import Any

import keras
import numpy as np

from keras_bertopt import _compat
from keras_bertopt.callbacks._summary import ScalarWriter, check_every
from keras_bertopt.selection import EMBEDDING_PARTS, TRANSFORMER_LAYER


def _schedule_value(learning_rate: Any, step: int) -> float:
    """A learning rate (number, variable, schedule or callable) resolved at `step`."""
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        value = learning_rate(step)
    elif callable(learning_rate) and not hasattr(learning_rate, "numpy"):
        value = learning_rate()
    else:
        value = learning_rate
    return float(np.asarray(keras.ops.convert_to_numpy(value)))


def _group_name(path: str, layer_pattern: str, embedding_pattern: str) -> str:
    match = re.search(layer_pattern, path)
    if match:
        return f"transformer_layer_{match.group(1)}" if match.groups() else match.group(0)
    if re.search(embedding_pattern, path):
        return "embeddings"
    return "head"


def _multiplier_groups(optimizer: Any, base: float) -> dict[str, float]:
    """Per-group rates of an optimizer with per-variable multipliers (layer-wise decay).

    Reads `learning_rate_multipliers` (path -> multiplier, as
    `keras_bertopt.optimizers.BertAdamW` has once built). Groups are the
    transformer layers, the embeddings and the head (everything else); a group
    whose variables have different multipliers is logged per variable path.
    """
    try:
        multipliers = dict(getattr(optimizer, "learning_rate_multipliers", None) or {})
    except (AttributeError, KeyError):  # not built yet
        return {}
    if not multipliers or all(m == 1.0 for m in multipliers.values()):
        return {}
    layer_pattern = getattr(optimizer, "layer_pattern", None) or TRANSFORMER_LAYER
    embedding_pattern = getattr(optimizer, "embedding_pattern", None) or EMBEDDING_PARTS
    groups: dict[str, dict[str, float]] = {}
    for path, multiplier in multipliers.items():
        groups.setdefault(_group_name(path, layer_pattern, embedding_pattern), {})[path] = (
            multiplier
        )
    rates = {}
    for name in sorted(groups):
        members = groups[name]
        if len(set(members.values())) == 1:
            rates[f"learning_rate/{name}"] = base * next(iter(members.values()))
        else:
            for path, multiplier in sorted(members.items()):
                rates[f"learning_rate/{path}"] = base * multiplier
    return rates


def _base_optimizer(optimizer: Any) -> Any:
    # LossScaleOptimizer (mixed precision) wraps the optimizer that holds the schedule.
    return getattr(optimizer, "inner_optimizer", optimizer)


def applied_learning_rates(optimizer: Any) -> dict[str, float]:
    """Learning rates used by `optimizer`'s most recent update, one per parameter group.

    The schedule is evaluated at ``iterations - 1`` (Keras increments
    `optimizer.iterations` after applying the update), so the value is the rate
    of the step just taken, not the next one. Returns ``{"learning_rate": lr}``
    and, when the optimizer has parameter groups with their own rates (layer-wise
    decay), ``{"learning_rate/<group>": lr}`` for each group: the optimizer
    exposes them as per-variable `learning_rate_multipliers` (path ->
    multiplier, as `keras_bertopt.optimizers.create_optimizer(...,
    layerwise_lr_decay=...)` builds; groups: ``transformer_layer_<k>``,
    ``embeddings``, ``head``), through `learning_rate_groups(step)` returning a
    mapping from group name to rate, or through a list attribute `optimizers`
    (a multi-optimizer), whose members are logged in turn.
    """
    optimizer = _base_optimizer(optimizer)
    step = max(int(keras.ops.convert_to_numpy(optimizer.iterations)) - 1, 0)
    # `_learning_rate` holds the schedule itself; the public `learning_rate`
    # property resolves it at `iterations`, one step ahead of the one applied.
    schedule = _compat.learning_rate_schedule(optimizer)
    rates = {"learning_rate": _schedule_value(schedule, step)}
    rates.update(_multiplier_groups(optimizer, rates["learning_rate"]))
    groups_fn = getattr(optimizer, "learning_rate_groups", None)
    if callable(groups_fn):
        for name, value in dict(groups_fn(step)).items():
            rates[f"learning_rate/{name}"] = _schedule_value(value, step)
    members = getattr(optimizer, "optimizers", None)
    if isinstance(members, (list, tuple)):
        for i, member in enumerate(members):
            inner = member[0] if isinstance(member, (list, tuple)) else member
            name = getattr(inner, "name", None) or str(i)
            for key, value in applied_learning_rates(inner).items():
                if key == "learning_rate":
                    rates[f"learning_rate/{i}_{name}"] = value
    return rates


@keras.saving.register_keras_serializable(package="keras_bertopt")
class LearningRateLogger(keras.callbacks.Callback):
    """Logs the learning rate applied at the last step (schedules resolved), per epoch or step.

    Adds ``learning_rate`` (and ``learning_rate/<group>`` for layer-wise decay
    or multi-optimizers) to `logs`, so History, CSVLogger and TensorBoard see it.

    Example:

    ```python
    import keras, keras_bertopt as kb

    schedule = keras.optimizers.schedules.PolynomialDecay(1e-3, decay_steps=128)
    model = kb.models.build_classifier(kb.models.TinyConfig(), 2, 32)
    model.compile(optimizer=keras.optimizers.AdamW(schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(kb.data.demo_dataset("train"), epochs=2,
                        callbacks=[kb.callbacks.LearningRateLogger()])
    history.history["learning_rate"]   # rate of the last step of each epoch
    ```

    Args:
        every_n_steps: also log into the batch logs every N steps (None: epochs only).
        log_dir: optional TensorBoard directory (scalars ``epoch_learning_rate``,
            ``batch_learning_rate``).
    """

    def __init__(self, every_n_steps: int | None = None, log_dir: str | None = None) -> None:
        super().__init__()
        self.every_n_steps = check_every(every_n_steps, "every_n_steps")
        self._writer = ScalarWriter(log_dir)
        self.log_dir = self._writer.log_dir

    def _rates(self) -> dict[str, float]:
        return applied_learning_rates(self.model.optimizer)

    @property
    def async_safe(self) -> bool:
        """Without `every_n_steps` the batch hook does nothing: Keras may keep dispatching
        steps asynchronously (any other ``on_train_batch_end`` makes it wait every step)."""
        return self.every_n_steps is None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._logged_windows = 0

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
        rates = self._rates()
        if logs is not None:
            logs.update(rates)
        step = int(keras.ops.convert_to_numpy(_base_optimizer(self.model.optimizer).iterations))
        self._writer.write(rates, step, prefix="batch_")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        rates = self._rates()
        if logs is not None:
            logs.update(rates)
        self._writer.write(rates, epoch, prefix="epoch_")

    def on_train_end(self, logs: dict | None = None) -> None:
        self._writer.close()

    def get_config(self) -> dict[str, Any]:
        return {"every_n_steps": self.every_n_steps, "log_dir": self.log_dir}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LearningRateLogger:
        return cls(**config)


__all__ = ["LearningRateLogger", "applied_learning_rates"]
