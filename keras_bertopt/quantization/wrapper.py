"""`quantize_aware`: turn a keras-hub text classifier into a QAT model."""

from __future__ import annotations

import re
from typing import Any

import keras
import keras_hub

from keras_bertopt import _compat
from keras_bertopt.quantization.config import QuantizationConfig, resolve_config
from keras_bertopt.quantization.integer import ActivationRanges, attach_integer, integer_layers
from keras_bertopt.quantization.layers import (
    LayerQuantizer,
    attach,
    attach_softmax,
    embedding_table,
    is_embedding_layer,
    is_patched,
    is_supported_layer,
    kernel_reduce_axes,
    quantizer_of,
)
from keras_bertopt.selection import select_variables, variable_path


def _quantizer_name(path: str) -> str:
    stem = path[: -len("/kernel")] if path.endswith("/kernel") else path
    return "qat_" + re.sub(r"[^0-9A-Za-z_]", "_", stem)


def _candidate_layers(model: Any) -> list[Any]:
    """Built Dense / EinsumDense layers of `model`, in model order, without duplicates."""
    seen: set[int] = set()
    layers = []
    for layer in _compat.flatten_layers(model):
        if is_supported_layer(layer) and layer.built and id(layer) not in seen:
            seen.add(id(layer))
            layers.append(layer)
    return layers


def _select_layers(model: Any, config: QuantizationConfig) -> list[Any]:
    candidates = _candidate_layers(model)
    if not candidates:
        raise ValueError("`model` has no built Dense or EinsumDense layer to quantize")
    by_kernel = {id(layer.kernel): layer for layer in candidates}
    chosen = select_variables(
        [layer.kernel for layer in candidates],
        config.include,
        config.exclude,
        trainable_only=False,
        argument="include",
    )
    return [by_kernel[id(v)] for v in chosen]


def _select_embeddings(model: Any, config: QuantizationConfig) -> list[Any]:
    if not config.quantize_embeddings:
        return []
    seen: set[int] = set()
    layers = []
    for layer in _compat.flatten_layers(model):
        if is_embedding_layer(layer) and layer.built and id(layer) not in seen:
            seen.add(id(layer))
            layers.append(layer)
    by_table = {id(embedding_table(layer)): layer for layer in layers}
    chosen = select_variables(
        [embedding_table(layer) for layer in layers],
        None,
        config.exclude,
        trainable_only=False,
        allow_empty=True,
    )
    return [by_table[id(v)] for v in chosen]


