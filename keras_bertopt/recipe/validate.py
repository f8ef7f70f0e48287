"""Range and cross-field checks of a typed `RecipeConfig`, one function per section.

The loader has already checked types; these check values. Every error is a
`ValueError` (or `FileNotFoundError` for a missing file) naming the key path.
A new config section adds one ``_check_<section>`` function to `SECTIONS`.
"""

from __future__ import annotations

import importlib.util
import math
import os
from typing import Any, Callable

from keras_bertopt.recipe.config import PatternList, RecipeConfig, resolve_model_source


def require(cond: bool, key: str, expected: str, value: Any) -> None:
    """Raise ``ValueError("config key 'KEY': expected EXPECTED, got VALUE")`` unless `cond`."""
    if not cond:
        raise ValueError(f"config key {key!r}: expected {expected}, got {value!r}")


def check_steps(key: str, value: int | None) -> None:
    """`value` is None or a step count >= 1."""
    require(value is None or value >= 1, key, "null or an integer >= 1", value)


def check_patterns(key: str, pattern: PatternList) -> None:
    """`pattern` compiles as `keras_bertopt.selection` variable-path regexes."""
    from keras_bertopt.selection import compile_patterns

    try:
        compile_patterns(pattern, key)
    except ValueError as err:
        raise ValueError(f"config key {key!r}: {err}") from None


def _check_model(config: RecipeConfig) -> None:
    m = config.model
    require(m.num_classes >= 2, "model.num_classes", "an integer >= 2", m.num_classes)
    require(m.sequence_length is None or m.sequence_length >= 4, "model.sequence_length",
            "null (measured from the data) or an integer >= 4", m.sequence_length)
    require(0.0 <= m.dropout < 1.0, "model.dropout", "a number in [0, 1)", m.dropout)
    for field in ("num_layers", "num_heads", "hidden_dim", "intermediate_dim"):
        value = getattr(m.tiny, field)
        require(value >= 1, f"model.tiny.{field}", "an integer >= 1", value)
    require(m.tiny.hidden_dim % m.tiny.num_heads == 0, "model.tiny.hidden_dim",
            f"a multiple of model.tiny.num_heads ({m.tiny.num_heads})", m.tiny.hidden_dim)
    if m.source == "tiny":
        return
    require(bool(m.source.strip()), "model.source",
            '"tiny", a keras-hub preset name or a checkpoint directory', m.source)
    from keras_bertopt.models import check_checkpoint_dir, looks_like_path

    if m.source.startswith("package:"):
        module, _, sub = m.source[len("package:"):].partition("/")
        require(bool(module) and all(p.isidentifier() for p in module.split(".")) and bool(sub),
                "model.source", "package:MODULE/SUBDIR with MODULE an importable name", m.source)
        if importlib.util.find_spec(module.split(".")[0]) is None:
            # Valid as written; `Recipe.run` resolves it (and names the pip command) before
            # any stage, so a config can be checked on a machine without the package.
            return
    source = resolve_model_source(m.source)
    if looks_like_path(source):
        try:
            check_checkpoint_dir(source)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"config key 'model.source': {err}") from None


def _check_data(config: RecipeConfig) -> None:
    d, ev = config.data, config.evaluate
    require(d.batch_size == "auto" or d.batch_size >= 1, "data.batch_size",
            "'auto' or an integer >= 1", d.batch_size)
    require(d.batch_size_limit >= 8, "data.batch_size_limit", "an integer >= 8",
            d.batch_size_limit)
    for key in ("train_limit", "eval_limit"):
        value = getattr(d, key)
        require(value is None or value >= 1, f"data.{key}", "null or an integer >= 1", value)
    if d.source == "demo":
        for key in ("name", "train", "validation", "test"):
            require(getattr(d, key) is None, f"data.{key}",
                    "not set when data.source is 'demo'", getattr(d, key))
    elif d.source == "tfds":
        require(bool(d.name), "data.name", "a tfds GLUE task such as 'glue/sst2'", d.name)
        from keras_bertopt.data import glue_task

        try:
            glue_task(d.name)
        except ValueError as err:
            raise ValueError(f"config key 'data.name': {err}") from None
    else:
        require(d.train is not None, "data.train", "a TSV/CSV/JSONL file path", d.train)
        for key in ("train", "validation", "test"):
            path = getattr(d, key)
            if path is None:
                continue
            require(path.endswith((".tsv", ".csv", ".jsonl", ".json")), f"data.{key}",
                    "a .tsv, .csv or .jsonl file", path)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"config key 'data.{key}': file {path!r} does not exist")
            _check_rows(config, key, path)
        for split in ev.splits if ev.enabled else []:
            if getattr(d, split) is None:
                raise ValueError(
                    f"config key 'evaluate.splits' asks for {split!r} but 'data.{split}' is not set"
                )


