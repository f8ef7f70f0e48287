"""Fully-integer QAT: int8 LayerNorm, attention and sums (`QuantizationConfig(fully_integer=True)`).

LiteRT has no int8 LAYER_NORM builtin, but it has int8 kernels for every op a
LayerNorm decomposes into: MEAN, SUB, MUL, ADD and RSQRT. Each patched layer
below computes its float math with those ops and fake-quantizes every
intermediate, so the converter (its default QAT mode) makes each one int8 and
training sees the same rounding:

* `LayerNormalization`: input (the residual / embedding sum), mean, centred
  values, their squares, variance, variance + epsilon, 1/std, normalised,
  scaled by gamma, shifted by beta (the output);
* keras-hub's multi-head attention: scaled query, scores (also after the
  padding mask, whose large negative fill clips to the range's minimum as in
  int8), probabilities on TFLite's fixed softmax grid (1/256), context;
* `keras.layers.Add` (the embedding sum): every partial sum.

The ranges live in an `ActivationRanges` layer per patched layer (non-trainable
variables, saved with the model and by `BackupAndRestore`).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import keras
from keras import ops

from keras_bertopt._compat import attention_parts, call_context_training, flatten_layers
from keras_bertopt.quantization import quantizers
from keras_bertopt.quantization.layers import _PATCH_ATTR, SOFTMAX_OUTPUT_MAX

LAYER_NORM_RANGES = (
    "input", "mean", "centered", "squared", "variance", "variance_eps", "inv_std",
    "normalized", "scaled", "output",
)
ATTENTION_RANGES = ("query_scaled", "scores", "context")


@keras.saving.register_keras_serializable(package="keras_bertopt")
class ActivationRanges(keras.layers.Layer):
    """Named activation ranges of one patched layer, and their fake-quant step.

    For each name it holds non-trainable ``<name>_min`` / ``<name>_max``
    variables (exponential moving average of batch ranges in training, frozen
    at inference) and one ``updates`` counter.

    Args:
        target: path of the patched layer (for reports).
        names: the ranges it holds.
        ema_decay: decay of the range moving average.
    """

    def __init__(
        self, target: str, names: Sequence[str], ema_decay: float = 0.99, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.names = tuple(names)
        self.ema_decay = float(ema_decay)
        self.weights_only = False

    def build(self, input_shape: Any = None) -> None:
        self.ranges = {}
        for name in self.names:
            self.ranges[name] = tuple(
                self.add_weight(
                    name=f"{name}_{end}",
                    shape=(),
                    initializer=keras.initializers.Constant(value),
                    trainable=False,
                    dtype="float32",
                    aggregation="mean",
                )
                for end, value in (("min", -6.0), ("max", 6.0))
            )
        self.updates = self.add_weight(
            name="updates", shape=(), initializer="zeros", trainable=False, dtype="int64",
            aggregation="only_first_replica",
        )
        self.built = True

    def fake_quant(
        self, name: str, x: Any, training: bool, observed: Any = None, update: bool = True
    ) -> Any:
        """Fake-quantize `x` on range `name`, first updating it from `observed` (default `x`)."""
        vmin, vmax = self.ranges[name]
        if training and update:
            lo, hi = quantizers.batch_range(x if observed is None else observed)
            vmin.assign(quantizers.ema_update(vmin, lo, self.ema_decay, self.updates))
            vmax.assign(quantizers.ema_update(vmax, hi, self.ema_decay, self.updates))
        return quantizers.fake_quant_activation(x, vmin, vmax)

    def step(self, name: str) -> Any:
        """Step of range `name`'s int8 grid as `fake_quant_activation` uses it: (max - min) / 255.

        With ``max > 0`` it is a point of the range's int8 grid (zero point + 1).
        """
        vmin, vmax = self.ranges[name]
        return ops.stop_gradient((vmax - vmin) / 255.0)

    def count(self, training: bool) -> None:
        if training:
            self.updates.assign_add(ops.cast(1, "int64"))

    def values(self) -> dict[str, float]:
        """``{<name>_min: float, <name>_max: float}`` for every range."""
        out = {}
        for name, (vmin, vmax) in self.ranges.items():
            out[f"{name}_min"] = float(ops.convert_to_numpy(vmin))
            out[f"{name}_max"] = float(ops.convert_to_numpy(vmax))
        return out

    def call(self, inputs: Any) -> Any:  # pragma: no cover - state holder, not a graph layer
        return inputs

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"target": self.target, "names": list(self.names),
                       "ema_decay": self.ema_decay})
        return config


def _is_training(layer: Any, training: Any) -> bool:
    """The training flag: the argument if given, else the enclosing Keras call's.

    `LayerNormalization.call` and `Add.call` take no `training` argument, so
    Keras does not pass one; the layer's call context holds the value resolved
    from the outer `model(x, training=...)` / `fit` call.
    """
    if training is not None:
        return bool(training)
    return call_context_training(layer)


# ----------------------------------------------------------------------------- LayerNorm
def _layer_norm_call(layer: Any, ranges: ActivationRanges, inputs: Any, training: Any = None
                     ) -> Any:
    """LayerNorm over the last axis from int8-able ops, every intermediate fake-quantized."""
    training = _is_training(layer, training)
    q = functools.partial(ranges.fake_quant, training=training)
    x = q("input", ops.cast(inputs, "float32"))
    mean = q("mean", ops.mean(x, axis=-1, keepdims=True))
    centered = q("centered", ops.subtract(x, mean))
    squared = q("squared", ops.multiply(centered, centered))
    variance = q("variance", ops.mean(squared, axis=-1, keepdims=True))
    variance = q("variance_eps", ops.add(variance, layer.epsilon))
    # A variance below half a step of its int8 grid rounds to 0 and RSQRT gives inf (then
    # NaN): with outlier channels (MiniLM) `squared`'s step exceeds most tokens' squares and
    # their variance rounds to 0. Floor it at one step, an int8 MAXIMUM with a grid point.
    variance = ops.maximum(variance, ops.maximum(ranges.step("variance_eps"), layer.epsilon))
    inv_std = q("inv_std", ops.rsqrt(variance))
    y = q("normalized", ops.multiply(centered, inv_std))
    if layer.scale:
        y = q("scaled", ops.multiply(y, layer.gamma))
    if layer.center:
        y = ops.add(y, layer.beta)
    y = q("output", y)
    ranges.count(training)
    return ops.cast(y, layer.compute_dtype)


def check_layer_norm(layer: Any) -> None:
    """Raise unless `layer` is a plain last-axis LayerNormalization the int8 form covers."""
    axis = layer.axis if isinstance(layer.axis, int) else (
        layer.axis[0] if len(layer.axis) == 1 else None)
    rank = len(layer.gamma.shape) if getattr(layer, "gamma", None) is not None else None
    if axis is None or getattr(layer, "rms_scaling", False) or (axis >= 0 and rank != 1):
        raise ValueError(
            f"layer {layer.name!r}: fully_integer supports LayerNormalization over the last "
            f"axis without rms_scaling, got axis={layer.axis!r}"
        )


# ----------------------------------------------------------------------------- attention
def _attention_call(
    layer: Any,
    ranges: ActivationRanges,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any = None,
    training: Any = None,
    return_attention_scores: bool = False,
    **kwargs: Any,
) -> Any:
    """keras MultiHeadAttention's explicit attention path, with int8 fake quantization."""
    if kwargs.get("use_causal_mask"):
        raise ValueError("fully_integer QAT does not support causal attention")
    train = _is_training(layer, training)
    parts = attention_parts(layer)
    q = functools.partial(ranges.fake_quant, training=train)
    query = q("query_scaled", ops.multiply(query, ops.cast(parts.inverse_sqrt_key_dim,
                                                           query.dtype)))
    scores = q("scores", ops.einsum(parts.dot_product_equation, key, query))
    if attention_mask is not None:
        # int8 SELECT_V2 shares one scale across its inputs: the mask's large negative
        # fill clips to the scores' minimum, so masked keys keep exp(min - max) weight.
        mask = attention_mask
        for _ in range(len(scores.shape) - len(mask.shape)):
            mask = ops.expand_dims(mask, axis=-len(parts.attention_axes) * 2 - 1)
        filled = ops.where(ops.cast(mask, "bool"), scores, ops.cast(-1e9, scores.dtype))
        scores = ranges.fake_quant("scores", filled, train, update=False)
        probabilities = parts.softmax(scores)
        probabilities = ops.where(ops.cast(mask, "bool"), probabilities, 0.0)
    else:
        probabilities = parts.softmax(scores)
    probabilities = quantizers.fake_quant_activation(probabilities, 0.0, SOFTMAX_OUTPUT_MAX)
    if parts.dropout > 0.0:
        probabilities = parts.dropout_layer(probabilities, training=training)
    context = q("context", ops.einsum(parts.combine_equation, probabilities, value))
    ranges.count(train)
    return context, (probabilities if return_attention_scores else None)


