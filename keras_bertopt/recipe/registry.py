"""The stage registry: every stage of the recipe, in the order they run.

A stage is one module in `keras_bertopt.recipe.stages` with its config section (`SECTION`, a
`StageSection`), ``run(ctx: StageContext) -> dict`` (its result, kept in
``state.json``) and optionally ``check(config)`` (rules across sections). Adding a
stage is that module plus one `Stage` line in `STAGES`; the config
(`keras_bertopt.recipe.config.RecipeConfig`) gets its section from here.

```python
from keras_bertopt.recipe.registry import STAGES, seed_of
[s.name for s in STAGES]   # ['finetune', 'distill', 'prune_structure', 'prune', 'qat', ...]
seed_of("prune")           # 1: the prune stage's randomness is config.seed + 1
```
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any

from keras_bertopt.recipe.stages import (
    distill,
    evaluate,
    export,
    finetune,
    prune,
    prune_structure,
    qat,
    target,
)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of the recipe.

    Attributes:
        name: the stage and its config section (``config.<name>``).
        module: where its `SECTION`, ``run(ctx)`` and optional ``check(config)`` are.
        seed: its fixed offset from `config.seed` (distinct per stage, never reused, so
            adding a stage changes no other stage's randomness).
        trains_model: writes ``<name>/model.keras``, which the next training stage
            starts from.
        float_model: that model is a float model (not fake-quantized), so the export
            stage may export it with any mode.
    """

    name: str
    module: ModuleType
    seed: int
    trains_model: bool = False
    float_model: bool = True

    @property
    def section(self) -> type:
        """The config section class (``config.<name>``)."""
        return self.module.SECTION

    def run(self, ctx: Any) -> dict[str, Any]:
        """Run the stage (looked up on its module at call time)."""
        return self.module.run(ctx)

    def check(self, config: Any) -> None:
        """The stage's rules across config sections, if it has any."""
        check = getattr(self.module, "check", None)
        if check is not None:
            check(config)


STAGES: tuple[Stage, ...] = (
    Stage("finetune", finetune, seed=0, trains_model=True),
    Stage("distill", distill, seed=3, trains_model=True),
    Stage("prune_structure", prune_structure, seed=4, trains_model=True),
    Stage("prune", prune, seed=1, trains_model=True),
    Stage("qat", qat, seed=2, trains_model=True, float_model=False),
    Stage("target", target, seed=7),
    Stage("export", export, seed=5),
    Stage("evaluate", evaluate, seed=6),
)

BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
MODEL_STAGES: tuple[str, ...] = tuple(s.name for s in STAGES if s.trains_model)


def seed_of(name: str) -> int:
    """The stage's seed offset (its randomness is seeded with ``config.seed + seed_of(name)``)."""
    return BY_NAME[name].seed
