"""The recipe's config: `RecipeConfig`, built from the stage registry.

Its fields are the run settings (`output_dir`, `seed`, `strategy`), the shared
sections `model` and `data`, then one section per registered stage
(`keras_bertopt.recipe.registry.STAGES`), in the order the stages run. Every
field has a default, so `RecipeConfig()` is the offline demo's shape. Creating a
`RecipeConfig` checks everything: types, ranges, rules across sections (each
stage's ``check``), data files (every row read) and the model source.

```python
from keras_bertopt.recipe import RecipeConfig, load_config

config = load_config("examples/demo.yaml", {"prune.target_sparsity": 0.8})
config.prune.target_sparsity   # 0.8
RecipeConfig.model_validate({"prune": {"sparsity": 0.8}})  # ValidationError naming it
```
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, create_model, model_validator

from keras_bertopt.recipe.registry import STAGES, Stage
from keras_bertopt.recipe.sections import (
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    ScheduleConfig,
    Section,
    TeacherConfig,
    resolve_model_source,
)
from keras_bertopt.recipe.stages.distill import DistillConfig
from keras_bertopt.recipe.stages.evaluate import EvaluateConfig
from keras_bertopt.recipe.stages.export import ExportConfig
from keras_bertopt.recipe.stages.finetune import FinetuneConfig
from keras_bertopt.recipe.stages.prune import PruneConfig
from keras_bertopt.recipe.stages.qat import QATConfig

__all__ = ["RecipeConfig", "demo_config", "resolve_model_source"]


def _check_rows(config: Any) -> None:
    """Read every row of each data file now, so a bad row fails `--check` and `run` before
    any model is built (the error names the file and line)."""
    from keras_bertopt.data import read_file

    d = config.data
    for key in ("train", "validation", "test") if d.source == "files" else ():
        path = getattr(d, key)
        if path is None:
            continue
        try:
            read_file(path, d.text_column, d.label_column, num_classes=config.model.num_classes)
        except ValueError as err:
            raise ValueError(f"config key 'data.{key}': {err}") from None


class _RecipeBase(Section):
    """What every `RecipeConfig` has besides the stages' sections."""

    _stages: ClassVar[tuple[Stage, ...]] = ()

    output_dir: str | None = None
    seed: int = 0
    strategy: Literal["auto", "cpu", "mirrored", "multi_worker", "tpu"] = "auto"
    checkpoint_every: int | None = Field(100, ge=1)
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)

    @model_validator(mode="after")
    def _across_sections(self) -> _RecipeBase:
        for stage in self._stages:
            stage.check(self)
        trains = [s.name for s in self._stages if s.trains_model]
        if self.model.source == "tiny" and not any(getattr(self, s).enabled for s in trains):
            keys = ", ".join(f"'{s}.enabled'" for s in trains)
            raise ValueError(f"config keys {keys}: all false would export an untrained tiny "
                             "model; enable at least one training stage")
        _check_rows(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-able dict (what ``config.json`` holds)."""
        return self.model_dump(mode="json")


def config_class(stages: tuple[Stage, ...], name: str = "RecipeConfig") -> type[_RecipeBase]:
    """The config model of a stage registry: the run settings, `model`, `data`, then one
    field per stage (its `SECTION`, defaults as default), checked with each stage's rules."""
    cls = create_model(
        name,
        __base__=_RecipeBase,
        __module__=__name__,
        __doc__="""The whole job: run settings, `model`, `data` and one section per stage.

        `strategy`: a `keras_bertopt.distribute.get_strategy` kind (``auto``, ``cpu``,
        ``mirrored``, ``multi_worker``, ``tpu``).

        `checkpoint_every`: training steps between in-stage checkpoints
        (``<stage>/checkpoint.npz``, removed when the stage completes); a run
        killed mid-stage resumes from the last one. None: off.
        """,
        **{s.name: (s.section, Field(default_factory=s.section)) for s in stages},
    )
    cls._stages = tuple(stages)
    return cls


#: The recipe's config: one section per stage of `registry.STAGES`.
RecipeConfig = config_class(STAGES)


def demo_config(output_dir: str | None = None) -> Any:
    """The offline demo: tiny BERT on the built-in data, every stage, < 3 minutes on 2 cores.

    The same config is in ``examples/demo.yaml``.
    """
    teacher = TeacherConfig(teacher="finetune")
    return RecipeConfig(
        output_dir=output_dir,
        seed=0,
        checkpoint_every=16,
        model=ModelConfig(source="tiny", sequence_length=32),
        data=DataConfig(source="demo", batch_size=32),
        finetune=FinetuneConfig(
            epochs=2, steps_per_epoch=64,
            optimizer=OptimizerConfig(kind="adamw", peak_learning_rate=3e-3, weight_decay=0.01),
            schedule=ScheduleConfig(kind="linear", warmup_ratio=0.1),
        ),
        distill=DistillConfig(enabled=False, num_layers=1),
        prune=PruneConfig(target_sparsity=0.5, epochs=1, steps_per_epoch=64, frequency=8,
                          learning_rate=2e-4, distill=teacher),
        qat=QATConfig(epochs=1, steps_per_epoch=48, learning_rate=1e-4, distill=teacher),
        export=ExportConfig(quantization=["none", "dynamic", "int8"], qat_quantization=["int8"]),
        evaluate=EvaluateConfig(splits=["validation", "test"]),
    )
