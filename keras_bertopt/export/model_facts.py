"""What `to_tflite` needs to know about a Keras model: QAT or not, position table, vocabulary.

The only module of `keras_bertopt.export` that walks a model's layers (through
`keras_bertopt._compat.flatten_layers`, where Keras's private API is reached).
"""

from __future__ import annotations

from typing import Any, Iterator


def _layers(model: Any) -> Iterator[Any]:
    """Every layer of `model`, nested ones included (none for a non-Keras object)."""
    import keras

    from keras_bertopt._compat import flatten_layers

    return iter(flatten_layers(model)) if isinstance(model, keras.layers.Layer) else iter(())


def is_quantize_aware(model: Any) -> bool:
    """True for a model from `keras_bertopt.quantization.quantize_aware`."""
    from keras_bertopt.quantization import is_quantize_aware as check

    return bool(check(model))


def max_sequence_length(model: Any) -> int | None:
    """The longest sequence the model's position table takes (None if unknown)."""
    backbone = getattr(model, "backbone", None)
    value = getattr(backbone, "max_sequence_length", None)
    if value:
        return int(value)
    for layer in _layers(model):
        value = getattr(layer, "max_sequence_length", None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def vocabulary_size(model: Any) -> int:
    """Rows of the token embedding (100 if the model has none we can find)."""
    backbone = getattr(model, "backbone", None)
    size = getattr(backbone, "vocabulary_size", None)
    if size:
        return int(size)
    for layer in _layers(model):
        if layer.name == "token_embedding" and getattr(layer, "input_dim", None):
            return int(layer.input_dim)
    return 100
