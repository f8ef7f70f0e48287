"""Learning-rate schedules for BERT fine-tuning: warm-up + decay, as Keras objects.

Every schedule here is a `keras.optimizers.schedules.LearningRateSchedule`, is
registered with Keras (package ``keras_bertopt``), round-trips through
`keras.saving.serialize_keras_object` / `deserialize_keras_object`, and so
survives a `.keras` save and load (also with ``safe_mode=True``) of a model
compiled with an optimizer that uses it. They accept a Python int, an int32 or
an int64 step (what `optimizer.iterations` is) and work inside `tf.function`.

The decaying part reuses Keras's own schedules (`PolynomialDecay`,
`CosineDecay`, `ExponentialDecay`, `PiecewiseConstantDecay`); this module adds
only what Keras lacks: the `WarmUp` wrapper and `InverseSqrtDecay`.

Example:

```python
import keras
from keras_bertopt import schedules

lr = schedules.create("linear", peak_learning_rate=5e-5, total_steps=1000,
                      warmup_ratio=0.1)
lr(0), lr(100), lr(1000)          # 0.0, 5e-5 (peak), 0.0
optimizer = keras.optimizers.AdamW(learning_rate=lr, weight_decay=0.01)
```
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence, Union

import keras
from keras import ops

LearningRate = Union[float, keras.optimizers.schedules.LearningRateSchedule]

#: Kinds accepted by `create`.
KINDS = ("constant", "linear", "polynomial", "cosine", "exponential", "step", "inverse_sqrt")


def _check_number(
    value: Any, argument: str, *, minimum: float = 0.0, strict: bool = False
) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ValueError(f"`{argument}` must be a real number; got {value!r}")
    if (value <= minimum) if strict else (value < minimum):
        relation = ">" if strict else ">="
        raise ValueError(f"`{argument}` must be {relation} {minimum}; got {value!r}")
    return float(value)


def _check_steps(value: Any, argument: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"`{argument}` must be an integer number of steps; got {value!r}")
    if value < minimum:
        raise ValueError(f"`{argument}` must be >= {minimum}; got {value!r}")
    return int(value)


def _as_float_step(step: Any) -> Any:
    """Any int/float step (Python, int32, int64, float) as a float32 tensor."""
    return ops.cast(step, "float32")


@keras.saving.register_keras_serializable(package="keras_bertopt")
class InverseSqrtDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``initial_learning_rate * sqrt(timescale / (step + timescale))``.

    The "inverse square root" schedule of Vaswani et al. (2017) and fairseq:
    wrapped in `WarmUp(..., warmup_steps=w)` with ``timescale=w`` it gives
    ``peak * sqrt(w / step)`` for ``step >= w``, the usual form.

    Args:
        initial_learning_rate: the rate at step 0 (> 0).
        timescale: steps over which the rate falls by ``1/sqrt(2)`` (> 0).
        name: name scope of the ops.
    """

    def __init__(
        self, initial_learning_rate: float, timescale: int, name: str = "InverseSqrtDecay"
    ) -> None:
        super().__init__()
        self.initial_learning_rate = _check_number(
            initial_learning_rate, "initial_learning_rate", strict=True
        )
        self.timescale = _check_steps(timescale, "timescale", minimum=1)
        self.name = name

    def __call__(self, step: Any) -> Any:
        with keras.name_scope(self.name):
            step = ops.maximum(_as_float_step(step), 0.0)
            timescale = float(self.timescale)
            return self.initial_learning_rate * ops.sqrt(timescale / (step + timescale))

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "timescale": self.timescale,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package="keras_bertopt")
class WarmUp(keras.optimizers.schedules.LearningRateSchedule):
    """Warm up from `initial_learning_rate` to the rate of `after`, then follow `after`.

    For ``step < warmup_steps`` the rate is
    ``initial + (peak - initial) * (step / warmup_steps) ** power`` where
    ``peak = after(0)`` (or `after` itself when it is a float). From the end of
    warm-up on it is ``after(step - warmup_steps)``: the wrapped schedule's clock
    starts when warm-up ends, so a decay over ``total_steps - warmup_steps``
    steps reaches its end value exactly at ``total_steps``.

    How this differs from the two well-known implementations:

    * TF Model Garden (`official.nlp.optimization.WarmUp`) does **not** offset:
      after warm-up it calls ``decay_schedule_fn(step)`` with the global step, so
      a `PolynomialDecay(decay_steps=total_steps)` has already decayed for
      ``warmup_steps`` steps when warm-up ends and the rate jumps down from the
      warm-up target there.
    * Hugging Face (`get_linear_schedule_with_warmup` and friends) **does**
      offset, decaying over ``total_steps - warmup_steps`` steps from the end of
      warm-up; this class matches Hugging Face.

    Args:
        after: the schedule (any `LearningRateSchedule`) or constant rate (float
            >= 0) used after warm-up.
        warmup_steps: length of the warm-up (>= 0; 0 means no warm-up).
        initial_learning_rate: rate at step 0 (>= 0).
        power: shape of the warm-up ramp (> 0; 1 is linear).
        decay_steps: when set, `after` sees at most this many steps: the rate
            from ``warmup_steps + decay_steps`` on is held at its value there
            (used by `create` to hold every kind constant after ``total_steps``).
        name: name scope of the ops.

    Raises:
        ValueError: naming the argument, for a negative rate or step count, a
            non-positive `power`, or an `after` that is neither a float nor a
            `LearningRateSchedule`.
    """

    def __init__(
        self,
        after: LearningRate,
        warmup_steps: int,
        initial_learning_rate: float = 0.0,
        power: float = 1.0,
        decay_steps: int | None = None,
        name: str = "WarmUp",
    ) -> None:
        super().__init__()
        if isinstance(after, dict):  # a serialized schedule, e.g. from a hand-written config
            after = keras.saving.deserialize_keras_object(after)
        if isinstance(after, keras.optimizers.schedules.LearningRateSchedule):
            self.after = after
        else:
            self.after = _check_number(after, "after")
        self.warmup_steps = _check_steps(warmup_steps, "warmup_steps")
        self.initial_learning_rate = _check_number(initial_learning_rate, "initial_learning_rate")
        self.power = _check_number(power, "power", strict=True)
        self.decay_steps = None if decay_steps is None else _check_steps(
            decay_steps, "decay_steps", minimum=1
        )
        self.name = name

    def _after(self, step: Any) -> Any:
        if isinstance(self.after, float):
            return ops.convert_to_tensor(self.after, "float32")
        return ops.cast(self.after(step), "float32")

    def __call__(self, step: Any) -> Any:
        with keras.name_scope(self.name):
            step = _as_float_step(step)
            decay_step = ops.maximum(step - float(self.warmup_steps), 0.0)
            if self.decay_steps is not None:
                decay_step = ops.minimum(decay_step, float(self.decay_steps))
            decayed = self._after(decay_step)
            if self.warmup_steps == 0:
                return decayed
            peak = self._after(ops.convert_to_tensor(0.0, "float32"))
            fraction = ops.clip(step / float(self.warmup_steps), 0.0, 1.0)
            warm = self.initial_learning_rate + (peak - self.initial_learning_rate) * ops.power(
                fraction, self.power
            )
            return ops.where(step < float(self.warmup_steps), warm, decayed)

    def get_config(self) -> dict[str, Any]:
        after = self.after
        if not isinstance(after, float):
            after = keras.saving.serialize_keras_object(after)
        return {
            "after": after,
            "warmup_steps": self.warmup_steps,
            "initial_learning_rate": self.initial_learning_rate,
            "power": self.power,
            "decay_steps": self.decay_steps,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> WarmUp:
        config = dict(config)
        if isinstance(config.get("after"), dict):
            config["after"] = keras.saving.deserialize_keras_object(config["after"])
        return cls(**config)


def resolve_warmup_steps(
    total_steps: int, warmup_steps: int | None = None, warmup_ratio: float | None = None
) -> int:
    """Warm-up length from `warmup_steps` or `warmup_ratio` (``ceil(ratio * total)``).

    Raises:
        ValueError: when both are given, the ratio is outside [0, 1), or the
            result is not below `total_steps`.
    """
    total_steps = _check_steps(total_steps, "total_steps", minimum=1)
    if warmup_ratio is not None:
        if warmup_steps:
            raise ValueError(
                "give either `warmup_steps` or `warmup_ratio`, not both; got "
                f"warmup_steps={warmup_steps!r}, warmup_ratio={warmup_ratio!r}"
            )
        ratio = _check_number(warmup_ratio, "warmup_ratio")
        if ratio >= 1.0:
            raise ValueError(f"`warmup_ratio` must be in [0, 1); got {warmup_ratio!r}")
        steps = math.ceil(ratio * total_steps)
    else:
        steps = _check_steps(0 if warmup_steps is None else warmup_steps, "warmup_steps")
    if steps >= total_steps:
        raise ValueError(
            f"`total_steps` ({total_steps}) must be greater than the warm-up length "
            f"({steps} steps): the decay would end before it begins"
        )
    return steps


# Over 80 lines only through its docstring (the argument reference); the code is ~65 lines.
def create(
    kind: str,
    *,
    peak_learning_rate: float,
    total_steps: int,
    warmup_steps: int = 0,
    end_learning_rate: float = 0.0,
    warmup_ratio: float | None = None,
    **kwargs: Any,
) -> WarmUp:
    """A warm-up + decay schedule by name, as used for BERT fine-tuning.

    The rate rises linearly from 0 to `peak_learning_rate` over the warm-up, then
    follows `kind`, whose clock starts at the end of warm-up (see `WarmUp`), and
    from `total_steps` on is held at its value at `total_steps`.

    Kinds (after warm-up, with ``d = total_steps - warmup_steps`` decay steps):

    * ``constant``: `peak_learning_rate`.
    * ``linear``: straight line to `end_learning_rate` at `total_steps`
      (Keras `PolynomialDecay`, power 1; the BERT / Hugging Face default).
    * ``polynomial``: `PolynomialDecay` with ``power`` (keyword, default 1.0 as
      in Keras and TF Model Garden) to `end_learning_rate`.
    * ``cosine``: Keras `CosineDecay` to `end_learning_rate`.
    * ``exponential``: Keras `ExponentialDecay`; ``decay_rate`` per
      ``decay_steps`` (keywords, default ``d``). Without ``decay_rate`` the rate
      is chosen to reach `end_learning_rate` (then > 0) at `total_steps`.
    * ``step``: Keras `PiecewiseConstantDecay`: multiplied by ``factor``
      (keyword, default 0.1) at each of ``boundaries`` (keyword, required:
      increasing global steps inside ``(warmup_steps, total_steps)``).
    * ``inverse_sqrt``: `InverseSqrtDecay`, ``peak * sqrt(timescale / (s +
      timescale))`` with ``s`` the steps since warm-up; ``timescale`` (keyword)
      defaults to `warmup_steps`, giving the usual ``peak * sqrt(w / step)``.

    `end_learning_rate` is used by linear, polynomial, cosine and exponential;
    it must stay 0 for constant, step and inverse_sqrt.

    Args:
        kind: one of `KINDS`.
        peak_learning_rate: rate at the end of warm-up (> 0).
        total_steps: training length in optimizer steps (> warm-up length).
        warmup_steps: warm-up length in steps.
        end_learning_rate: rate at `total_steps` (0 <= end <= peak).
        warmup_ratio: warm-up length as a fraction of `total_steps` (instead of
            `warmup_steps`; rounded up, as Hugging Face does).
        **kwargs: kind-specific options listed above.

    Returns:
        A `WarmUp` wrapping the Keras schedule for `kind`.

    Raises:
        ValueError: naming the argument: unknown `kind`, negative or zero rates,
            `total_steps` not above the warm-up length, an unknown keyword, or
            bad kind-specific options.
    """
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}; got {kind!r}")
    peak = _check_number(peak_learning_rate, "peak_learning_rate", strict=True)
    end = _check_number(end_learning_rate, "end_learning_rate")
    if end > peak:
        raise ValueError(
            f"`end_learning_rate` ({end_learning_rate!r}) must not exceed "
            f"`peak_learning_rate` ({peak_learning_rate!r})"
        )
    warmup = resolve_warmup_steps(total_steps, warmup_steps, warmup_ratio)
    decay_steps = int(total_steps) - warmup
    allowed = {
        "constant": set(),
        "linear": set(),
        "polynomial": {"power"},
        "cosine": set(),
        "exponential": {"decay_rate", "decay_steps", "staircase"},
        "step": {"boundaries", "factor"},
        "inverse_sqrt": {"timescale"},
    }[kind]
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(
            f"unknown keyword argument(s) {unknown} for kind={kind!r}; "
            f"expected some of {sorted(allowed) or 'none'}"
        )
    if kind in ("constant", "step", "inverse_sqrt") and end != 0.0:
        raise ValueError(
            f"`end_learning_rate` is not used by kind={kind!r} and must be 0; "
            f"got {end_learning_rate!r}"
        )

    schedules = keras.optimizers.schedules
    after: LearningRate
    if kind == "constant":
        after = peak
    elif kind in ("linear", "polynomial"):
        power = 1.0 if kind == "linear" else _check_number(
            kwargs.get("power", 1.0), "power", strict=True
        )
        after = schedules.PolynomialDecay(peak, decay_steps, end_learning_rate=end, power=power)
    elif kind == "cosine":
        after = schedules.CosineDecay(peak, decay_steps, alpha=end / peak)
    elif kind == "exponential":
        after = _exponential(peak, end, decay_steps, kwargs)
    elif kind == "step":
        after = _piecewise(peak, warmup, int(total_steps), kwargs)
    else:  # inverse_sqrt
        timescale = kwargs.get("timescale", warmup if warmup > 0 else None)
        if timescale is None:
            raise ValueError(
                "kind='inverse_sqrt' without warm-up needs `timescale` (steps over which "
                "the rate falls by 1/sqrt(2))"
            )
        after = InverseSqrtDecay(peak, _check_steps(timescale, "timescale", minimum=1))
    return WarmUp(after, warmup, initial_learning_rate=0.0, power=1.0, decay_steps=decay_steps)