# ----------------------------------------------------------------------------- Add
def _add_call(layer: Any, ranges: ActivationRanges, inputs: Any, training: Any = None) -> Any:
    """Sum of `inputs` with every partial sum but the last fake-quantized (its consumer's)."""
    train = _is_training(layer, training)
    total = inputs[0]
    for i, x in enumerate(inputs[1:], start=1):
        total = ops.add(total, x)
        if i < len(inputs) - 1:
            total = ranges.fake_quant(f"sum_{i}", total, train)
    ranges.count(train)
    return total


def add_range_names(layer: Any) -> tuple[str, ...]:
    """Range names of a keras `Add` layer's partial sums (one per input beyond the second)."""
    n = len(layer.input) if isinstance(getattr(layer, "input", None), (list, tuple)) else 2
    return tuple(f"sum_{i}" for i in range(1, n - 1))


def attach_integer(layer: Any, ranges: ActivationRanges) -> None:
    """Patch a LayerNormalization, a keras-hub / keras MultiHeadAttention or an Add layer."""
    if getattr(layer, _PATCH_ATTR, None) is not None:
        raise ValueError(f"layer {layer.name!r} is already quantize-aware")
    if isinstance(layer, keras.layers.LayerNormalization):
        check_layer_norm(layer)
        object.__setattr__(layer, "call", functools.partial(_layer_norm_call, layer, ranges))
    elif isinstance(layer, keras.layers.MultiHeadAttention):
        object.__setattr__(layer, "_compute_attention",
                           functools.partial(_attention_call, layer, ranges))
    elif isinstance(layer, keras.layers.Add):
        object.__setattr__(layer, "call", functools.partial(_add_call, layer, ranges))
    else:
        raise ValueError(
            f"layer {layer.name!r} is {type(layer).__name__}: fully_integer patches "
            "LayerNormalization, MultiHeadAttention and Add layers"
        )
    object.__setattr__(layer, _PATCH_ATTR, ranges)


def integer_layers(model: Any) -> list[tuple[Any, tuple[str, ...]]]:
    """(layer, range names) of the LayerNorm / attention / multi-input Add layers of `model`."""
    seen: set[int] = set()
    out = []
    for layer in flatten_layers(model):
        if id(layer) in seen or not layer.built:
            continue
        seen.add(id(layer))
        if isinstance(layer, keras.layers.LayerNormalization):
            out.append((layer, LAYER_NORM_RANGES))
        elif isinstance(layer, keras.layers.MultiHeadAttention):
            out.append((layer, ATTENTION_RANGES))
        elif isinstance(layer, keras.layers.Add) and add_range_names(layer):
            out.append((layer, add_range_names(layer)))
    return out
