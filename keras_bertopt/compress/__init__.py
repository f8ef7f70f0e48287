"""Compress a fine-tuned keras-hub BERT classifier to a latency / accuracy target.

* `parse_target({"latency": 0.05, "max_accuracy_drop": 1.0, "device": "cpu"})`:
  the target, checked before any work (`Target`).
* `candidate_shapes(model)`: uniform shapes (layers, heads, FFN width) to consider.
* `time_files(...)`: exported files timed paired against the float32 fixed-length file, in a
  fresh process that holds only LiteRT (`time_in_fresh_process`, the paired timing itself).
* `compress_to_target(model, target, train, validation, output_dir)`: the search,
  resumable, writing report.md and report.png and naming the file to ship (`CompressResult`), or
  raising `TargetNotMet` with the best file found; `next_candidate` is its choice of the next
  shape to recover (the front's first, then bisection; `trial_order` is the front).

```python
from keras_bertopt.compress import compress_to_target
result = compress_to_target(model, {"latency": 0.05, "max_accuracy_drop": 1.0},
                            (train_texts, train_labels), (val_texts, val_labels), "out/")
print(result.file, result.ratio, result.accuracy_drop)
```
"""

from keras_bertopt.compress.candidates import Candidate, candidate_shapes, model_shape
from keras_bertopt.compress.recover import RecoverySettings, recover_candidate, teacher_logits
from keras_bertopt.compress.search import (
    CompressResult,
    TargetNotMet,
    compress_to_target,
    next_candidate,
    trial_order,
)
from keras_bertopt.compress.target import DEVICES, Target, parse_target
from keras_bertopt.compress.timing import (
    export_candidate,
    export_reference,
    time_files,
    time_in_fresh_process,
)

__all__ = [
    "DEVICES",
    "Candidate",
    "CompressResult",
    "RecoverySettings",
    "Target",
    "TargetNotMet",
    "candidate_shapes",
    "compress_to_target",
    "export_candidate",
    "export_reference",
    "model_shape",
    "next_candidate",
    "parse_target",
    "recover_candidate",
    "teacher_logits",
    "time_files",
    "time_in_fresh_process",
    "trial_order",
]