def _exponential(
    peak: float, end: float, decay_steps: int, kwargs: dict[str, Any]
) -> keras.optimizers.schedules.ExponentialDecay:
    every = _check_steps(kwargs.get("decay_steps", decay_steps), "decay_steps", minimum=1)
    rate = kwargs.get("decay_rate")
    if rate is None:
        if end <= 0.0:
            raise ValueError(
                "kind='exponential' needs `decay_rate` or an `end_learning_rate` > 0 "
                "to derive it from"
            )
        rate = (end / peak) ** (every / decay_steps)
    elif end != 0.0:
        raise ValueError(
            "give either `decay_rate` or `end_learning_rate` for kind='exponential', "
            f"not both; got decay_rate={rate!r}, end_learning_rate={end!r}"
        )
    rate = _check_number(rate, "decay_rate", strict=True)
    return keras.optimizers.schedules.ExponentialDecay(
        peak, every, rate, staircase=bool(kwargs.get("staircase", False))
    )


def _piecewise(
    peak: float, warmup: int, total_steps: int, kwargs: dict[str, Any]
) -> keras.optimizers.schedules.PiecewiseConstantDecay:
    boundaries: Sequence[int] | None = kwargs.get("boundaries")
    if not boundaries:
        raise ValueError(
            "kind='step' needs `boundaries`: a list of global steps at which the rate "
            "is multiplied by `factor`"
        )
    bounds = [_check_steps(b, "boundaries") for b in boundaries]
    if any(b <= warmup or b >= total_steps for b in bounds) or sorted(set(bounds)) != bounds:
        raise ValueError(
            f"`boundaries` must be strictly increasing steps inside (warmup_steps={warmup}, "
            f"total_steps={total_steps}); got {list(boundaries)!r}"
        )
    factor = _check_number(kwargs.get("factor", 0.1), "factor", strict=True)
    # PiecewiseConstantDecay sees steps counted from the end of warm-up and keeps
    # values[i] while step <= boundary[i]: shift so the drop happens at the global
    # step given (rate at step b is already the lower one).
    relative = [b - warmup - 1 for b in bounds]
    values = [peak * factor**i for i in range(len(bounds) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(relative, values)
