"""Fake-quantization math, apart from the Keras wiring.

* Weights: symmetric, narrow range ([-127, 127]), scale = max|w| / 127, either
  per output channel or per tensor. Per channel is computed with plain ops and
  a straight-through estimator (STE): in the exported graph the kernel folds to
  a float constant already on the per-channel grid, and TFLiteConverter's own
  int8 quantization of a FULLY_CONNECTED weight (symmetric, per channel along
  the output axis of its ``[out, in]`` layout, scale max|w|/127) reproduces it
  exactly. (A ``fake_quant_with_min_max_vars_per_channel`` op on the Keras
  ``[in, out]`` kernel quantizes the last axis, and the converter then fails
  with "'tfl.transpose' op has mismatched quantized axes".) Per tensor uses
  ``tf.quantization.fake_quant_with_min_max_vars`` with ``narrow_range``.
* Activations: asymmetric 8-bit with ``tf.quantization.fake_quant_with_min_max_vars``
  (its gradient is the STE: pass-through inside the range, zero outside); the
  converter reads the ranges from these ops. Ranges follow an exponential
  moving average of the batch min / max during training (`ema_update`).
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import ops

from keras_bertopt.kernels import einsum_reduce_axes  # noqa: F401  (the one rule, re-exported)

#: Largest magnitude of a symmetric narrow-range int8 value.
QMAX = 127.0
#: Smallest scale, so an all-zero (pruned) channel does not divide by zero.
EPSILON = 1e-12


def weight_scale(kernel: Any, reduce_axes: Sequence[int] | None) -> Any:
    """Symmetric int8 scale max|w| / 127, reduced over `reduce_axes` (keepdims).

    `reduce_axes=None` gives one scale for the whole tensor (per tensor).
    """
    amax = ops.max(
        ops.abs(kernel),
        axis=None if reduce_axes is None else tuple(reduce_axes),
        keepdims=reduce_axes is not None,
    )
    return ops.maximum(amax, EPSILON) / QMAX


def weight_grid(kernel: Any, reduce_axes: Sequence[int] | None) -> Any:
    """`kernel` rounded onto its symmetric int8 grid with plain ops (no gradient, no
    FakeQuant op: a traced constant folds to float values the converter's own
    dynamic-range quantization reproduces)."""
    kernel = ops.convert_to_tensor(kernel)
    scale = weight_scale(kernel, reduce_axes)
    return ops.clip(ops.round(kernel / scale), -QMAX, QMAX) * scale


def fake_quant_weight(kernel: Any, reduce_axes: Sequence[int] | None) -> Any:
    """Symmetric 8-bit fake-quantized `kernel`, with straight-through gradient.

    Args:
        kernel: the float kernel.
        reduce_axes: the contracted (input) axes: one scale per remaining
            (output-channel) index. None: one scale per tensor.
    """
    kernel = ops.convert_to_tensor(kernel)
    if reduce_axes is None and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        amax = ops.stop_gradient(ops.maximum(ops.max(ops.abs(kernel)), EPSILON))
        return tf.quantization.fake_quant_with_min_max_vars(
            kernel, -amax, amax, num_bits=8, narrow_range=True
        )
    scale = ops.stop_gradient(weight_scale(kernel, reduce_axes))
    quantized = ops.clip(ops.round(kernel / scale), -QMAX, QMAX) * scale
    return kernel + ops.stop_gradient(quantized - kernel)


def fake_quant_activation(x: Any, minimum: Any, maximum: Any) -> Any:
    """Asymmetric 8-bit fake quantization of `x` in [minimum, maximum] (STE gradient).

    On TensorFlow this is ``tf.quantization.fake_quant_with_min_max_vars``, the
    op TFLiteConverter turns into int8 QUANTIZE parameters.
    """
    minimum = ops.stop_gradient(ops.convert_to_tensor(minimum, dtype="float32"))
    maximum = ops.stop_gradient(ops.convert_to_tensor(maximum, dtype="float32"))
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        dtype = x.dtype
        y = tf.quantization.fake_quant_with_min_max_vars(
            tf.cast(x, tf.float32), minimum, maximum, num_bits=8, narrow_range=False
        )
        return tf.cast(y, dtype)
    # Backend-agnostic equivalent (zero point nudged onto the integer grid).
    x = ops.convert_to_tensor(x)
    minimum = ops.minimum(minimum, 0.0)
    maximum = ops.maximum(maximum, minimum + 1e-6)
    scale = (maximum - minimum) / 255.0
    zero_point = ops.clip(ops.round(-minimum / scale), 0.0, 255.0)
    lo = -zero_point * scale
    hi = (255.0 - zero_point) * scale
    clipped = ops.clip(x, lo, hi)
    quantized = ops.round((clipped - lo) / scale) * scale + lo
    inside = ops.cast(ops.logical_and(x >= lo, x <= hi), x.dtype)
    return inside * (x + ops.stop_gradient(quantized - x)) + (1.0 - inside) * ops.stop_gradient(
        quantized
    )


def batch_range(x: Any) -> tuple[Any, Any]:
    """(min, max) of `x`, widened to contain 0 (int8 needs 0 representable)."""
    x = ops.stop_gradient(ops.cast(x, "float32"))
    return ops.minimum(ops.min(x), 0.0), ops.maximum(ops.max(x), 0.0)


def ema_update(current: Any, observed: Any, decay: float, count: Any) -> Any:
    """Exponential moving average step; the first observation (count == 0) replaces."""
    moved = decay * current + (1.0 - decay) * observed
    return ops.where(ops.equal(count, 0), observed, moved)
