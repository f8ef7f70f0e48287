"""Stage ``qat``: quantization-aware training (`quantize_aware`), keeping the pruned zeros."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keras_bertopt.recipe import distill, training
from keras_bertopt.recipe.config import PruneConfig

if TYPE_CHECKING:
    from keras_bertopt.recipe.runner import Recipe


def keep_sparsity(model: Any, pr: PruneConfig) -> Any:
    """A `MagnitudePruning` holding `model`'s current zeros fixed (its masks are computed once
    from the pruned weights, whose zeros are the smallest magnitudes; the schedule never fires
    again), as in tfmot's pruning-preserving QAT."""
    from keras_bertopt import pruning

    target = 1.0 - pr.n / pr.m if pr.pattern == "n:m" else pr.target_sparsity
    keep = pruning.MagnitudePruning(
        schedule=pruning.ConstantSparsity(target, begin_step=0, frequency=10**9),
        include=pr.include, exclude=pr.exclude, pattern=pr.pattern,
        block_shape=tuple(pr.block_shape or (1, 4)), n_m=(pr.n, pr.m), scope=pr.scope,
    )
    keep.set_model(model)
    keep.update_masks(target)
    return keep


def run(recipe: Recipe) -> dict[str, Any]:
    """Train the input model with fake-quant; writes ``qat/model.keras``."""
    import keras

    from keras_bertopt import pruning, quantization

    q, pr = recipe.config.qat, recipe.config.prune
    preserve = q.preserve_sparsity and "prune" in recipe.state["completed"]

    def setup(model: Any, total: int) -> training.Setup:
        qmodel = quantization.quantize_aware(
            model, quantization.QuantizationConfig(quantize_embeddings=q.quantize_embeddings,
                                                   activations=q.activations)
        )
        trained = distill.wrap(recipe, qmodel, q.distill)
        extra = [keep_sparsity(trained, pr)] if preserve else []
        return training.Setup(trained, keras.optimizers.AdamW(q.learning_rate, weight_decay=0.0),
                              extra)

    def finish(trained: Any) -> tuple[Any, dict[str, Any]]:
        if preserve:
            pruning.strip_pruning(trained)
        qmodel = distill.unwrap(trained)
        if not preserve:
            return qmodel, {}
        kept = pruning.sparsity_report(qmodel, pr.include, pr.exclude)
        return qmodel, {"sparsity": {"pruned_variables": kept.sparsity,
                                     "overall": pruning.sparsity_report(qmodel).sparsity}}

    return training.train(recipe, "qat", seed_offset=2, epochs=q.epochs,
                          steps_per_epoch=q.steps_per_epoch, setup=setup, finish=finish)
