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
import logging
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    from keras_bertopt.recipe.context import StageContext

log = logging.getLogger("keras_bertopt")


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


def curve_recorder(stage: str, points: list[dict[str, Any]], every: int, start: int = 0) -> Any:
    """A Keras callback appending (step, loss, accuracy, ...) to `points` every `every` steps
    (counting from `start`, the steps already done)."""
    import keras

    class CurveRecorder(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.step = start

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


def _checkpoint(ctx: StageContext, total: int) -> Any:
    """The stage's `StepCheckpoint` (None when `checkpoint_every` is off)."""
    from keras_bertopt.recipe.checkpoints import StepCheckpoint

    every = ctx.config.checkpoint_every
    if not every:
        return None
    checkpoint = StepCheckpoint(ctx.paths.checkpoint(ctx.name), every)
    if checkpoint.step:
        log.info(f"{ctx.name}: resuming at step {checkpoint.step} of {total} "
                 f"(checkpoint {ctx.paths.relative(checkpoint.path)})")
    return checkpoint


def fit(ctx: StageContext, model: Any, epochs: int, steps: int,
        extra: list[Any]) -> dict[str, Any]:
    """`model.fit` on the training split with `extra` callbacks plus throughput, learning
    rate and curve logging, resumed from the stage's checkpoint when there is one (see
    `checkpoints.resumable_fit`); returns ``{"history", "padding", "curves"}``."""
    from keras_bertopt import callbacks
    from keras_bertopt.recipe.checkpoints import resumable_fit

    checkpoint = _checkpoint(ctx, epochs * steps)
    # Saved with each checkpoint, so a resumed stage keeps the points recorded before.
    curves = checkpoint.extras.setdefault("curves", []) if checkpoint else []
    recorder = curve_recorder(ctx.name, curves, max(1, epochs * steps // 50),
                              checkpoint.step if checkpoint else 0)
    with padded_per_batch(model, ctx.config.data.bucketing) as bucketing:
        throughput = callbacks.Throughput(warmup_steps=min(3, max(0, steps - 1)), verbose=0)

        def train() -> Any:  # a new pipeline per `fit` call: the same batches in order
            return throughput.count_tokens(ctx.data.train_dataset(bucketing), model)

        history = resumable_fit(
            model, train, epochs=epochs, steps_per_epoch=steps, checkpoint=checkpoint,
            callbacks=[*extra, throughput, callbacks.LearningRateLogger(), recorder],
            validation_data=ctx.data.validation_data(), verbose=ctx.fit_verbose,
            shuffle=False,  # the pipeline shuffles (Keras warns about shuffle=True)
        )
    return {"history": history, "padding": _padding(throughput, bucketing is not None),
            "curves": list(curves)}


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
