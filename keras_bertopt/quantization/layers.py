"""Keras wiring of QAT: the per-layer quantizer state and the patched calls.

A keras-hub backbone is a functional model built inside its constructor, so its
Dense / EinsumDense layers cannot be swapped for other classes without
rebuilding it. Instead each quantized layer instance gets its `call` replaced
by one that fake-quantizes its input, kernel and output, using a
`LayerQuantizer` that owns the state (activation ranges, update count) as Keras
variables. The layer keeps its class, its variables and their paths, so the
float weights stay where they were and a float model's checkpoint still loads.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any, Iterator, Sequence

import keras
from keras import ops

from keras_bertopt import _compat
from keras_bertopt.quantization import quantizers

_PATCH_ATTR = "_keras_bertopt_quantizer"
_STATE = threading.local()


@contextlib.contextmanager
def runtime_activations() -> Iterator[None]:
    """Within this block, quantized Dense / EinsumDense layers leave activations float.

    Their kernels (and embedding tables) are still fake-quantized. This is how a
    QAT model is traced for a dynamic-range file (`to_tflite(qat, quantization=
    "dynamic")`): the file holds the int8 weights QAT learned and LiteRT
    quantizes activations at run time, so no learned range may reach the graph.
    """
    previous = getattr(_STATE, "runtime", False)
    _STATE.runtime = True
    try:
        yield
    finally:
        _STATE.runtime = previous


def _activations_at_runtime() -> bool:
    return getattr(_STATE, "runtime", False)


@keras.saving.register_keras_serializable(package="keras_bertopt")
class LayerQuantizer(keras.layers.Layer):
    """QAT state of one Dense / EinsumDense layer, and its fake-quant steps.

    Holds non-trainable variables ``input_min``, ``input_max``, ``output_min``,
    ``output_max`` (activation ranges, an exponential moving average of batch
    ranges while training, frozen at inference) and ``updates`` (how many
    training batches updated them). They are saved in `.keras` files and by
    `keras.callbacks.BackupAndRestore` with the rest of the model.

    Args:
        target: kernel path of the quantized layer (for reports).
        reduce_axes: contracted kernel axes for per-channel weight scales, or
            None for one per-tensor scale.
        ema_decay: decay of the range moving average.
        quantize_outputs: also fake-quantize the layer's output.
        quantize_inputs: fake-quantize the layer's input (False for
            ``QuantizationConfig(activations="dynamic")``: only the kernel is;
            the range variables still exist and ``updates`` still counts steps).
        weights_only: only the weights are fake-quantized (embedding tables):
            no activation ranges, no state variables.
    """

    def __init__(
        self,
        target: str,
        reduce_axes: Sequence[int] | None = None,
        ema_decay: float = 0.99,
        quantize_outputs: bool = True,
        weights_only: bool = False,
        quantize_inputs: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.weights_only = bool(weights_only)
        self.quantize_inputs = bool(quantize_inputs)
        self.target = target
        self.reduce_axes = None if reduce_axes is None else tuple(int(a) for a in reduce_axes)
        self.ema_decay = float(ema_decay)
        self.quantize_outputs = bool(quantize_outputs)

    def build(self, input_shape: Any = None) -> None:
        if self.weights_only:
            self.built = True
            return

        # Under a tf.distribute strategy each replica sees its own batch: "mean"
        # aggregation averages the replicas' EMA updates so every copy holds the
        # same range (with "none" the copies drift apart), and the step counter
        # is advanced from the first replica only.
        def scalar(name: str, value: float) -> Any:
            return self.add_weight(
                name=name,
                shape=(),
                initializer=keras.initializers.Constant(value),
                trainable=False,
                dtype="float32",
                aggregation="mean",
            )

        self.input_min = scalar("input_min", -6.0)
        self.input_max = scalar("input_max", 6.0)
        self.output_min = scalar("output_min", -6.0)
        self.output_max = scalar("output_max", 6.0)
        self.updates = self.add_weight(
            name="updates",
            shape=(),
            initializer="zeros",
            trainable=False,
            dtype="int64",
            aggregation="only_first_replica",
        )
        self.built = True

    @property
    def per_channel(self) -> bool:
        return self.reduce_axes is not None

    def _track(self, x: Any, vmin: Any, vmax: Any, training: bool) -> Any:
        if training:
            lo, hi = quantizers.batch_range(x)
            vmin.assign(quantizers.ema_update(vmin, lo, self.ema_decay, self.updates))
            vmax.assign(quantizers.ema_update(vmax, hi, self.ema_decay, self.updates))
        return quantizers.fake_quant_activation(x, vmin, vmax)

    def quantize_input(self, x: Any, training: bool) -> Any:
        """Fake-quantize the layer input (updating its range when training)."""
        if not self.quantize_inputs or _activations_at_runtime():
            return x
        return self._track(x, self.input_min, self.input_max, training)

    def quantize_output(self, y: Any, training: bool) -> Any:
        """Fake-quantize the layer output (before its activation)."""
        if not self.quantize_outputs or _activations_at_runtime():
            return y
        return self._track(y, self.output_min, self.output_max, training)

    def quantize_kernel(self, kernel: Any) -> Any:
        """Symmetric 8-bit fake-quantized kernel (per channel or per tensor)."""
        if _activations_at_runtime():
            # No FakeQuant op in the trace: one would switch the converter to QAT mode.
            return quantizers.weight_grid(kernel, self.reduce_axes)
        return quantizers.fake_quant_weight(kernel, self.reduce_axes)

    def count(self, training: bool) -> None:
        if training:
            self.updates.assign_add(ops.cast(1, "int64"))

    def call(self, inputs: Any) -> Any:  # pragma: no cover - state holder, not a graph layer
        return inputs

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "target": self.target,
                "reduce_axes": None if self.reduce_axes is None else list(self.reduce_axes),
                "ema_decay": self.ema_decay,
                "quantize_outputs": self.quantize_outputs,
                "weights_only": self.weights_only,
                "quantize_inputs": self.quantize_inputs,
            }
        )
        return config


def matrix_form(equation: str | None, input_rank: int,
                kernel_shape: Sequence[int]) -> int | None:
    """Leading input axes kept when the layer is one 2-D matmul, or None when it is not.

    A Dense layer (`equation` None) or an EinsumDense whose equation reads
    ``batch + contracted, contracted + free -> batch + free`` (``"abc,cde->abde"``,
    ``"abcd,cde->abe"``) is ``reshape(x, [-1, K]) @ reshape(kernel, [K, N])``.
    """
    if equation is None:
        return input_rank - 1
    lhs, out = equation.replace(" ", "").split("->")
    x_axes, kernel_axes = lhs.split(",")
    if "." in equation or len(x_axes) != input_rank or len(kernel_axes) != len(kernel_shape):
        return None
    for k in range(1, len(kernel_axes) + 1):
        batch = x_axes[:-k]
        if x_axes[-k:] == kernel_axes[:k] and out == batch + kernel_axes[k:]:
            return len(batch)
    return None


def _matmul_2d(x: Any, kernel: Any, bias: Any, batch_axes: int) -> tuple[Any, Any]:
    """(y as [-1, N] with the bias added, the output shape) of a layer in matrix form."""
    free = tuple(kernel.shape[len(x.shape) - batch_axes:])
    contracted = 1
    for size in kernel.shape[:len(x.shape) - batch_axes]:
        contracted *= int(size)
    width = 1
    for size in free:
        width *= int(size)
    shape = ops.shape(x)
    y = ops.matmul(ops.reshape(x, (-1, contracted)), ops.reshape(kernel, (contracted, width)))
    if bias is not None:
        y = ops.add(y, ops.reshape(bias, (width,)))
    return y, (*[shape[i] for i in range(batch_axes)], *free)


def _matmul_call(
    layer: Any, quantizer: LayerQuantizer, inputs: Any, training: Any = None
) -> Any:
    """Fake-quantized forward pass of a Dense or EinsumDense layer instance.

    When an input axis has no static size (a dynamic-length export), the layer
    runs as one 2-D matmul with the bias and the output fake-quant right after
    it and the reshape back last: with run-time shapes TFLiteConverter keeps a
    FULLY_CONNECTED int8 only when its output's FakeQuant follows it directly
    (otherwise 10 of the tiny model's 14 stayed float).
    """
    training = bool(training) if training is not None else False
    x = quantizer.quantize_input(inputs, training)
    kernel = quantizer.quantize_kernel(layer.kernel)
    equation = getattr(layer, "equation", None)  # EinsumDense has one, Dense does not
    batch_axes = None
    if any(size is None for size in tuple(x.shape)[1:]):
        batch_axes = matrix_form(equation, len(x.shape), tuple(layer.kernel.shape))
        if batch_axes is not None and layer.bias is not None and tuple(layer.bias.shape) != \
                tuple(layer.kernel.shape)[len(x.shape) - batch_axes:]:
            batch_axes = None  # a bias on part of the free axes: keep the plain path
    if batch_axes is not None:
        y, shape = _matmul_2d(x, kernel, layer.bias, batch_axes)
        y = ops.reshape(quantizer.quantize_output(y, training), shape)
    else:
        y = ops.einsum(equation, x, kernel) if equation else ops.matmul(x, kernel)
        if layer.bias is not None:
            y = ops.add(y, layer.bias)
        y = quantizer.quantize_output(y, training)
    quantizer.count(training)
    if layer.activation is not None:
        y = layer.activation(y)
    return y


def _embedding_call(
    layer: Any, quantizer: LayerQuantizer, original: Any, inputs: Any, *args: Any, **kwargs: Any
) -> Any:
    if args or kwargs.get("reverse"):
        return original(inputs, *args, **kwargs)  # tied output projection: left as is
    if inputs.dtype not in ("int32", "int64"):
        inputs = ops.cast(inputs, "int32")
    table = quantizer.quantize_kernel(layer.embeddings)
    outputs = ops.cast(ops.take(table, inputs, axis=0), layer.compute_dtype)
    mask = layer.compute_mask(inputs)
    if mask is not None:
        _compat.set_keras_mask(outputs, mask)  # what keras's own Embedding does
    return outputs


def _position_embedding_call(
    layer: Any,
    quantizer: LayerQuantizer,
    original: Any,
    inputs: Any,
    start_index: Any = 0,
    positions: Any = None,
) -> Any:
    if positions is not None:
        return original(inputs, start_index=start_index, positions=positions)
    shape = ops.shape(inputs)
    table = quantizer.quantize_kernel(layer.position_embeddings)
    table = ops.slice(table, (start_index, 0), (shape[-2], shape[-1]))
    return ops.broadcast_to(table, shape)


#: TFLite's fixed int8 softmax output grid: scale 1/256, zero point -128, i.e. [0, 255/256].
SOFTMAX_OUTPUT_MAX = 255.0 / 256.0


def _softmax_call(original: Any, inputs: Any, mask: Any = None) -> Any:
    probabilities = original(inputs, mask=mask)
    if _activations_at_runtime():
        return probabilities
    return quantizers.fake_quant_activation(probabilities, 0.0, SOFTMAX_OUTPUT_MAX)


def attach_softmax(layer: Any) -> None:
    """Fake-quantize a `keras.layers.Softmax` output on TFLite's fixed int8 grid (1/256).

    When the value projection's output is int8, TFLiteConverter makes the
    probabilities x values matmul an int8 BATCH_MATMUL and quantizes the float
    softmax output with scale 1/256; this lets training see that rounding.
    """
    if not isinstance(layer, keras.layers.Softmax):
        raise ValueError(f"layer {layer.name!r} is {type(layer).__name__}, not Softmax")
    if getattr(layer, _PATCH_ATTR, None) is not None:
        raise ValueError(f"layer {layer.name!r} is already quantize-aware")
    object.__setattr__(layer, "call", functools.partial(_softmax_call, layer.call))
    object.__setattr__(layer, _PATCH_ATTR, "softmax")


def _position_embedding_class() -> Any:
    try:
        import keras_hub

        return keras_hub.layers.PositionEmbedding
    except (ImportError, AttributeError):  # pragma: no cover - keras-hub is a dependency
        return None


def is_supported_layer(layer: Any) -> bool:
    """True for the layer types QAT quantizes: keras Dense and EinsumDense."""
    return isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense))


def is_embedding_layer(layer: Any) -> bool:
    """True for embedding tables QAT can quantize (Embedding, keras-hub PositionEmbedding)."""
    position = _position_embedding_class()
    return isinstance(layer, keras.layers.Embedding) or (
        position is not None and isinstance(layer, position)
    )


def embedding_table(layer: Any) -> Any:
    """The table variable of an embedding layer."""
    if isinstance(layer, keras.layers.Embedding):
        return layer.embeddings
    return layer.position_embeddings


def kernel_reduce_axes(layer: Any) -> tuple[int, ...]:
    """Contracted kernel axes of a Dense (``(0,)``) or EinsumDense layer."""
    if isinstance(layer, keras.layers.EinsumDense):
        return quantizers.einsum_reduce_axes(layer.equation)
    return (0,)


def attach(layer: Any, quantizer: LayerQuantizer) -> None:
    """Make `layer` (Dense, EinsumDense or an embedding) run its call through `quantizer`.

    Raises:
        ValueError: when the layer is not Dense/EinsumDense, is not built, uses
            Keras's own quantization, or already has a quantizer.
    """
    if not (is_supported_layer(layer) or is_embedding_layer(layer)):
        raise ValueError(
            f"layer {layer.name!r} is {type(layer).__name__}, not Dense/EinsumDense/Embedding"
        )
    if not layer.built:
        raise ValueError(f"layer {layer.name!r} must be built before quantize_aware")
    if getattr(layer, "quantization_mode", None) is not None:
        raise ValueError(
            f"layer {layer.name!r} is already quantized by Keras "
            f"(mode {layer.quantization_mode!r}); pass the float model"
        )
    if getattr(layer, _PATCH_ATTR, None) is not None:
        raise ValueError(f"layer {layer.name!r} is already quantize-aware")
    if isinstance(layer, keras.layers.Embedding):
        call = functools.partial(_embedding_call, layer, quantizer, layer.call)
    elif is_embedding_layer(layer):
        call = functools.partial(_position_embedding_call, layer, quantizer, layer.call)
    else:  # Dense or EinsumDense
        call = functools.partial(_matmul_call, layer, quantizer)
    # object.__setattr__: keep the quantizer out of the layer's own tracking, so the
    # layer's saved variables stay exactly those of the float layer.
    object.__setattr__(layer, "call", call)
    object.__setattr__(layer, _PATCH_ATTR, quantizer)


def quantizer_of(layer: Any) -> LayerQuantizer | None:
    """The `LayerQuantizer` attached to `layer`, or None."""
    quantizer = getattr(layer, _PATCH_ATTR, None)
    return quantizer if isinstance(quantizer, LayerQuantizer) else None


def is_patched(layer: Any) -> bool:
    """True when `layer` runs a fake-quantizing call (matmul, embedding or softmax)."""
    return getattr(layer, _PATCH_ATTR, None) is not None
