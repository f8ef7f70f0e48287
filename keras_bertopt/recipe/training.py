"""The one training sequence every training stage shares.

(in the strategy scope) the stage's setup and `compile` -> `fit` with the
recipe's callbacks -> the stage's finish -> save. A training stage supplies
only its setup (what to wrap, which optimizer, which callbacks) and,
optionally, what to do with the trained model before it is saved.

```python
def run(ctx):
    def setup(model, total_steps):
        return training.Setup(model, keras.optimizers.AdamW(1e-4))
    return training.train(ctx, epochs=1, steps_per_epoch=None, setup=setup)
```
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    from keras_bertopt.recipe.context import StageContext


@dataclasses.dataclass
class Setup:
    """What a training stage trains: the model (maybe wrapped), its optimizer, its callbacks."""

    model: Any
    optimizer: Any
    callbacks: list[Any] = dataclasses.field(default_factory=list)
    #: Extra entries for the stage's result (``state.json``).
    result: dict[str, Any] = dataclasses.field(default_factory=dict)


def compile_classifier(model: Any, optimizer: Any, jit_compile: bool = False) -> None:
    """Compile for integer labels and logits, with an ``accuracy`` metric."""
    import keras

    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
    )


@contextlib.contextmanager
def padded_per_batch(model: Any, enabled: bool) -> Iterator[Any]:
    """Give the task that `model` trains (itself, or a Distiller's student) a
    `DynamicPaddingPreprocessor` for the block; the fixed-length one is put back after.

    Yields the preprocessor that batches are bucketed with, or None when `enabled`
    is false or the task has no BERT classifier preprocessor.
    """
    import keras_hub

    from keras_bertopt.bucketing import dynamic_padding

    task = getattr(model, "student", model)
    fixed = getattr(task, "preprocessor", None)
    if not enabled or not isinstance(fixed, keras_hub.models.BertTextClassifierPreprocessor):
        yield None
        return
    dynamic = dynamic_padding(task)
    try:
        yield dynamic
    finally:
        task.preprocessor = fixed


def curve_recorder(stage: str, points: list[dict[str, Any]], every: int) -> Any:
    """A Keras callback appending (step, loss, accuracy, ...) to `points` every `every` steps."""
    import keras

    class CurveRecorder(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.step = 0

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.step += 1
            if logs and (self.step % every == 0 or self.step == 1):
                point: dict[str, Any] = {"stage": stage, "step": self.step}
                for key in ("loss", "accuracy", "learning_rate", "sparsity"):
                    if key in logs:
                        point[key] = float(logs[key])
                points.append(point)

    return CurveRecorder()


def _padding(throughput: Any, bucketed: bool) -> dict[str, Any]:
    """Real and padded tokens of the timed steps, their ratio, whether batches were bucketed."""
    rates = throughput.epoch_rates
    tokens = sum(e["tokens"] or 0 for e in rates)
    padded = sum(e["padded_tokens"] or 0 for e in rates)
    return {"bucketed": bucketed, "timed_examples": int(sum(e["examples"] or 0 for e in rates)),
            "timed_steps": sum(e["steps"] for e in rates), "real_tokens": int(tokens),
            "padded_tokens": int(padded), "padding_efficiency": tokens / padded if padded else None}


def fit(ctx: StageContext, model: Any, epochs: int, steps: int,
        extra: list[Any]) -> dict[str, Any]:
    """`model.fit` on the training split with `extra` callbacks plus throughput, learning
    rate and curve logging; returns ``{"history", "padding", "curves"}`` as plain data."""
    from keras_bertopt import callbacks

    curves: list[dict[str, Any]] = []
    recorder = curve_recorder(ctx.name, curves, max(1, epochs * steps // 50))
    with padded_per_batch(model, ctx.config.data.bucketing) as bucketing:
        train = ctx.data.train_dataset(bucketing)
        throughput = callbacks.Throughput(warmup_steps=min(3, max(0, steps - 1)), verbose=0)
        train = throughput.count_tokens(train, model)
        history = model.fit(
            train,
            epochs=epochs,
            steps_per_epoch=steps,
            validation_data=ctx.data.validation_data(),
            callbacks=[*extra, throughput, callbacks.LearningRateLogger(), recorder],
            verbose=ctx.fit_verbose,
        )
    return {"history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
            "padding": _padding(throughput, bucketing is not None), "curves": curves}


def train(
    ctx: StageContext,
    *,
    epochs: int,
    steps_per_epoch: int | None,
    setup: Callable[[Any, int], Setup],
    finish: Callable[[Any], tuple[Any, dict[str, Any]]] | None = None,
    jit_compile: bool = False,
) -> dict[str, Any]:
    """Train `ctx.model` and save it as ``<stage>/model.keras``; return the stage's result.

    Args:
        ctx: the stage's context (its `model` is the one trained).
        epochs, steps_per_epoch: the stage's length (None: one pass over the data).
        setup: ``setup(model, total_steps) -> Setup``, called in the strategy scope.
        finish: ``finish(trained) -> (model_to_save, extra_result)``.
        jit_compile: compile the train step with XLA.

    Returns:
        ``{"steps", "history", "padding", "curves", "jit_compile", **setup.result,
        **extra_result, "model"}``.
    """
    steps = ctx.data.steps(steps_per_epoch)
    total = epochs * steps
    with ctx.scope():
        plan = setup(ctx.model, total)
        compile_classifier(plan.model, plan.optimizer, jit_compile)
    result: dict[str, Any] = {"steps": total,
                              **fit(ctx, plan.model, epochs, steps, plan.callbacks),
                              "jit_compile": bool(plan.model.jit_compile), **plan.result}
    final = plan.model
    if finish is not None:
        final, extra = finish(plan.model)
        result.update(extra)
    result["model"] = ctx.models.save(ctx.name, final)
    return result
