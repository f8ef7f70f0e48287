"""What a stage may use: `StageContext` (its section, paths, data, strategy, models).

The runner builds one context per stage and reads back the stage's result; a
stage never reaches the runner. `RunPaths` names the files of a run folder and
`ModelStore` saves and loads the stages' ``model.keras`` files.

```python
def run(ctx: StageContext) -> dict:          # a stage
    model = ctx.model                          # the previous stage's model, or a new one
    ...
    return {"model": ctx.models.save(ctx.name, model)}
```
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any, Mapping

from keras_bertopt import files

if TYPE_CHECKING:
    from keras_bertopt.recipe.datasets import RecipeData


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """The files of a run folder."""

    root: str

    def __call__(self, *parts: str) -> str:
        """A path inside the run folder."""
        return os.path.join(self.root, *parts)

    def model(self, stage: str) -> str:
        """``<root>/<stage>/model.keras``."""
        return self(stage, "model.keras")

    def checkpoint(self, stage: str) -> str:
        """``<root>/<stage>/checkpoint.npz``: the stage's in-progress training state."""
        return self(stage, "checkpoint.npz")

    def relative(self, path: str) -> str:
        """`path` relative to the run folder (how ``state.json`` records files)."""
        return os.path.relpath(path, self.root)

    @property
    def state(self) -> str:
        """``<root>/state.json``."""
        return self("state.json")


class ModelStore:
    """The models the stages wrote: ``<stage>/model.keras``, kept in memory once loaded."""

    def __init__(self, paths: RunPaths) -> None:
        self.paths = paths
        self._models: dict[str, Any] = {}

    def save(self, stage: str, model: Any) -> str:
        """Write ``<stage>/model.keras`` without its optimizer state (every stage compiles its
        own), so the file is the model alone; return its path relative to the run folder."""
        path = self.paths.model(stage)
        optimizer, compiled = model.optimizer, model.compiled
        model.optimizer, model.compiled = None, False
        try:
            with files.atomic_output(path) as tmp:
                model.save(tmp)
        finally:
            model.optimizer, model.compiled = optimizer, compiled
        self._models[stage] = model
        return self.paths.relative(path)

    def load(self, stage: str) -> Any:
        """The model `stage` wrote (loaded once, then shared: do not change it)."""
        if stage not in self._models:
            self._models[stage] = self.fresh(stage)
        return self._models[stage]

    def take(self, stage: str) -> Any:
        """The model `stage` wrote, for the caller to change: it leaves the store (and is
        loaded again from its file when asked for later)."""
        model = self.load(stage)
        del self._models[stage]
        return model

    def fresh(self, stage: str) -> Any:
        """A new copy of the model `stage` wrote, read from its file."""
        from keras_bertopt.predict import load_model  # registers our objects, no warnings

        return load_model(self.paths.model(stage))


@dataclasses.dataclass
class StageContext:
    """Everything a stage may use. The stage returns its result (a JSON-able dict).

    Attributes:
        name: the stage.
        section: its config section (``config.<name>``).
        config: the whole config, read-only (for settings of the stages before it).
        paths: the run folder.
        data: the run's examples and datasets.
        models: the models of finished stages.
        model: the model a training stage starts from (the last finished training
            stage's, or a new one); None for the other stages.
        completed: the stages finished before this one, in order.
        trained: of those, the ones that wrote a model -> whether it is a float model
            (not fake-quantized), in order.
        results: their results (as in ``state.json``).
        seed: the seed this stage's randomness was set from.
        fit_verbose: `verbose` of `model.fit`.
    """

    name: str
    section: Any
    config: Any
    paths: RunPaths
    data: RecipeData
    models: ModelStore
    strategy: Any = None
    model: Any = None
    completed: tuple[str, ...] = ()
    trained: dict[str, bool] = dataclasses.field(default_factory=dict)
    results: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 0
    fit_verbose: Any = "auto"

    def scope(self) -> Any:
        """The distribution strategy's scope (a no-op context without one)."""
        import contextlib

        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()
