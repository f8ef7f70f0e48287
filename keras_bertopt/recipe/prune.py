"""Stage ``prune``: gradual magnitude pruning (`MagnitudePruning`) in `fit`, then strip masks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keras_bertopt.recipe import training
from keras_bertopt.recipe.config import PruneConfig

if TYPE_CHECKING:
    from keras_bertopt.recipe.runner import Recipe


def end_step(config: PruneConfig, total: int) -> int:
    """`prune.end_step`, or 70% of the stage's `total` steps on a multiple of `frequency`.

    Raises:
        ValueError: the end step is past the stage's last step.
    """
    pr = config
    if pr.end_step is None:
        # 70% of the stage, on a multiple of `frequency` so the last update hits the target.
        updates = max(1, int((0.7 * total - pr.begin_step) // pr.frequency))
        end = pr.begin_step + updates * pr.frequency
    else:
        end = pr.end_step
    if end > total:
        raise ValueError(
            f"config key 'prune.end_step' ({end}, from begin_step {pr.begin_step} and "
            f"frequency {pr.frequency}) must be <= the stage's {total} training steps "
            "(prune.epochs x prune.steps_per_epoch) so the target sparsity is reached"
        )
    return end


def pattern_kwargs(config: PruneConfig) -> dict[str, Any]:
    """`MagnitudePruning` keywords for the config's pattern and scope."""
    kwargs: dict[str, Any] = {"pattern": config.pattern, "scope": config.scope}
    if config.pattern == "block":
        kwargs["block_shape"] = tuple(config.block_shape or ())
    elif config.pattern == "n:m":
        kwargs["n_m"] = (config.n, config.m)
    return kwargs


def _sparsity(model: Any, pr: PruneConfig) -> dict[str, Any]:
    from keras_bertopt import pruning

    pruned = pruning.sparsity_report(model, pr.include, pr.exclude)
    everything = pruning.sparsity_report(model)
    return {
        "pruned_variables": pruned.sparsity, "overall": everything.sparsity,
        "pruned_size": pruned.size, "pruned_zeros": pruned.zeros,
        "size": everything.size, "nonzero": everything.nonzero,
        "per_variable": {v.path: v.sparsity for v in pruned.variables},
    }


def run(recipe: Recipe) -> dict[str, Any]:
    """Prune the input model to `prune.target_sparsity`; writes ``prune/model.keras``."""
    import keras

    from keras_bertopt import callbacks, pruning

    pr = recipe.config.prune

    def setup(model: Any, total: int) -> training.Setup:
        end = end_step(pr, total)
        schedule = pruning.PolynomialSparsity(
            initial_sparsity=pr.initial_sparsity, final_sparsity=pr.target_sparsity,
            begin_step=pr.begin_step, end_step=end, power=pr.power, frequency=pr.frequency,
        )
        callback = pruning.MagnitudePruning(
            schedule=schedule, include=pr.include, exclude=pr.exclude, **pattern_kwargs(pr)
        )
        logger = callbacks.SparsityLogger(include=pr.include, exclude=pr.exclude)
        return training.Setup(model, keras.optimizers.AdamW(pr.learning_rate, weight_decay=0.0),
                              [callback, logger], result={"end_step": end})

    def finish(model: Any) -> tuple[Any, dict[str, Any]]:
        plain = pruning.strip_pruning(model)
        return plain, {"sparsity": _sparsity(plain, pr)}

    return training.train(recipe, "prune", seed_offset=1, epochs=pr.epochs,
                          steps_per_epoch=pr.steps_per_epoch, setup=setup, finish=finish)
