"""TFLite (LiteRT) export of keras-hub classifiers, with verification and a host runner.

* `to_tflite(model, path, quantization="none" | "float16" | "dynamic" | "int8", ...)`
  writes a verified file and returns an `ExportReport`.
* `TFLiteClassifier(path, preprocessor).predict(texts)` -> probabilities, labels;
  `.evaluate(dataset)` -> accuracy.
* `inspect_tflite(path)`: int8 / hybrid / float op counts and weight sparsity in
  the file; `measure_latency(path)`: batch-1 latency.

```python
report = keras_bertopt.export.to_tflite(model, "model.tflite")
runner = keras_bertopt.export.TFLiteClassifier("model.tflite", model.preprocessor)
runner.predict(["a wonderful film"])["labels"]
```
"""

from keras_bertopt.export.convert import (
    collect_inputs,
    is_quantize_aware,
    keras_logits,
    max_sequence_length,
    to_tflite,
)
from keras_bertopt.export.modes import QUANTIZATION_MODES, QuantizationMode
from keras_bertopt.export.report import ExportReport
from keras_bertopt.export.runner import (
    INPUT_NAMES,
    TFLiteClassifier,
    evaluate,
    inspect_tflite,
    make_interpreter,
    measure_latency,
    preprocess_texts,
    read_tflite_bytes,
)
from keras_bertopt.files import gzip_size

__all__ = [
    "ExportReport",
    "INPUT_NAMES",
    "QUANTIZATION_MODES",
    "QuantizationMode",
    "TFLiteClassifier",
    "collect_inputs",
    "evaluate",
    "gzip_size",
    "inspect_tflite",
    "is_quantize_aware",
    "keras_logits",
    "make_interpreter",
    "max_sequence_length",
    "measure_latency",
    "preprocess_texts",
    "read_tflite_bytes",
    "to_tflite",
]
