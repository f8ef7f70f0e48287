"""The `Distiller`'s arguments checked and normalised before any work is done.

`check_arguments` validates the hyper-parameters, `resolve_layer_map` turns a
dict / list / None into ``[(student layer, teacher layer), ...]`` and `as_loss`
makes the hard-label loss given to `compile` a `keras.losses.Loss`.

```python
from keras_bertopt.distillation.arguments import check_arguments, resolve_layer_map
temperature, alpha, hidden, attention = check_arguments(2.0, 0.5)
pairs = resolve_layer_map(None, num_student_layers=3, num_teacher_layers=6)
# [(0, 0), (1, 3), (2, 5)]
```
"""

from __future__ import annotations

from typing import Any

import keras

from keras_bertopt.distillation.students import evenly_spaced


def _number(argument: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"`{argument}` must be a number, got {value!r}")
    return float(value)


def check_arguments(
    temperature: Any, alpha: Any, hidden_weight: Any = 0.0, attention_weight: Any = 0.0
) -> tuple[float, float, float, float]:
    """Validate the distillation hyper-parameters; errors name the argument."""
    temperature = _number("temperature", temperature)
    if not temperature > 0:
        raise ValueError(f"`temperature` must be > 0, got {temperature}")
    alpha = _number("alpha", alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(
            f"`alpha` (weight of the teacher's soft targets; 1 - alpha weighs the hard "
            f"labels) must be in [0, 1], got {alpha}"
        )
    weights = []
    for argument, value in (
        ("hidden_weight", hidden_weight),
        ("attention_weight", attention_weight),
    ):
        value = _number(argument, value)
        if value < 0:
            raise ValueError(f"`{argument}` must be >= 0, got {value}")
        weights.append(value)
    return temperature, alpha, weights[0], weights[1]


def resolve_layer_map(
    layer_map: Any, num_student_layers: int, num_teacher_layers: int
) -> list[tuple[int, int]]:
    """``[(student layer, teacher layer), ...]`` from a dict, a list or None (evenly spaced)."""
    if layer_map is None:
        teacher = evenly_spaced(num_teacher_layers, num_student_layers)
        return list(enumerate(teacher))
    if isinstance(layer_map, dict):
        pairs = list(layer_map.items())
    elif isinstance(layer_map, (list, tuple)):
        pairs = [
            tuple(p) if isinstance(p, (list, tuple)) else (i, p) for i, p in enumerate(layer_map)
        ]
    else:
        raise ValueError(
            "`layer_map` must be a dict {student layer: teacher layer}, a list of teacher "
            f"layers (one per student layer) or None; got {type(layer_map).__name__}"
        )
    out = []
    for pair in pairs:
        if len(pair) != 2 or not all(isinstance(i, int) and not isinstance(i, bool) for i in pair):
            raise ValueError(
                f"`layer_map` entries must be (student, teacher) integers, got {pair!r}"
            )
        s, t = pair
        if not 0 <= s < num_student_layers or not 0 <= t < num_teacher_layers:
            raise ValueError(
                f"`layer_map` pair {pair} is out of range: the student has {num_student_layers} "
                f"layers, the teacher {num_teacher_layers} (0-based)"
            )
        out.append((s, t))
    if not out:
        raise ValueError("`layer_map` is empty")
    return out


def as_loss(loss: Any) -> Any:
    """A `keras.losses.Loss` instance (scaled for tf.distribute), from a name, function or Loss."""
    if isinstance(loss, keras.losses.Loss):
        return loss
    fn = keras.losses.get(loss) if isinstance(loss, (str, dict)) else loss
    if isinstance(fn, keras.losses.Loss):
        return fn
    if not callable(fn):
        raise ValueError(f"`loss` must be a Keras loss, a loss name or a function, got {loss!r}")
    return keras.losses.LossFunctionWrapper(fn)
