"""Stage ``prune_structure``: remove heads, feed-forward neurons and layers, then recover in `fit`.

Scores the input model (`keras_bertopt.pruning.importance_scores`, on
`score_batches` training batches for ``taylor``), builds the smaller model with
`keras_bertopt.pruning.prune_structure`, then trains it for the stage's steps
(AdamW at `learning_rate`). Writes ``prune_structure/model.keras``; the result
in ``state.json`` holds the kept sizes and the scores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from keras_bertopt.recipe import training
from keras_bertopt.recipe.sections import StageSection, rule

if TYPE_CHECKING:
    from keras_bertopt.recipe.context import StageContext


class PruneStructureConfig(StageSection):
    """Structured pruning (`keras_bertopt.pruning.prune_structure`), then recovery in `fit`.

    Off by default. `heads` / `intermediate`: fraction in [0, 1) of each layer's
    attention heads / feed-forward neurons to remove; `layers`: how many whole
    transformer layers to remove. The lowest-scoring go, by `importance`
    (``magnitude`` or ``taylor`` on `score_batches` training batches). Then
    `epochs` x `steps_per_epoch` recovery steps with AdamW at `learning_rate`.
    """

    enabled: bool = False
    heads: float = Field(0.0, ge=0, lt=1)
    intermediate: float = Field(0.0, ge=0, lt=1)
    layers: int = Field(0, ge=0)
    importance: Literal["magnitude", "taylor"] = "taylor"
    score_batches: int = Field(4, ge=1)
    epochs: int = Field(1, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1)
    learning_rate: float = Field(1e-4, gt=0)

    @model_validator(mode="after")
    def _something_to_remove(self) -> PruneStructureConfig:
        rule(not self.enabled or self.heads > 0 or self.intermediate > 0 or self.layers > 0, "",
             "something to remove (heads, intermediate or layers) when enabled", "nothing")
        return self


SECTION = PruneStructureConfig


def check(config: Any) -> None:
    """Fewer layers removed than the model has (when that is known)."""
    ps = config.prune_structure
    layers = config.model.tiny.num_layers if config.model.source == "tiny" else None
    rule(not ps.enabled or layers is None or ps.layers < layers, "prune_structure.layers",
         "an integer >= 0 and below the model's layer count", ps.layers)


def run(ctx: StageContext) -> dict[str, Any]:
    """Prune the input model's structure and recover; writes ``prune_structure/model.keras``."""
    import keras

    from keras_bertopt import pruning

    ps: PruneStructureConfig = ctx.section

    def setup(model: Any, total: int) -> training.Setup:
        data = (ctx.data.train_dataset().take(ps.score_batches)
                if ps.importance == "taylor" else None)
        scores = pruning.importance_scores(model, ps.importance, data=data,
                                           batches=ps.score_batches)
        small = pruning.prune_structure(model, heads=ps.heads, intermediate=ps.intermediate,
                                        layers=ps.layers, importance=scores)
        backbone = small.backbone
        result = {
            "num_layers": len(backbone.transformer_layers),
            "num_heads": list(backbone.num_heads),
            "intermediate_dim": list(backbone.intermediate_dim),
            "params_before": int(model.count_params()),
            "params_after": int(small.count_params()),
            "importance": scores.to_dict(),
        }
        return training.Setup(small, keras.optimizers.AdamW(ps.learning_rate, weight_decay=0.0),
                              [], result=result)

    return training.train(ctx, epochs=ps.epochs, steps_per_epoch=ps.steps_per_epoch,
                          setup=setup)