def _check_rows(config: RecipeConfig, key: str, path: str) -> None:
    """Read every row of a data file now, so a bad row fails `--check` and `run` before any
    model is built (the error names the file and line)."""
    from keras_bertopt.data import read_file

    d = config.data
    try:
        read_file(path, d.text_column, d.label_column, num_classes=config.model.num_classes)
    except ValueError as err:
        raise ValueError(f"config key 'data.{key}': {err}") from None


def _check_finetune(config: RecipeConfig) -> None:
    ft = config.finetune
    require(ft.epochs >= 1, "finetune.epochs", "an integer >= 1", ft.epochs)
    check_steps("finetune.steps_per_epoch", ft.steps_per_epoch)
    o = ft.optimizer
    require(o.peak_learning_rate > 0, "finetune.optimizer.peak_learning_rate",
            "a number > 0", o.peak_learning_rate)
    require(o.weight_decay >= 0, "finetune.optimizer.weight_decay", "a number >= 0",
            o.weight_decay)
    require(o.clipnorm is None or o.clipnorm > 0, "finetune.optimizer.clipnorm",
            "null or a number > 0", o.clipnorm)
    require(o.layerwise_lr_decay is None or 0 < o.layerwise_lr_decay <= 1,
            "finetune.optimizer.layerwise_lr_decay", "null or a number in (0, 1]",
            o.layerwise_lr_decay)
    s = ft.schedule
    require(s.warmup_steps is None or s.warmup_steps >= 0, "finetune.schedule.warmup_steps",
            "null or an integer >= 0", s.warmup_steps)
    require(0 <= s.warmup_ratio < 1, "finetune.schedule.warmup_ratio", "a number in [0, 1)",
            s.warmup_ratio)
    require(s.end_learning_rate >= 0, "finetune.schedule.end_learning_rate", "a number >= 0",
            s.end_learning_rate)
    if ft.enabled and ft.steps_per_epoch is not None:
        # With the data size unknown here, this is checked again when the stage starts.
        total = ft.epochs * ft.steps_per_epoch
        warmup = (s.warmup_steps if s.warmup_steps is not None
                  else math.ceil(s.warmup_ratio * total))
        require(warmup < total, "finetune.schedule", f"a warm-up shorter than the stage's "
                f"{total} steps (finetune.epochs x finetune.steps_per_epoch)",
                {"warmup_steps": s.warmup_steps, "warmup_ratio": s.warmup_ratio})
    if ft.regularization is not None:
        r = ft.regularization
        require(r.l1 >= 0, "finetune.regularization.l1", "a number >= 0", r.l1)
        require(r.l2 >= 0, "finetune.regularization.l2", "a number >= 0", r.l2)
        require(r.l1 > 0 or r.l2 > 0, "finetune.regularization",
                "l1 > 0 or l2 > 0 (or null for no penalty)", {"l1": r.l1, "l2": r.l2})
        check_patterns("finetune.regularization.include", r.include)
        check_patterns("finetune.regularization.exclude", r.exclude)


def _check_prune_structure(config: RecipeConfig) -> None:
    ps = config.prune_structure
    if not ps.enabled:
        return
    for key in ("heads", "intermediate"):
        value = getattr(ps, key)
        require(0 <= value < 1, f"prune_structure.{key}", "a number in [0, 1)", value)
    layers = config.model.tiny.num_layers if config.model.source == "tiny" else None
    require(ps.layers >= 0 and (layers is None or ps.layers < layers), "prune_structure.layers",
            "an integer >= 0 and below the model's layer count", ps.layers)
    require(ps.heads > 0 or ps.intermediate > 0 or ps.layers > 0, "prune_structure",
            "something to remove (heads, intermediate or layers) when enabled", "nothing")
    require(ps.score_batches >= 1, "prune_structure.score_batches", "an integer >= 1",
            ps.score_batches)
    require(ps.epochs >= 1, "prune_structure.epochs", "an integer >= 1", ps.epochs)
    check_steps("prune_structure.steps_per_epoch", ps.steps_per_epoch)
    require(ps.learning_rate > 0, "prune_structure.learning_rate", "a number > 0",
            ps.learning_rate)


