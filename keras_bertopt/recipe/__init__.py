"""The end-to-end job: fine-tune -> prune -> QAT -> export TFLite -> evaluate -> report.

One config (a YAML or JSON file, a mapping, or a `RecipeConfig`) drives every
stage. The config is checked in full before any training starts: unknown keys,
wrong types, values out of range and missing files are each a `ValueError` /
`FileNotFoundError` naming the dotted key (``finetune.optimizer.kind``).

```python
import logging
import keras_bertopt as kb

logging.basicConfig(level=logging.INFO, format="%(message)s")   # progress lines
config = kb.recipe.load_config("examples/demo.yaml")
report = kb.recipe.run(config, output_dir="runs/demo")
print(report["exports"][0]["metrics"]["validation"]["accuracy"])
```

The output folder holds ``config.json`` (the resolved config), ``state.json``
(what each finished stage produced), ``<stage>/model.keras`` for every training
stage, ``export/<stage>_<mode>.tflite`` and ``report.json``, ``report.md`` and
``report.png``. Running again into the same folder with the same config resumes
after the last completed stage; with a different config, or into a folder that
is not a recipe run, it refuses (`FileExistsError`) rather than overwrite.

Layout: `sections` (shared config sections), `stages/` (one module per stage: its
section, ``run(ctx)``, ``check(config)``), `registry` (the stages in order, their
seeds), `config` (`RecipeConfig`, made from the registry), `errors` (dotted-key
messages), `loader` (files, mappings, ``--set``), `state` (``state.json``),
`context` (what a stage may use), `datasets`, `training` (the shared training
sequence), `measure` (new model, measured length and batch size), `runner` and
`report` (``report.json`` / ``.md`` / ``.png``; also `keras_bertopt.report`).
Names load lazily: importing this package imports no TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "RecipeConfig": "config", "demo_config": "config",
    "resolve_model_source": "sections", "PatternList": "sections",
    "DataConfig": "sections", "ModelConfig": "sections", "OptimizerConfig": "sections",
    "RegularizationConfig": "sections", "ScheduleConfig": "sections",
    "TeacherConfig": "sections", "TinyModelConfig": "sections",
    "FinetuneConfig": "stages.finetune", "DistillConfig": "stages.distill",
    "PruneStructureConfig": "stages.prune_structure", "PruneConfig": "stages.prune",
    "QATConfig": "stages.qat", "ExportConfig": "stages.export",
    "EvaluateConfig": "stages.evaluate",
    "from_dict": "loader", "load_config": "loader", "parse_overrides": "loader",
    "RecipeError": "runner", "run": "runner",
    "STAGES": "registry", "MODEL_STAGES": "registry", "STAGE_NAMES": "registry",
    "Stage": "registry", "seed_of": "registry",
    "RunState": "state", "STATE_VERSION": "state",
    "StageContext": "context",
}

__all__ = sorted([*_NAMES, "classification_metrics"])


def __getattr__(name: str) -> Any:
    if name == "classification_metrics":
        from keras_bertopt.metrics import label_metrics

        return label_metrics
    if name in _NAMES:
        value = getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