@keras.saving.register_keras_serializable(package="keras_bertopt")
class QuantizeAwareTextClassifier(keras_hub.models.TextClassifier):
    """A keras-hub text classifier training with 8-bit fake quantization.

    Built by `quantize_aware`; it wraps the float `task` (a functional model on
    the dict ``{token_ids, segment_ids, padding_mask}``) whose Dense and
    EinsumDense layers run through `LayerQuantizer`s. It keeps the task's
    `preprocessor`, so `fit`, `evaluate` and `predict` take raw strings.

    Args:
        task: the keras-hub `TextClassifier` to wrap (it is modified: pass a
            copy; `quantize_aware` does).
        quantization_config: a `QuantizationConfig` or its dict.
    """

    def __init__(
        self,
        task: Any,
        quantization_config: Any = None,
        compile: bool = True,  # noqa: A002 - keras-hub's Task argument name
        **kwargs: Any,
    ) -> None:
        config = resolve_config(quantization_config)
        if not isinstance(task, keras_hub.models.TextClassifier):
            raise ValueError(
                f"`task` must be a keras_hub.models.TextClassifier, got {type(task).__name__}"
            )
        layers = _select_layers(task, config)
        quantizers = []
        for layer in layers:
            kernel_path = variable_path(layer.kernel)
            reduce_axes = (
                kernel_reduce_axes(layer) if config.weight_granularity == "per_channel" else None
            )
            quantizer = LayerQuantizer(
                kernel_path,
                reduce_axes=reduce_axes,
                ema_decay=config.ema_decay,
                quantize_outputs=config.quantize_outputs and config.activations == "static",
                quantize_inputs=config.activations == "static",
                name=_quantizer_name(kernel_path),
            )
            quantizer.build()
            attach(layer, quantizer)
            quantizers.append(quantizer)
        for layer in _select_embeddings(task, config):
            table_path = variable_path(embedding_table(layer))
            quantizer = LayerQuantizer(
                table_path, weights_only=True, name=_quantizer_name(table_path)
            )
            quantizer.build()
            attach(layer, quantizer)
            quantizers.append(quantizer)

        if config.fully_integer:
            for layer, names in integer_layers(task):
                path = _layer_path(layer)
                ranges = ActivationRanges(path, names, ema_decay=config.ema_decay,
                                          name=_quantizer_name(path))
                ranges.build()
                attach_integer(layer, ranges)
                quantizers.append(ranges)
        elif config.quantize_attention_probs:
            for layer in _compat.flatten_layers(task):
                if isinstance(layer, keras.layers.Softmax) and not is_patched(layer):
                    attach_softmax(layer)

        # === Layers (set before the functional init, as keras-hub tasks do) ===
        self.task = task
        self.backbone = task.backbone
        self.preprocessor = task.preprocessor
        self.quantizers = quantizers

        # === Functional model ===
        inputs = {
            name: keras.Input(shape=tensor.shape[1:], dtype=tensor.dtype, name=name)
            for name, tensor in task.input.items()
        }
        outputs = task(inputs)
        super().__init__(inputs=inputs, outputs=outputs, compile=False, **kwargs)

        # === Config ===
        self.quantization_config = config
        self.num_classes = getattr(task, "num_classes", None)
        self.activation = getattr(task, "activation", None)
        if compile:
            self.compile()

    @property
    def quantized_paths(self) -> list[str]:
        """Kernel paths of the quantized Dense / EinsumDense layers, in model order."""
        return [q.target for q in self.quantizers
                if isinstance(q, LayerQuantizer) and not q.weights_only]

    @property
    def quantized_embedding_paths(self) -> list[str]:
        """Table paths of the fake-quantized embeddings (`quantize_embeddings=True`)."""
        return [q.target for q in self.quantizers if q.weights_only]

    @property
    def qat_step(self) -> int:
        """Training batches seen in QAT (the update count of the ranges)."""
        stateful = [q for q in self.quantizers if not q.weights_only]
        return int(keras.ops.convert_to_numpy(stateful[0].updates)) if stateful else 0

    def activation_ranges(self) -> dict[str, dict[str, float]]:
        """Learned activation ranges (floats) by quantized layer path.

        ``{kernel path: {input_min, input_max, output_min, output_max}}`` for
        Dense / EinsumDense layers; with ``fully_integer=True`` also
        ``{layer path: {<range>_min, <range>_max}}`` for LayerNorm, attention
        and Add layers.
        """
        out = {}
        for q in self.quantizers:
            if q.weights_only:
                continue
            if isinstance(q, ActivationRanges):
                out[q.target] = q.values()
                continue
            out[q.target] = {
                name: float(keras.ops.convert_to_numpy(getattr(q, name)))
                for name in ("input_min", "input_max", "output_min", "output_max")
            }
        return out

    def get_config(self) -> dict[str, Any]:
        return {
            "task": keras.saving.serialize_keras_object(self.task),
            "quantization_config": self.quantization_config.get_config(),
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> QuantizeAwareTextClassifier:
        config = dict(config)
        task = config.pop("task")
        if isinstance(task, dict):
            task = keras.saving.deserialize_keras_object(task)
        return cls(task, **config)


def _layer_path(layer: Any) -> str:
    """A layer's path: the common folder of its variables' paths, else its name."""
    import os.path

    folders = [variable.path.rsplit("/", 1)[0] for variable in layer.weights]
    if not folders:
        return layer.name
    common = os.path.commonpath(folders) if len(folders) > 1 else folders[0]
    return common or layer.name


def copy_task(model: Any) -> Any:
    """A new keras-hub task of the same class and config with the same weights.

    The preprocessor is shared (not copied); the optimizer state is not copied.
    """
    config = model.get_config()
    config["preprocessor"] = model.preprocessor
    copy = type(model).from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def quantize_aware(
    model: Any, config: QuantizationConfig | dict[str, Any] | None = None
) -> QuantizeAwareTextClassifier:
    """Wrap a keras-hub text classifier for 8-bit quantization-aware training.

    The input model is left untouched: a copy with the same weights is made,
    its Dense / EinsumDense layers (query/key/value, attention output,
    feed-forward, pooler, classifier; narrowed by `config.include` /
    `config.exclude` on kernel paths) fake-quantize their kernel (symmetric,
    per output channel by default), their input and their output (asymmetric,
    ranges from an exponential moving average while training, frozen at
    inference), with straight-through gradients. Embeddings, LayerNorm and
    softmax stay float.

    Example:

    ```python
    qat = keras_bertopt.quantization.quantize_aware(float_classifier)
    qat.compile(optimizer=keras.optimizers.AdamW(2e-5), loss=..., metrics=...)
    qat.fit(train_ds, epochs=1)              # raw strings: the preprocessor is kept
    qat.save("qat.keras")
    keras_bertopt.export.to_tflite(qat, "model_int8.tflite", quantization="int8")
    ```

    Args:
        model: a built keras-hub `TextClassifier` (e.g. `BertTextClassifier`)
            in float.
        config: a `QuantizationConfig`, a dict of its arguments, or None.

    Returns:
        A `QuantizeAwareTextClassifier`, compiled with the task's defaults.

    Raises:
        ValueError: `model` is not a keras-hub TextClassifier, is already
            quantize-aware, or `config` is invalid or selects no layer.
    """
    config = resolve_config(config)
    if is_quantize_aware(model):
        raise ValueError("`model` is already quantize-aware (returned by quantize_aware)")
    if not isinstance(model, keras_hub.models.TextClassifier):
        raise ValueError(
            "`model` must be a keras_hub.models.TextClassifier (e.g. a BertTextClassifier "
            f"from keras_bertopt.models.build_classifier), got {type(model).__name__}"
        )
    if not model.built:
        raise ValueError("`model` must be built (a keras-hub task is built on construction)")
    _select_layers(model, config)  # validate patterns before copying the model
    return QuantizeAwareTextClassifier(copy_task(model), quantization_config=config)


def is_quantize_aware(model: Any) -> bool:
    """True when `model` trains with fake quantization (built by `quantize_aware`).

    Also true for any Keras model containing a layer patched by it, e.g. the
    inner `task` of a `QuantizeAwareTextClassifier`.
    """
    if isinstance(model, QuantizeAwareTextClassifier):
        return True
    if not isinstance(model, keras.layers.Layer):
        return False
    return any(
        is_patched(layer) for layer in _compat.flatten_layers(model, include_self=True)
    )


def quantized_layers(model: Any) -> list[Any]:
    """The Dense / EinsumDense layers of `model` that run with fake quantization.

    Fake-quantized embedding tables (``quantize_embeddings=True``) are not
    listed: they are int8 GATHER tables, not int8 matmuls, in TFLite.
    """
    if not isinstance(model, keras.layers.Layer):
        raise ValueError(f"`model` must be a Keras model, got {type(model).__name__}")
    return [
        layer
        for layer in _compat.flatten_layers(model, include_self=True)
        if quantizer_of(layer) is not None and not quantizer_of(layer).weights_only
    ]
