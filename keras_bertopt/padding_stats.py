"""How much of the work is padding, and how often `fit` traces its step.

`padding_report` counts real and padded tokens over one pass of a batched
dataset (the `PaddingReport` also lists the packed shapes XLA compiles);
`count_step_traces` counts the traces of a model's train / test / predict step.
Both measure what `keras_bertopt.bucketing` saves.

```python
import keras_bertopt as kb

fixed = kb.data.padding_report(train.batch(32), model.preprocessor)
bucketed = kb.data.padding_report(kb.data.bucket_by_length(train, model.preprocessor, 32),
                                  model.preprocessor)
print(fixed.efficiency, bucketed.efficiency, bucketed.lengths)
```
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras


@dataclasses.dataclass
class PaddingReport:
    """Real and padded tokens of a set of batches: how much of the work is padding.

    Attributes:
        batches: number of batches.
        examples: examples in them.
        real_tokens: sum of the padding masks (tokens that are not padding).
        padded_tokens: sum of batch x padded length.
        shapes: {(batch, length): count} of the packed shapes (what XLA compiles).
    """

    batches: int
    examples: int
    real_tokens: int
    padded_tokens: int
    shapes: dict[tuple[int, int], int]

    @property
    def efficiency(self) -> float:
        """Real tokens / padded tokens."""
        return self.real_tokens / self.padded_tokens if self.padded_tokens else float("nan")

    @property
    def lengths(self) -> list[int]:
        """The distinct padded lengths."""
        return sorted({length for _, length in self.shapes})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "batches": self.batches,
            "examples": self.examples,
            "real_tokens": self.real_tokens,
            "padded_tokens": self.padded_tokens,
            "efficiency": round(self.efficiency, 4),
            "distinct_lengths": self.lengths,
            "distinct_shapes": len(self.shapes),
        }


def padding_report(
    dataset: Any, preprocessor: Any = None, mask_key: str = "padding_mask"
) -> PaddingReport:
    """Count real vs padded tokens over one pass of a batched dataset.

    Args:
        dataset: batches of `(features, label)`; features raw (then `preprocessor`
            packs them) or already a dict holding `mask_key`.
        preprocessor: a keras-hub preprocessor or a task carrying one.
    """
    import numpy as np

    layer = (
        None
        if preprocessor is None
        else (getattr(preprocessor, "preprocessor", None) or preprocessor)
    )
    batches = examples = real = padded = 0
    shapes: dict[tuple[int, int], int] = {}
    for element in dataset:
        x = element[0] if isinstance(element, tuple) else element
        if not (isinstance(x, dict) and mask_key in x):
            if layer is None:
                raise ValueError(f"`dataset` features have no {mask_key!r}: pass `preprocessor`")
            x = keras.utils.unpack_x_y_sample_weight(layer(x))[0]
        mask = np.asarray(x[mask_key])
        shape = (int(mask.shape[0]), int(mask.shape[1]))
        shapes[shape] = shapes.get(shape, 0) + 1
        batches += 1
        examples += shape[0]
        real += int(mask.astype(np.int64).sum())
        padded += shape[0] * shape[1]
    return PaddingReport(batches, examples, real, padded, shapes)


def count_step_traces(model: Any) -> dict[str, int]:
    """Count how often `fit` / `evaluate` / `predict` trace their step function.

    Call before `fit`; the returned dict's ``"train"``, ``"test"`` and
    ``"predict"`` entries grow by one each time TensorFlow traces the step
    (Python runs the step body only while tracing). Bucketed batches of
    unknown length trace the train step once (twice at most, for a short last
    batch); XLA (``jit_compile=True``) additionally compiles once per distinct
    shape, which `padding_report(...).shapes` lists.
    """
    counts = {"train": 0, "test": 0, "predict": 0}
    for kind in counts:
        step = getattr(model, f"{kind}_step")

        def counted(*args: Any, _step: Any = step, _kind: str = kind, **kwargs: Any) -> Any:
            counts[_kind] += 1
            return _step(*args, **kwargs)

        setattr(model, f"{kind}_step", counted)
        setattr(model, f"{kind}_function", None)  # rebuilt on the next call, with the counter
    return counts
