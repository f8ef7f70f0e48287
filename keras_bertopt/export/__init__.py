"""TFLite (LiteRT) export of keras-hub classifiers, with verification and a host runner.

* `to_tflite(model, path, quantization="none" | "float16" | "dynamic" | "int8", ...)`
  writes a verified file that runs at each input's own length (or a fixed
  length, or length buckets) and returns an `ExportReport`; with
  ``metadata=True, labels=[...]`` the file carries MediaPipe TextClassifier
  metadata and runs in MediaPipe Tasks on raw text.
* `TFLiteClassifier(path, preprocessor).predict(texts)` -> probabilities, labels
  (each sentence at the length it needs); `.evaluate(dataset)` -> accuracy.
* `inspect_tflite(path)`: int8 / hybrid / float op counts and weight sparsity in
  the file; `measure_latency(path)`: batch-1 latency.

One module per concern: `convert` (`to_tflite`'s steps), `converter` (SavedModel
signatures and converter settings per mode), `inputs` (text -> int32 arrays,
real lengths), `interpreter` (signatures, real-length runs, latency),
`classifier` (`TFLiteClassifier`), `flatbuffer` (file checks and inspection),
`verify` (file vs Keras), `metadata` (MediaPipe), `report` (`ExportReport`),
`modes` (the quantization modes), `model_facts` (what export reads off a model).

```python
report = keras_bertopt.export.to_tflite(model, "model.tflite")
runner = keras_bertopt.export.TFLiteClassifier("model.tflite", model.preprocessor)
runner.predict(["a wonderful film"])["labels"]
```
"""

from __future__ import annotations

import importlib
from typing import Any

# Names -> the submodule that defines them. Loaded on first access, so importing a light
# submodule (``keras_bertopt.export.modes``) or the package does not import TensorFlow.
_EXPORTS = {
    "TFLiteClassifier": "classifier",
    "evaluate": "classifier",
    "to_tflite": "convert",
    "inspect_tflite": "flatbuffer",
    "read_tflite_bytes": "flatbuffer",
    "INPUT_NAMES": "inputs",
    "collect_inputs": "inputs",
    "preprocess_texts": "inputs",
    "make_interpreter": "interpreter",
    "measure_latency": "interpreter",
    "is_quantize_aware": "model_facts",
    "max_sequence_length": "model_facts",
    "QUANTIZATION_MODES": "modes",
    "QuantizationMode": "modes",
    "ExportReport": "report",
    "keras_logits": "verify",
}

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


def __getattr__(name: str) -> Any:
    if name == "gzip_size":
        from keras_bertopt.files import gzip_size

        return gzip_size
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
