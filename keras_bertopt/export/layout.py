"""Which layout an exported file gets: `to_tflite`'s ``"auto"`` arguments resolved.

Three layouts (see `keras_bertopt.export.interpreter`):

* **dynamic length** (the default for float32, float16, dynamic-range and QAT
  int8): one ``serving_default`` signature of input shape ``[1, -1]``. MediaPipe
  Tasks, LiteRT and `TFLiteClassifier` all run each sentence at its own token
  count; with MediaPipe metadata it runs on raw text on Android, iOS and the
  web. Inputs longer than the export length are cut inside the file (first
  ``L - 1`` tokens and the last ``[SEP]``), as the Python preprocessor would.
* **fixed length** (``length_buckets=None, dynamic_length=False``; the default
  of post-training int8, whose calibration is per static shape, and of a
  ``fully_integer`` QAT model, which is for integer-only accelerators): one
  static ``[1, L]`` signature, for GPU delegates, NNAPI and NPUs, which refuse
  dynamically sized tensors.
* **length buckets** (``length_buckets="default"`` or a list): one static
  signature per bucket; runs on static-shape delegates at near real-length cost
  in LiteRT, but MediaPipe runs single-signature files only, so no metadata.

Metadata (``metadata="auto"``) is embedded whenever it can be: `mediapipe` is
installed, the file has one signature of batch 1, and the model's tokenizer is
an uncased WordPiece tokenizer (MediaPipe's BERT tokenizer lowercases), and the
model is not ``fully_integer`` (metadata files output float probabilities).
Labels default to the class indices ``"0"``, ``"1"``, ... then.

Example:

```python
layout = resolve_layout("dynamic", qat=False, preprocessor=model.preprocessor,
                        num_classes=2)
layout.dynamic_length, layout.metadata   # True, True (with mediapipe installed)
```
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any, Sequence

import numpy as np

from keras_bertopt.export import metadata as mediapipe_metadata

#: Length buckets below the export length that ``length_buckets="default"`` adds: each
#: at most 1.5x the one before, so an input longer than 16 tokens runs padded by less
#: than half.
DEFAULT_LENGTH_BUCKETS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384)

_AUTO_FLAGS = (True, False, "auto")


@dataclasses.dataclass(frozen=True)
class Layout:
    """The resolved layout of one file.

    length_buckets: bucket lengths asked for (None: one signature).
    dynamic_length: the one signature has a dynamic sequence dimension.
    metadata: MediaPipe metadata is embedded (the file outputs probabilities).
    labels: the label names written with the metadata (None without).
    """

    length_buckets: list[int] | None
    dynamic_length: bool
    metadata: bool
    labels: list[str] | None


def _buckets(length_buckets: Any) -> list[int] | None:
    if isinstance(length_buckets, str) and length_buckets in ("auto", "default"):
        return None if length_buckets == "auto" else list(DEFAULT_LENGTH_BUCKETS)
    if length_buckets is None or (isinstance(length_buckets, (tuple, list))
                                  and not length_buckets):
        return None
    if isinstance(length_buckets, str) or not all(
            isinstance(b, (int, np.integer)) and not isinstance(b, bool) and b >= 2
            for b in length_buckets):
        raise ValueError(
            "`length_buckets` must be 'auto', 'default', None or integers >= 2 such as "
            f"(16, 32, 64), got {length_buckets!r}"
        )
    return [int(b) for b in length_buckets]


def metadata_possible(preprocessor: Any) -> bool:
    """True when `mediapipe` is installed and MediaPipe's BERT tokenizer can run the model's."""
    if importlib.util.find_spec("mediapipe") is None:
        return False
    try:
        mediapipe_metadata.check_tokenizer(preprocessor)
    except ValueError:
        return False
    return True


def resolve_layout(
    quantization: str,
    qat: bool,
    preprocessor: Any,
    num_classes: int,
    *,
    length_buckets: Sequence[int] | str | None = "auto",
    dynamic_length: bool | str = "auto",
    metadata: bool | str = "auto",
    labels: Sequence[str] | None = None,
    batch_size: int | None = 1,
    fully_integer: bool = False,
) -> Layout:
    """Resolve `to_tflite`'s layout arguments (see the module docstring for the rules).

    Raises:
        ValueError: a bad value of `length_buckets`, `dynamic_length` or
            `metadata`; buckets with a dynamic length or with ``metadata=True``;
            ``metadata=True`` with a tokenizer MediaPipe cannot run or bad
            `labels`; `labels` with ``metadata=False``.
    """
    for name, value in (("dynamic_length", dynamic_length), ("metadata", metadata)):
        if not any(value is flag for flag in _AUTO_FLAGS) and value != "auto":
            raise ValueError(f"`{name}` must be True, False or 'auto', got {value!r}")
    buckets = _buckets(length_buckets)
    # Post-training int8 calibrates per static shape; a fully-integer file is for
    # integer-only accelerators, which take static shapes only.
    static = quantization == "int8" and (not qat or fully_integer)
    if dynamic_length == "auto":
        dynamic_length = (isinstance(length_buckets, str) and length_buckets == "auto"
                          and not static)
    if buckets and dynamic_length:
        raise ValueError("`length_buckets` cannot be combined with dynamic_length=True; pass "
                         "length_buckets=None")
    asked = metadata
    if metadata == "auto":
        metadata = (not buckets and batch_size == 1 and not fully_integer
                    and metadata_possible(preprocessor))
        if metadata and labels is None:
            labels = [str(i) for i in range(num_classes)]
    elif metadata and buckets:
        raise ValueError("`length_buckets` cannot be combined with metadata=True (MediaPipe "
                         "runs a file's first signature only); pass length_buckets=None")
    if metadata:
        mediapipe_metadata.check_tokenizer(preprocessor)
        mediapipe_metadata.check_labels(labels, num_classes)
    elif labels is not None and asked is False:
        raise ValueError("`labels` are written into the file with metadata=True only")
    return Layout(buckets, bool(dynamic_length), bool(metadata),
                  list(labels) if metadata else None)
