"""Stage ``finetune``: `create_optimizer` (warm-up + decay, AdamW/LAMB), optional L1/L2, `fit`."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from keras_bertopt.recipe import training
from keras_bertopt.recipe.sections import (
    OptimizerConfig,
    RegularizationConfig,
    ScheduleConfig,
    StageSection,
    rule,
)

if TYPE_CHECKING:
    from keras_bertopt.recipe.context import StageContext


class FinetuneConfig(StageSection):
    """Fine-tuning: `epochs` x `steps_per_epoch` (None: one pass over the data).

    `jit_compile`: compile the train step with XLA (``fit(jit_compile=True)``).
    Off by default: on the 2-core CPU it was not faster for keras-hub BERT
    (docs/guides/throughput.md).
    """

    epochs: int = Field(2, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    regularization: RegularizationConfig | None = None
    jit_compile: bool = False

    @model_validator(mode="after")
    def _warmup_fits(self) -> FinetuneConfig:
        if self.enabled and self.steps_per_epoch is not None:
            # With the data size unknown here, this is checked again when the stage starts.
            s = self.schedule
            total = self.epochs * self.steps_per_epoch
            warmup = (s.warmup_steps if s.warmup_steps is not None
                      else math.ceil(s.warmup_ratio * total))
            rule(warmup < total, "schedule", f"a warm-up shorter than the stage's {total} "
                 "steps (finetune.epochs x finetune.steps_per_epoch)",
                 {"warmup_steps": s.warmup_steps, "warmup_ratio": s.warmup_ratio})
        return self


SECTION = FinetuneConfig


def build_optimizer(config: FinetuneConfig, total_steps: int, model: Any = None) -> Any:
    """The stage's optimizer: `keras_bertopt.optimizers.create_optimizer` with the config's
    settings, so the warm-up length is rounded there (``ceil(warmup_ratio * total_steps)``)."""
    from keras_bertopt import optimizers

    o, s = config.optimizer, config.schedule
    warmup = (
        {"warmup_steps": s.warmup_steps} if s.warmup_steps is not None
        else {"warmup_ratio": s.warmup_ratio}
    )
    return optimizers.create_optimizer(
        peak_learning_rate=o.peak_learning_rate,
        total_steps=total_steps,
        **warmup,
        kind=o.kind,
        weight_decay=o.weight_decay,
        clipnorm=o.clipnorm,
        layerwise_lr_decay=o.layerwise_lr_decay,
        schedule=s.kind,
        end_learning_rate=s.end_learning_rate,
        model=model,
    )


def _regularize(config: FinetuneConfig, model: Any) -> list[str]:
    if config.regularization is None:
        return []
    import keras

    from keras_bertopt import regularizers

    r = config.regularization
    kwargs = {key: value for key, value in (("include", r.include), ("exclude", r.exclude))
              if value is not None}
    return regularizers.apply_regularization(
        model, keras.regularizers.L1L2(l1=r.l1, l2=r.l2), **kwargs
    )


def run(ctx: StageContext) -> dict[str, Any]:
    """Fine-tune the input model; writes ``finetune/model.keras``."""
    ft: FinetuneConfig = ctx.section

    def setup(model: Any, total: int) -> training.Setup:
        regularized = _regularize(ft, model)
        return training.Setup(model, build_optimizer(ft, total, model),
                              result={"regularized_variables": len(regularized)})

    return training.train(ctx, epochs=ft.epochs, steps_per_epoch=ft.steps_per_epoch,
                          setup=setup, jit_compile=ft.jit_compile)
