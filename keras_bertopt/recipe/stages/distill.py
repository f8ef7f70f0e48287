"""Stage ``distill`` (a shallower student trained against the fine-tuned model) and the
``distill: {teacher: finetune}`` option of the prune and QAT stages (`wrap`, `unwrap`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from keras_bertopt.recipe import training
from keras_bertopt.recipe.sections import StageSection, TeacherConfig, rule

if TYPE_CHECKING:
    from keras_bertopt.recipe.context import StageContext


class DistillConfig(StageSection):
    """Stage ``distill``: a shallower student (`keras_bertopt.distillation.shrink`) of the
    fine-tuned model, trained against it with KD.

    `num_layers` (evenly spaced, first and last kept) or `keep_layers` (0-based
    teacher layers) choose the student's layers (default: half the teacher's).
    """

    enabled: bool = False
    num_layers: int | None = Field(None, ge=1)
    keep_layers: list[int] | None = None
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1)
    epochs: int = Field(1, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1)
    learning_rate: float = Field(1e-4, gt=0)

    @model_validator(mode="after")
    def _one_layer_choice(self) -> DistillConfig:
        rule(self.num_layers is None or self.keep_layers is None, "keep_layers",
             "null when distill.num_layers is set (give one of them)", self.keep_layers)
        return self


SECTION = DistillConfig


def check(config: Any) -> None:
    """The fine-tuned model is the teacher: it must run; the student fits in it."""
    d = config.distill
    if not d.enabled:
        return
    rule(config.finetune.enabled, "distill.enabled",
         "false unless 'finetune.enabled' is true (the fine-tuned model is the teacher)",
         d.enabled)
    layers = config.model.layer_count()
    limit = layers if layers is not None else 10**6
    if d.num_layers is not None:
        rule(d.num_layers <= limit, "distill.num_layers",
             f"an integer in [1, {limit}] (the teacher's layers)", d.num_layers)
    if d.keep_layers is not None:
        keep = d.keep_layers
        rule(bool(keep) and all(0 <= i < limit for i in keep) and len(set(keep)) == len(keep),
             "distill.keep_layers", f"distinct teacher layer indices in [0, {limit - 1}]", keep)


def teacher_model(ctx: StageContext, stage: str) -> Any:
    """A fresh copy of the teacher `stage`'s model (never the one being trained)."""
    if stage not in ctx.completed:
        raise ValueError(
            f"the teacher stage {stage!r} has not run: enable it (config key '{stage}.enabled')"
        )
    return ctx.models.fresh(stage)


def wrap(ctx: StageContext, student: Any, config: TeacherConfig) -> Any:
    """`student` itself without a teacher, else a `Distiller` training it (same `fit`)."""
    if config.teacher is None:
        return student
    from keras_bertopt.distillation import Distiller

    return Distiller(teacher_model(ctx, config.teacher), student,
                     temperature=config.temperature, alpha=config.alpha)


def unwrap(model: Any) -> Any:
    """The trained student of a `Distiller`, or `model`."""
    from keras_bertopt.distillation import Distiller

    return model.student if isinstance(model, Distiller) else model


def run(ctx: StageContext) -> dict[str, Any]:
    """Shrink the fine-tuned model and distil it; writes ``distill/model.keras``."""
    import keras

    from keras_bertopt.distillation import Distiller, shrink

    d: DistillConfig = ctx.section

    def setup(model: Any, total: int) -> training.Setup:
        student = shrink(model, num_layers=d.num_layers, keep_layers=d.keep_layers)
        distiller = Distiller(teacher_model(ctx, "finetune"), student,
                              temperature=d.temperature, alpha=d.alpha)
        return training.Setup(distiller, keras.optimizers.AdamW(d.learning_rate),
                              result={"student_layers": student.backbone.num_layers})

    return training.train(ctx, epochs=d.epochs, steps_per_epoch=d.steps_per_epoch,
                          setup=setup, finish=lambda m: (unwrap(m), {}))