def _check_prune(config: RecipeConfig) -> None:
    pr = config.prune
    if not pr.enabled:
        return
    require(0 <= pr.initial_sparsity < 1, "prune.initial_sparsity", "a number in [0, 1)",
            pr.initial_sparsity)
    require(0 < pr.target_sparsity < 1, "prune.target_sparsity", "a number in (0, 1)",
            pr.target_sparsity)
    require(pr.initial_sparsity <= pr.target_sparsity, "prune.initial_sparsity",
            f"<= prune.target_sparsity ({pr.target_sparsity})", pr.initial_sparsity)
    require(pr.epochs >= 1, "prune.epochs", "an integer >= 1", pr.epochs)
    check_steps("prune.steps_per_epoch", pr.steps_per_epoch)
    require(pr.begin_step >= 0, "prune.begin_step", "an integer >= 0", pr.begin_step)
    require(pr.end_step is None or pr.end_step > pr.begin_step, "prune.end_step",
            f"null or an integer > prune.begin_step ({pr.begin_step})", pr.end_step)
    require(pr.frequency >= 1, "prune.frequency", "an integer >= 1", pr.frequency)
    require(pr.end_step is None or (pr.end_step - pr.begin_step) % pr.frequency == 0,
            "prune.end_step", f"prune.begin_step ({pr.begin_step}) plus a multiple of "
            f"prune.frequency ({pr.frequency}), so the last mask update reaches the target",
            pr.end_step)
    require(pr.power >= 1, "prune.power", "an integer >= 1", pr.power)
    require(pr.learning_rate > 0, "prune.learning_rate", "a number > 0", pr.learning_rate)
    if pr.pattern == "block":
        bs = pr.block_shape
        require(bs is not None and len(bs) == 2 and all(b >= 1 for b in bs),
                "prune.block_shape", "two integers >= 1 such as [1, 4] when "
                "prune.pattern is 'block'", bs)
    else:
        require(pr.block_shape is None, "prune.block_shape",
                "null unless prune.pattern is 'block'", pr.block_shape)
    if pr.pattern == "n:m":
        require(1 <= pr.n < pr.m, "prune.n", f"an integer in [1, prune.m ({pr.m}))", pr.n)
        require(pr.scope == "per_variable", "prune.scope",
                "'per_variable' when prune.pattern is 'n:m'", pr.scope)
    check_patterns("prune.include", pr.include)
    check_patterns("prune.exclude", pr.exclude)
    _check_teacher(config, "prune")


def _check_teacher(config: RecipeConfig, section: str) -> None:
    """`<section>.distill`: a teacher stage that runs, and valid KD settings."""
    t = getattr(config, section).distill
    if t.teacher is None:
        return
    key = f"{section}.distill"
    require(getattr(config, t.teacher).enabled, f"{key}.teacher",
            f"a stage that runs ('{t.teacher}.enabled' is false)", t.teacher)
    _check_kd(key, t.temperature, t.alpha)


def _check_kd(key: str, temperature: float, alpha: float) -> None:
    require(temperature > 0, f"{key}.temperature", "a number > 0", temperature)
    require(0 <= alpha <= 1, f"{key}.alpha",
            "a number in [0, 1] (the weight of the teacher's soft targets)", alpha)


def _teacher_layers(config: RecipeConfig) -> int | None:
    """The fine-tuned model's transformer layer count, when known without building it."""
    m = config.model
    if m.source == "tiny":
        return m.tiny.num_layers
    try:
        from keras_bertopt.models import read_checkpoint_config
        from keras_bertopt.recipe.config import resolve_model_source

        return int(read_checkpoint_config(resolve_model_source(m.source))["num_hidden_layers"])
    except (OSError, ValueError, KeyError):
        return None  # a preset or an unreadable source: checked when the stage builds it


