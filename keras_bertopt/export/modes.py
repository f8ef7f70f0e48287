"""The TFLite export modes: the one list every other module (recipe, CLI, export) reads."""

from __future__ import annotations

from typing import Literal, get_args

#: How `to_tflite` stores weights and runs ops: float32 ("none"), float16 weights,
#: dynamic-range int8 weights, or int8 weights and activations.
QuantizationMode = Literal["none", "float16", "dynamic", "int8"]

QUANTIZATION_MODES: tuple[str, ...] = get_args(QuantizationMode)
