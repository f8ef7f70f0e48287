"""The stage registry: every stage of the recipe, in the order they run.

A stage is a function ``run(recipe) -> dict`` (its result, kept in
``state.json``) in its own module; the config section of the same name holds its
settings (with an ``enabled`` field). To add a stage: write its module (a
training stage calls `training.train`), add a `Stage` to `STAGES` below, its
config section to `config.RecipeConfig` and its checks to `validate.SECTIONS`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable

from keras_bertopt.recipe import (
    distill,
    evaluate,
    export,
    finetune,
    prune,
    prune_structure,
    qat,
)

if TYPE_CHECKING:
    from keras_bertopt.recipe.runner import Recipe


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of the recipe.

    Attributes:
        name: the stage and its config section (``config.<name>``).
        run: ``run(recipe) -> result``.
        trains_model: writes ``<name>/model.keras``, which the next training
            stage starts from.
        float_model: that model is a float model (not fake-quantized), so the
            export stage may export it with any mode.
    """

    name: str
    run: Callable[[Recipe], dict[str, Any]]
    trains_model: bool = False
    float_model: bool = True


STAGES: tuple[Stage, ...] = (
    Stage("finetune", finetune.run, trains_model=True),
    Stage("distill", distill.run, trains_model=True),
    Stage("prune_structure", prune_structure.run, trains_model=True),
    Stage("prune", prune.run, trains_model=True),
    Stage("qat", qat.run, trains_model=True, float_model=False),
    Stage("export", export.run),
    Stage("evaluate", evaluate.run),
)

BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
MODEL_STAGES: tuple[str, ...] = tuple(s.name for s in STAGES if s.trains_model)
