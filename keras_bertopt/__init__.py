"""keras_bertopt: make keras-hub BERT classifiers smaller and faster inside `model.fit`.

Submodules load lazily, so `import keras_bertopt` is cheap: it imports neither
TensorFlow, tensorflow_model_optimization nor tensorflow_datasets, and sets
nothing in the process environment. `keras_bertopt.pruning` (and friends) import
on first attribute access. Saved models that hold the package's Keras objects
(pruned, QAT, structured) load after plain ``import keras_bertopt``
(`keras_bertopt._registry`).
"""

from __future__ import annotations

import importlib
from typing import Any

from keras_bertopt import _registry

__version__ = "0.1.0"

_registry.install()

_SUBMODULES = (
    "batch_size",
    "bucketing",
    "callbacks",
    "cli",
    "cli_predict",
    "compress",
    "data",
    "demo",
    "distillation",
    "distribute",
    "export",
    "files",
    "glue",
    "hf_checkpoint",
    "kernels",
    "lengths",
    "lr_multipliers",
    "metrics",
    "models",
    "optimizers",
    "padding_stats",
    "path_optimizers",
    "predict",
    "pruning",
    "quantization",
    "recipe",
    "regularizers",
    "schedules",
    "selection",
    "text_files",
    "texts",
)

#: Modules that moved, under the name they had: `keras_bertopt.report` is the recipe's report.
_MOVED = {"report": "keras_bertopt.recipe.report"}

__all__ = list(_SUBMODULES) + list(_MOVED) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES or name in _MOVED:
        module = importlib.import_module(_MOVED.get(name, f"{__name__}.{name}"))
        globals()[name] = module
        return module
    raise AttributeError(f"module 'keras_bertopt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBMODULES) | set(_MOVED))
