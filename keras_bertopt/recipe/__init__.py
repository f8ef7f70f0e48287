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

Layout: `config` (the dataclasses), `loader` (YAML/JSON/dict -> config),
`validate` (one check per section), `state` (the run directory), `datasets`
(the examples and pipelines), `training` (the one training sequence),
`finetune` / `prune` / `qat` / `export` / `evaluate` (one module per stage),
`stages` (the ordered registry) and `runner` (`Recipe`, `run`).
"""

from keras_bertopt.metrics import label_metrics as classification_metrics
from keras_bertopt.recipe.config import (
    DataConfig,
    DistillConfig,
    EvaluateConfig,
    ExportConfig,
    FinetuneConfig,
    ModelConfig,
    OptimizerConfig,
    PatternList,
    PruneConfig,
    PruneStructureConfig,
    QATConfig,
    RecipeConfig,
    RegularizationConfig,
    ScheduleConfig,
    TeacherConfig,
    TinyModelConfig,
    demo_config,
    resolve_model_source,
)
from keras_bertopt.recipe.loader import from_dict, load_config, parse_overrides
from keras_bertopt.recipe.runner import Recipe, RecipeError, run
from keras_bertopt.recipe.stages import MODEL_STAGES, STAGE_NAMES, Stage
from keras_bertopt.recipe.state import STATE_VERSION
from keras_bertopt.recipe.validate import validate

#: Stages, in the order they run.
STAGES = STAGE_NAMES

__all__ = [
    "MODEL_STAGES",
    "STAGES",
    "STATE_VERSION",
    "DataConfig",
    "DistillConfig",
    "EvaluateConfig",
    "ExportConfig",
    "FinetuneConfig",
    "ModelConfig",
    "OptimizerConfig",
    "PatternList",
    "PruneConfig",
    "PruneStructureConfig",
    "QATConfig",
    "Recipe",
    "RecipeConfig",
    "RecipeError",
    "RegularizationConfig",
    "ScheduleConfig",
    "Stage",
    "TeacherConfig",
    "TinyModelConfig",
    "classification_metrics",
    "demo_config",
    "from_dict",
    "load_config",
    "parse_overrides",
    "resolve_model_source",
    "run",
    "validate",
]
