"""Batch size from data and memory: try sizes, keep what fits; accumulate for larger ones.

* `find_batch_size(model, sequence_length, limit=...)` runs real training steps
  of the compiled model at growing batch sizes (doubling up to `limit`) on
  synthetic inputs of `sequence_length` tokens, stops at the limit or at the
  first size that runs out of memory, and reports each size's step time,
  examples/s and tokens/s; `.largest` and `.fastest` are the choices. The
  model's weights and optimizer state are restored afterwards.
* `accumulation_plan(effective, max_batch)` splits an effective batch larger
  than memory allows into equal micro-batches for Keras's own
  ``gradient_accumulation_steps`` optimizer argument (which
  `keras_bertopt.optimizers.create_optimizer` passes through): the optimizer
  then steps once per ``steps`` micro-batches on their mean gradient, the same
  update as one batch of `effective` examples.

Example:

```python
report = kb.batch_size.find_batch_size(model, sequence_length=64, limit=256)
print(report)                         # a table of sizes, step times and rates
plan = kb.batch_size.accumulation_plan(1024, report.largest)
optimizer = kb.optimizers.create_optimizer(
    1e-4, total_steps, gradient_accumulation_steps=plan.steps or None)
train = kb.data.load_file("train.tsv", batch_size=plan.micro_batch_size)
```
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any, Iterator

import keras
import numpy as np

_OBJECTIVES = ("largest", "fastest")


@dataclasses.dataclass
class Trial:
    """One batch size tried: whether it ran, and how fast (None when it did not run)."""

    batch_size: int
    fits: bool
    seconds_per_step: float | None = None
    examples_per_second: float | None = None
    tokens_per_second: float | None = None
    error: str | None = None


@dataclasses.dataclass
class BatchSizeReport:
    """What `find_batch_size` tried and why it stopped.

    Attributes:
        sequence_length: tokens per example in the trials.
        limit: the largest size it was allowed to try.
        trials: every size tried, in order.
        stopped: ``"limit"`` (the next size would exceed `limit`) or
            ``"out of memory"`` (the last trial failed to allocate).
    """

    sequence_length: int
    limit: int
    trials: list[Trial]
    stopped: str

    @property
    def largest(self) -> int | None:
        """The largest size that ran."""
        sizes = [t.batch_size for t in self.trials if t.fits]
        return max(sizes) if sizes else None

    @property
    def fastest(self) -> int | None:
        """The size with the most tokens per second."""
        fits = [t for t in self.trials if t.fits]
        return max(fits, key=lambda t: t.tokens_per_second or 0.0).batch_size if fits else None

    def choose(self, objective: str = "largest") -> int:
        """`largest` or `fastest`; raises ValueError when no size ran."""
        if objective not in _OBJECTIVES:
            raise ValueError(f"`objective` must be one of {_OBJECTIVES}, got {objective!r}")
        size = self.largest if objective == "largest" else self.fastest
        if size is None:
            raise ValueError(
                f"no batch size ran at sequence length {self.sequence_length}:\n{self}"
            )
        return size

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "sequence_length": self.sequence_length,
            "limit": self.limit,
            "stopped": self.stopped,
            "largest": self.largest,
            "fastest": self.fastest,
            "trials": [dataclasses.asdict(t) for t in self.trials],
        }

    def __str__(self) -> str:
        lines = [
            f"batch sizes at sequence length {self.sequence_length} (limit {self.limit}):",
            "   batch  fits  s/step  examples/s  tokens/s",
        ]
        for t in self.trials:
            if t.fits:
                lines.append(
                    f"{t.batch_size:>8}  yes  {t.seconds_per_step:7.3f}  "
                    f"{t.examples_per_second:10.1f}  {t.tokens_per_second:8.0f}"
                )
            else:
                lines.append(f"{t.batch_size:>8}   no  ({t.error})")
        lines.append(
            f"stopped: {self.stopped}; largest that ran: {self.largest}, "
            f"fastest (tokens/s): {self.fastest}"
        )
        return "\n".join(lines)


def _synthetic_batch(model: Any, batch_size: int, sequence_length: int, seed: int) -> Any:
    """Random token ids at full length (every position real) and random labels."""
    rng = np.random.default_rng(seed)
    backbone = getattr(model, "backbone", None)
    vocabulary = int(getattr(backbone, "vocabulary_size", 1000) or 1000)
    features = {
        "token_ids": rng.integers(1, vocabulary, (batch_size, sequence_length)).astype("int32"),
        "segment_ids": np.zeros((batch_size, sequence_length), "int32"),
        "padding_mask": np.ones((batch_size, sequence_length), "int32"),
    }
    classes = int(model.outputs[0].shape[-1]) if getattr(model, "outputs", None) else 2
    return features, rng.integers(0, max(classes, 2), (batch_size,)).astype("int32")


def _is_out_of_memory(error: BaseException) -> bool:
    import tensorflow as tf

    return isinstance(error, (MemoryError, tf.errors.ResourceExhaustedError))


def _snapshot(model: Any) -> tuple[list[Any], list[Any], dict[int, Any]]:
    optimizer = getattr(model, "optimizer", None)
    weights = [keras.ops.convert_to_numpy(v) for v in model.weights]
    existing = (
        {}
        if optimizer is None
        else {id(v): keras.ops.convert_to_numpy(v) for v in optimizer.variables}
    )
    metrics = [keras.ops.convert_to_numpy(v) for v in model.metrics_variables]
    return weights, metrics, existing


def _restore(model: Any, state: tuple[list[Any], list[Any], dict[int, Any]]) -> None:
    weights, metrics, existing = state
    for variable, value in zip(model.weights, weights, strict=True):
        variable.assign(value)
    for variable, value in zip(model.metrics_variables, metrics, strict=False):
        variable.assign(value)
    optimizer = getattr(model, "optimizer", None)
    for variable in [] if optimizer is None else optimizer.variables:
        # Variables the trials created (the optimizer's slots, built on the first
        # step) start at zero, as Adam's, LAMB's and the accumulators' do.
        value = existing.get(id(variable))
        variable.assign(np.zeros(variable.shape, variable.dtype) if value is None else value)


@contextlib.contextmanager
def preserved_state(model: Any) -> Iterator[None]:
    """Run training steps inside and get the weights, metrics and optimizer state back.

    Optimizer variables created inside (slots built on the first step) are
    reset to zero, their initial value for Adam, LAMB and the gradient
    accumulators. Used by `find_batch_size`, and to compile (trace, XLA) a
    model on sample batches before timing it.
    """
    state = _snapshot(model)
    try:
        yield
    finally:
        _restore(model, state)


def _train_step(model: Any, features: Any, labels: Any) -> None:
    # keras-hub tasks preprocess inputs in train_on_batch; the features here are
    # already packed, so call Keras's own train_on_batch past the task's.
    keras.Model.train_on_batch(model, features, labels)


def find_batch_size(
    model: Any,
    sequence_length: int,
    *,
    limit: int = 1024,
    start: int = 8,
    steps: int = 2,
    seed: int = 0,
    step_fn: Any = None,
) -> BatchSizeReport:
    """Try batch sizes ``start, 2*start, ...`` up to `limit`; stop at the limit or out of memory.

    Each size runs one untimed training step (tracing, allocation) and then
    `steps` timed ones, on random token ids filling all `sequence_length`
    positions, through the model as compiled (its optimizer, loss, jit
    setting). Out of memory (`tf.errors.ResourceExhaustedError` or
    `MemoryError`) ends the search; other errors propagate. Weights, metric
    and optimizer state are put back afterwards.

    Args:
        model: a compiled keras-hub task (or Keras model taking the packed
            features dict).
        sequence_length: tokens per example.
        limit: largest batch size to try (>= `start`).
        start: first batch size (>= 1).
        steps: timed steps per size (>= 1).
        seed: seed of the synthetic batches.
        step_fn: ``step_fn(model, features, labels)`` running one training
            step (default: Keras's `train_on_batch`).

    Returns:
        A `BatchSizeReport` (print it for the table).

    Raises:
        ValueError: bad arguments or an uncompiled model, before any step runs.
    """
    for name, value, low in (
        ("sequence_length", sequence_length, 1),
        ("start", start, 1),
        ("steps", steps, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < start:
        raise ValueError(f"`limit` must be an integer >= `start` ({start}), got {limit!r}")
    if getattr(model, "optimizer", None) is None or getattr(model, "loss", None) is None:
        raise ValueError("`model` must be a compiled Keras model (model.compile(optimizer, loss))")
    run = _train_step if step_fn is None else step_fn
    trials: list[Trial] = []
    stopped = "limit"
    size = start
    with preserved_state(model):
        while size <= limit:
            features, labels = _synthetic_batch(model, size, sequence_length, seed)
            try:
                run(model, features, labels)
                begin = time.perf_counter()
                for _ in range(steps):
                    run(model, features, labels)
                seconds = (time.perf_counter() - begin) / steps
            except Exception as error:  # noqa: BLE001 - only out-of-memory is handled
                if not _is_out_of_memory(error):
                    raise
                trials.append(Trial(size, False, error=f"out of memory: {type(error).__name__}"))
                stopped = "out of memory"
                break
            trials.append(
                Trial(size, True, seconds, size / seconds, size * sequence_length / seconds)
            )
            size *= 2
    return BatchSizeReport(sequence_length, limit, trials, stopped)


@dataclasses.dataclass(frozen=True)
class AccumulationPlan:
    """An effective batch as `steps` equal micro-batches of `micro_batch_size`."""

    effective_batch_size: int
    micro_batch_size: int
    steps: int

    @property
    def optimizer_kwargs(self) -> dict[str, Any]:
        """Keyword for Keras optimizers / `create_optimizer` (empty when no accumulation)."""
        return {"gradient_accumulation_steps": self.steps} if self.steps > 1 else {}


def accumulation_plan(effective_batch_size: int, max_batch_size: int) -> AccumulationPlan:
    """The largest micro-batch <= `max_batch_size` dividing `effective_batch_size` evenly.

    Equal micro-batches make the mean of their mean gradients the large batch's
    mean gradient, which is what Keras's accumulation averages.
    """
    for name, value in (
        ("effective_batch_size", effective_batch_size),
        ("max_batch_size", max_batch_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}")
    micro = min(effective_batch_size, max_batch_size)
    while effective_batch_size % micro:
        micro -= 1
    return AccumulationPlan(effective_batch_size, micro, effective_batch_size // micro)
