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

from keras_bertopt.export.classifier import TFLiteClassifier, evaluate
from keras_bertopt.export.convert import to_tflite
from keras_bertopt.export.flatbuffer import inspect_tflite, read_tflite_bytes
from keras_bertopt.export.inputs import INPUT_NAMES, collect_inputs, preprocess_texts
from keras_bertopt.export.interpreter import make_interpreter, measure_latency
from keras_bertopt.export.model_facts import is_quantize_aware, max_sequence_length
from keras_bertopt.export.modes import QUANTIZATION_MODES, QuantizationMode
from keras_bertopt.export.report import ExportReport
from keras_bertopt.export.verify import keras_logits
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
