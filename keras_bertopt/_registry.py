"""Saved models load after plain ``import keras_bertopt``, which still imports no Keras.

The package's serializable Keras objects (pruning, QAT and structured-pruning
layers, schedules, optimizers, callbacks ...) register under ``keras_bertopt>``
when their modules are imported. `install` (run by ``import keras_bertopt``)
arranges that, once Keras is imported, a lookup of a ``keras_bertopt>`` name
Keras does not know imports those modules first (`_compat.load_custom_objects_on_demand`).
So ``import keras_bertopt; keras.saving.load_model("qat.keras")`` works in a
fresh process, and importing the package costs no Keras or TensorFlow import.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import threading
from typing import Any

#: The modules whose import registers every serializable object of the package.
SERIALIZABLE_MODULES = (
    "keras_bertopt.bucketing",
    "keras_bertopt.callbacks",
    "keras_bertopt.distillation",
    "keras_bertopt.optimizers",
    "keras_bertopt.pruning",
    "keras_bertopt.quantization",
    "keras_bertopt.regularizers",
    "keras_bertopt.schedules",
)

_PREFIX = "keras_bertopt>"
_lock = threading.RLock()
_loading = False


def register_all() -> None:
    """Import every module that registers Keras objects (idempotent)."""
    for module in SERIALIZABLE_MODULES:
        importlib.import_module(module)


def _on_lookup(name: Any) -> None:
    global _loading
    if not (isinstance(name, str) and name.startswith(_PREFIX)) or _loading:
        return
    with _lock:
        _loading = True
        try:
            register_all()
        finally:
            _loading = False


def _hook_keras() -> None:
    from keras_bertopt import _compat

    _compat.load_custom_objects_on_demand(_on_lookup)


class _AfterKerasImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader the other finders give for ``keras`` so the
    hook runs once Keras has been executed (a spec only probed for is never executed)."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "keras":
            return None
        spec = None
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader, finder = spec.loader, self
        original = loader.exec_module

        def exec_module(module: Any) -> None:
            original(module)
            if finder in sys.meta_path:
                sys.meta_path.remove(finder)
            _hook_keras()

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Hook Keras now if it is imported, else right after it is."""
    if "keras" in sys.modules and hasattr(sys.modules["keras"], "saving"):
        _hook_keras()
    elif not any(isinstance(f, _AfterKerasImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterKerasImport())
