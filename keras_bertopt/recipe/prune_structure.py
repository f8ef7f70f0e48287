"""Stage ``prune_structure``: remove heads, feed-forward neurons and layers, then recover in `fit`.

Scores the input model (`keras_bertopt.pruning.importance_scores`, on
`score_batches` training batches for ``taylor``), builds the smaller model with
`keras_bertopt.pruning.prune_structure`, then trains it for the stage's steps
(AdamW at `learning_rate`). Writes ``prune_structure/model.keras``; the result
in ``state.json`` holds the kept sizes and the scores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keras_bertopt.recipe import training

if TYPE_CHECKING:
    from keras_bertopt.recipe.runner import Recipe


def run(recipe: Recipe) -> dict[str, Any]:
    """Prune the input model's structure and recover; writes ``prune_structure/model.keras``."""
    import keras

    from keras_bertopt import pruning

    ps = recipe.config.prune_structure

    def setup(model: Any, total: int) -> training.Setup:
        data = recipe.data.train_dataset().take(ps.score_batches) if ps.importance == "taylor" \
            else None
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

    return training.train(recipe, "prune_structure", seed_offset=3, epochs=ps.epochs,
                          steps_per_epoch=ps.steps_per_epoch, setup=setup)