def _check_distill(config: RecipeConfig) -> None:
    d = config.distill
    if not d.enabled:
        return
    require(config.finetune.enabled, "distill.enabled",
            "false unless 'finetune.enabled' is true (the fine-tuned model is the teacher)",
            d.enabled)
    _check_kd("distill", d.temperature, d.alpha)
    require(d.num_layers is None or d.keep_layers is None, "distill.keep_layers",
            "null when distill.num_layers is set (give one of them)", d.keep_layers)
    layers = _teacher_layers(config)
    limit = layers if layers is not None else 10**6
    if d.num_layers is not None:
        require(1 <= d.num_layers <= limit, "distill.num_layers",
                f"an integer in [1, {limit}] (the teacher's layers)", d.num_layers)
    if d.keep_layers is not None:
        keep = d.keep_layers
        require(bool(keep) and all(0 <= i < limit for i in keep) and len(set(keep)) == len(keep),
                "distill.keep_layers",
                f"distinct teacher layer indices in [0, {limit - 1}]", keep)
    require(d.epochs >= 1, "distill.epochs", "an integer >= 1", d.epochs)
    check_steps("distill.steps_per_epoch", d.steps_per_epoch)
    require(d.learning_rate > 0, "distill.learning_rate", "a number > 0", d.learning_rate)


def _check_qat(config: RecipeConfig) -> None:
    q = config.qat
    if not q.enabled:
        return
    require(q.epochs >= 1, "qat.epochs", "an integer >= 1", q.epochs)
    check_steps("qat.steps_per_epoch", q.steps_per_epoch)
    require(q.learning_rate > 0, "qat.learning_rate", "a number > 0", q.learning_rate)
    _check_teacher(config, "qat")


def _check_export(config: RecipeConfig) -> None:
    ex, q = config.export, config.qat
    if not ex.enabled:
        return
    require(bool(ex.quantization) or (q.enabled and bool(ex.qat_quantization)),
            "export.quantization", "at least one export mode", ex.quantization)
    for key in ("quantization", "qat_quantization", "baseline_quantization"):
        modes = getattr(ex, key)
        require(len(set(modes)) == len(modes), f"export.{key}", "no repeated modes", modes)
    require(not (q.enabled and q.activations == "dynamic" and "int8" in ex.qat_quantization),
            "export.qat_quantization",
            "no 'int8' when qat.activations is 'dynamic' (no activation ranges are learned; "
            "export 'dynamic')", ex.qat_quantization)
    require(ex.representative_batches >= 1, "export.representative_batches",
            "an integer >= 1", ex.representative_batches)
    num_classes = config.model.num_classes
    require(not ex.labels or (len(ex.labels) == num_classes and len(set(ex.labels)) ==
                              num_classes and all(str(x).strip() for x in ex.labels)),
            "export.labels", f"[] or {num_classes} distinct non-empty names", ex.labels)
    if ex.metadata:
        import importlib.util

        require(importlib.util.find_spec("mediapipe") is not None, "export.metadata",
                "null or false when mediapipe is not installed (pip install mediapipe)",
                ex.metadata)


def _check_evaluate(config: RecipeConfig) -> None:
    ev = config.evaluate
    if not ev.enabled:
        return
    require(bool(ev.splits), "evaluate.splits", "at least one split", ev.splits)
    require(len(set(ev.splits)) == len(ev.splits), "evaluate.splits", "no repeated splits",
            ev.splits)


def _check_some_training(config: RecipeConfig) -> None:
    from keras_bertopt.recipe.stages import STAGES

    trains = [s.name for s in STAGES if s.trains_model]
    if config.model.source == "tiny" and not any(getattr(config, s).enabled for s in trains):
        keys = ", ".join(f"'{s}.enabled'" for s in trains)
        raise ValueError(
            f"config keys {keys}: all false would export an untrained tiny model; enable at "
            "least one training stage"
        )


#: The checks `validate` runs, in order (one per config section, then cross-section rules).
SECTIONS: list[Callable[[RecipeConfig], None]] = [
    _check_model,
    _check_data,
    _check_finetune,
    _check_distill,
    _check_prune_structure,
    _check_prune,
    _check_qat,
    _check_export,
    _check_evaluate,
    _check_some_training,
]


def validate(config: RecipeConfig) -> RecipeConfig:
    """Check ranges and cross-field rules of a typed config; return it unchanged.

    Raises:
        ValueError / FileNotFoundError: naming the key path.
    """
    for check in SECTIONS:
        check(config)
    return config
