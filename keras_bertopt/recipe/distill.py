"""Stage ``distill`` (a shallower student trained against the fine-tuned model) and the
``distill: {teacher: finetune}`` option of the prune and QAT stages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keras_bertopt.recipe import training
from keras_bertopt.recipe.config import TeacherConfig

if TYPE_CHECKING:
    from keras_bertopt.recipe.runner import Recipe


def teacher_model(recipe: Recipe, stage: str) -> Any:
    """The model of the teacher `stage` (loaded from its file: never the one being trained)."""
    if stage not in recipe.state["completed"]:
        raise ValueError(
            f"the teacher stage {stage!r} has not run: enable it (config key '{stage}.enabled')"
        )
    recipe._models.pop(stage, None)  # a fresh copy, frozen by the Distiller
    return recipe.load_model(stage)


def wrap(recipe: Recipe, student: Any, config: TeacherConfig) -> Any:
    """`student` itself without a teacher, else a `Distiller` training it (same `fit`)."""
    if config.teacher is None:
        return student
    from keras_bertopt.distillation import Distiller

    return Distiller(teacher_model(recipe, config.teacher), student,
                     temperature=config.temperature, alpha=config.alpha)


def unwrap(model: Any) -> Any:
    """The trained student of a `Distiller`, or `model`."""
    from keras_bertopt.distillation import Distiller

    return model.student if isinstance(model, Distiller) else model


def run(recipe: Recipe) -> dict[str, Any]:
    """Shrink the fine-tuned model and distil it; writes ``distill/model.keras``."""
    import keras

    from keras_bertopt.distillation import Distiller, shrink

    d = recipe.config.distill

    def setup(model: Any, total: int) -> training.Setup:
        student = shrink(model, num_layers=d.num_layers, keep_layers=d.keep_layers)
        distiller = Distiller(teacher_model(recipe, "finetune"), student,
                              temperature=d.temperature, alpha=d.alpha)
        layers = student.backbone.num_layers
        return training.Setup(distiller, keras.optimizers.AdamW(d.learning_rate),
                              result={"student_layers": layers})

    return training.train(recipe, "distill", seed_offset=3, epochs=d.epochs,
                          steps_per_epoch=d.steps_per_epoch, setup=setup,
                          finish=lambda m: (unwrap(m), {}))
