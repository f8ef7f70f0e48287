"""Quantization-aware training (QAT) for keras-hub BERT classifiers.

`quantize_aware(model)` returns a model that trains in `model.fit` with 8-bit
fake quantization of its Dense / EinsumDense layers and converts with
TFLiteConverter (optimizations=[DEFAULT]) to real int8 FULLY_CONNECTED ops
using the learned ranges, without representative data
(`keras_bertopt.export.to_tflite(model, path, quantization="int8")`).

The default graph runs every Dense / EinsumDense as an int8 FULLY_CONNECTED and
keeps LayerNorm, softmax and the two attention matmuls float (LiteRT's int8
BATCH_MATMUL has no XNNPack kernel); `QuantizationConfig(fully_integer=True)`
makes every op between the int32 inputs and the logits int8 / int32, for NPUs
and int8-only delegates. `QuantizationConfig(activations="dynamic")` learns
int8 weights only, for a dynamic-range file (`to_tflite(qat, quantization=
"dynamic")`), the fastest file on CPU.

```python
from keras_bertopt.quantization import quantize_aware, QuantizationConfig
qat = quantize_aware(float_classifier, QuantizationConfig(exclude=r"^logits/"))
qat.fit(train_ds, epochs=1)
```
"""

from keras_bertopt.quantization.config import QuantizationConfig
from keras_bertopt.quantization.integer import ActivationRanges
from keras_bertopt.quantization.layers import LayerQuantizer, quantizer_of
from keras_bertopt.quantization.quantizers import (
    einsum_reduce_axes,
    fake_quant_activation,
    fake_quant_weight,
    weight_scale,
)
from keras_bertopt.quantization.wrapper import (
    QuantizeAwareTextClassifier,
    is_quantize_aware,
    quantize_aware,
    quantized_layers,
)

__all__ = [
    "ActivationRanges",
    "LayerQuantizer",
    "QuantizationConfig",
    "QuantizeAwareTextClassifier",
    "einsum_reduce_axes",
    "fake_quant_activation",
    "fake_quant_weight",
    "is_quantize_aware",
    "quantize_aware",
    "quantized_layers",
    "quantizer_of",
    "weight_scale",
]
