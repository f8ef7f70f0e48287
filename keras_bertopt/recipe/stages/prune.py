"""Stage ``prune``: gradual magnitude pruning (`MagnitudePruning`) in `fit`, then strip masks.

`target_sparsity` and `mask_keeper` are the one place that turns the section into a
sparsity and a pruning callback; the QAT stage keeps the pruned zeros with `mask_keeper`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from keras_bertopt.recipe import training
from keras_bertopt.recipe.sections import (
    PatternList,
    StageSection,
    TeacherConfig,
    check_patterns,
    check_teacher,
    rule,
)
from keras_bertopt.recipe.stages import distill
from keras_bertopt.selection import TRANSFORMER_KERNELS

if TYPE_CHECKING:
    from keras_bertopt.recipe.context import StageContext


class PruneConfig(StageSection):
    """Gradual magnitude pruning (`keras_bertopt.pruning.MagnitudePruning`) in `fit`.

    Sparsity rises from `initial_sparsity` to `target_sparsity` between
    `begin_step` and `end_step` (None: 70% of the stage's steps) following the
    polynomial schedule of Zhu & Gupta (`power`), updating every `frequency` steps.
    `pattern`: ``unstructured``, ``block`` (with `block_shape`) or ``n:m`` (with
    `n`, `m`; the sparsity is then 1 - n/m). `scope`: ``per_variable`` (each
    kernel reaches the target) or ``global`` (one threshold across kernels).
    """

    target_sparsity: float = Field(0.5, gt=0, lt=1)
    initial_sparsity: float = Field(0.0, ge=0, lt=1)
    pattern: Literal["unstructured", "block", "n:m"] = "unstructured"
    block_shape: list[int] | None = None
    n: int = Field(2, ge=1)
    m: int = Field(4, ge=2)
    scope: Literal["per_variable", "global"] = "per_variable"
    include: PatternList = TRANSFORMER_KERNELS
    exclude: PatternList = None
    epochs: int = Field(1, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1)
    begin_step: int = Field(0, ge=0)
    end_step: int | None = None
    frequency: int = Field(10, ge=1)
    power: int = Field(3, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    distill: TeacherConfig = Field(default_factory=TeacherConfig)

    @model_validator(mode="after")
    def _consistent(self) -> PruneConfig:
        rule(self.initial_sparsity <= self.target_sparsity, "initial_sparsity",
             f"<= prune.target_sparsity ({self.target_sparsity})", self.initial_sparsity)
        b, e, f = self.begin_step, self.end_step, self.frequency
        rule(e is None or e > b, "end_step", f"null or an integer > prune.begin_step ({b})", e)
        rule(e is None or (e - b) % f == 0, "end_step", f"prune.begin_step ({b}) plus a "
             f"multiple of prune.frequency ({f}), so the last mask update reaches the target", e)
        if self.pattern == "block":
            bs = self.block_shape
            rule(bs is not None and len(bs) == 2 and all(x >= 1 for x in bs), "block_shape",
                 "two integers >= 1 such as [1, 4] when prune.pattern is 'block'", bs)
        else:
            rule(self.block_shape is None, "block_shape",
                 "null unless prune.pattern is 'block'", self.block_shape)
        if self.pattern == "n:m":
            rule(self.n < self.m, "n", f"an integer in [1, prune.m ({self.m}))", self.n)
            rule(self.scope == "per_variable", "scope",
                 "'per_variable' when prune.pattern is 'n:m'", self.scope)
        check_patterns("include", self.include)
        check_patterns("exclude", self.exclude)
        return self


SECTION = PruneConfig


def check(config: Any) -> None:
    """A teacher named in `prune.distill` must run."""
    check_teacher(config, "prune")


def target_sparsity(config: PruneConfig) -> float:
    """The sparsity the stage ends at: `target_sparsity`, or 1 - n/m for ``n:m``."""
    return 1.0 - config.n / config.m if config.pattern == "n:m" else config.target_sparsity


def pattern_kwargs(config: PruneConfig) -> dict[str, Any]:
    """`MagnitudePruning` keywords for the config's variables, pattern and scope."""
    kwargs: dict[str, Any] = {"include": config.include, "exclude": config.exclude,
                              "pattern": config.pattern, "scope": config.scope}
    if config.pattern == "block":
        kwargs["block_shape"] = tuple(config.block_shape or ())
    elif config.pattern == "n:m":
        kwargs["n_m"] = (config.n, config.m)
    return kwargs


def end_step(config: PruneConfig, total: int) -> int:
    """`prune.end_step`, or 70% of the stage's `total` steps on a multiple of `frequency`.

    Raises:
        ValueError: the end step is past the stage's last step.
    """
    pr = config
    if pr.end_step is None:
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


def mask_keeper(config: PruneConfig, model: Any) -> Any:
    """A `MagnitudePruning` holding `model`'s current zeros fixed (its masks are computed once
    from the pruned weights, whose zeros are the smallest magnitudes; the schedule never fires
    again), as in tfmot's pruning-preserving QAT."""
    from keras_bertopt import pruning

    target = target_sparsity(config)
    keep = pruning.MagnitudePruning(
        schedule=pruning.ConstantSparsity(target, begin_step=0, frequency=10**9),
        **pattern_kwargs(config),
    )
    keep.set_model(model)
    keep.update_masks(target)
    return keep


def sparsity(model: Any, config: PruneConfig) -> dict[str, Any]:
    """Sparsity of the pruned variables and of all weights (`sparsity_report`)."""
    from keras_bertopt import pruning

    pruned = pruning.sparsity_report(model, config.include, config.exclude)
    everything = pruning.sparsity_report(model)
    return {
        "pruned_variables": pruned.sparsity, "overall": everything.sparsity,
        "pruned_size": pruned.size, "pruned_zeros": pruned.zeros,
        "size": everything.size, "nonzero": everything.nonzero,
        "per_variable": {v.path: v.sparsity for v in pruned.variables},
    }


def run(ctx: StageContext) -> dict[str, Any]:
    """Prune the input model to `prune.target_sparsity`; writes ``prune/model.keras``."""
    import keras

    from keras_bertopt import callbacks, pruning

    pr: PruneConfig = ctx.section

    def setup(model: Any, total: int) -> training.Setup:
        end = end_step(pr, total)
        schedule = pruning.PolynomialSparsity(
            initial_sparsity=pr.initial_sparsity, final_sparsity=target_sparsity(pr),
            begin_step=pr.begin_step, end_step=end, power=pr.power, frequency=pr.frequency,
        )
        callback = pruning.MagnitudePruning(schedule=schedule, **pattern_kwargs(pr))
        logger = callbacks.SparsityLogger(include=pr.include, exclude=pr.exclude)
        return training.Setup(distill.wrap(ctx, model, pr.distill),
                              keras.optimizers.AdamW(pr.learning_rate, weight_decay=0.0),
                              [callback, logger], result={"end_step": end})

    def finish(model: Any) -> tuple[Any, dict[str, Any]]:
        plain = distill.unwrap(pruning.strip_pruning(model))
        return plain, {"sparsity": sparsity(plain, pr)}

    return training.train(ctx, epochs=pr.epochs, steps_per_epoch=pr.steps_per_epoch,
                          setup=setup, finish=finish)
