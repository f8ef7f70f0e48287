"""The runner: iterate the stage registry over a checked config, one way.

For each enabled stage not yet completed, the runner seeds (``config.seed +
seed_of(stage)``), builds the stage's `StageContext` (for a training stage,
with the model it starts from), calls ``stage.run(ctx)`` and records the
result in ``state.json``. Stages never call back into the runner. Messages go to
``logging.getLogger("keras_bertopt")``.

```python
import logging
logging.basicConfig(level=logging.INFO, format="%(message)s")
report = keras_bertopt.recipe.run("examples/demo.yaml", output_dir="runs/demo")
```
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Mapping, Union

from keras_bertopt import files
from keras_bertopt.recipe import measure
from keras_bertopt.recipe.config import RecipeConfig
from keras_bertopt.recipe.context import ModelStore, RunPaths, StageContext
from keras_bertopt.recipe.datasets import RecipeData
from keras_bertopt.recipe.loader import load_config
from keras_bertopt.recipe.lock import RunLock
from keras_bertopt.recipe.registry import BY_NAME, STAGES, Stage
from keras_bertopt.recipe.sections import resolve_model_source
from keras_bertopt.recipe.state import RunState, open_run

log = logging.getLogger("keras_bertopt")


class RecipeError(RuntimeError):
    """A stage failed; the message names the stage. Earlier stages' results are kept."""


class Run:
    """One run of a checked config into its output folder (use `run`)."""

    def __init__(self, config: Any, *, fit_verbose: Any = "auto") -> None:
        self.config = config
        self.paths = RunPaths(os.path.abspath(config.output_dir))
        self.fit_verbose = fit_verbose
        self.data = RecipeData(config.data, config.model.num_classes, config.seed)
        self.models = ModelStore(self.paths)
        self.state: RunState | None = None
        self.strategy: Any = None

    def _trained(self, before: str) -> dict[str, bool]:
        """Completed model stages that run before `before` -> whether their model is float."""
        limit = [s.name for s in STAGES].index(before)
        return {s.name: s.float_model for s in STAGES[:limit]
                if s.trains_model and s.name in self.state.completed}

    def _input_model(self, stage: Stage) -> Any:
        """The last finished training stage's model (taken: the stage changes it), or a new
        one, with the measured sequence length and batch size recorded in the state."""
        trained = self._trained(stage.name)
        if trained:
            return self.models.take(list(trained)[-1])
        model = measure.new_model(self.config, self.state.sequence_length, self.strategy)
        if self.config.model.sequence_length is None and self.state.sequence_length is None:
            length, report = measure.sequence_length(model, self.data.train_examples()[0])
            model.preprocessor.sequence_length = length
            self.state.sequence_length, self.state.length_report = length, report.to_dict()
            log.info(f"model.sequence_length unset: {length} from the training data "
                     f"({report.percentiles})")
        if not self.data.has_batch_size:
            report = measure.batch_size(model, self.config.data.batch_size_limit, self.strategy)
            self.data.batch_size = self.state.batch_size = report.choose("fastest")
            self.state.batch_size_search = report.to_dict()
            log.info(f"data.batch_size auto: {self.data.batch_size} (most tokens/s)\n{report}")
        if self.state.batch_size is not None or self.state.sequence_length is not None:
            self.state.save(self.paths.root)  # a run resumed after a kill keeps them
        return model

    def _context(self, stage: Stage) -> StageContext:
        import keras

        ctx = StageContext(
            name=stage.name, section=getattr(self.config, stage.name), config=self.config,
            paths=self.paths, data=self.data, models=self.models, strategy=self.strategy,
            completed=tuple(self.state.completed), trained=self._trained(stage.name),
            results=self.state.stages, seed=self.config.seed + stage.seed,
            fit_verbose=self.fit_verbose)
        if stage.trains_model:
            from keras_bertopt.recipe.checkpoints import reset_seed_generators

            keras.utils.set_random_seed(ctx.seed)
            ctx.model = self._input_model(stage)
            # Seeded again once the model is there: it was kept in memory, read from its
            # file (after a kill) or built, which draw differently from the random streams.
            keras.utils.set_random_seed(ctx.seed)
            reset_seed_generators(ctx.model, ctx.seed)
        return ctx

    def _run_stage(self, stage: Stage, head: str) -> None:
        log.info(f"{head}: running")
        start = time.perf_counter()
        try:
            result = stage.run(self._context(stage))
        except Exception as err:
            self.state.save(self.paths.root)
            log.error(f"{head}: FAILED after {time.perf_counter() - start:.1f} s: {err}")
            raise RecipeError(f"stage {stage.name!r} failed: {err}") from err
        result["seconds"] = time.perf_counter() - start
        self.state.record(stage.name, result)
        self.state.save(self.paths.root)
        if os.path.exists(self.paths.checkpoint(stage.name)):  # recorded: no longer needed
            os.remove(self.paths.checkpoint(stage.name))
        log.info(f"{head}: done in {result['seconds']:.1f} s{_summary(stage.name, result)}")

    def _start(self, todo: list[Stage]) -> None:
        """Before the first pending training stage: the model source and the strategy."""
        pending = [s for s in todo if s.trains_model and s.name not in self.state.completed]
        if not pending:
            return
        resolve_model_source(self.config.model.source)  # a missing package fails here
        from keras_bertopt import distribute

        self.strategy = distribute.get_strategy(self.config.strategy)
        size = self.data.batch_size if self.data.has_batch_size else None
        log.info("strategy: " + distribute.describe(self.strategy, size))

    def run(self) -> dict[str, Any]:
        """Run (or resume) every enabled stage, write the report; return the report dict.

        The run folder is locked for the whole run (`RunLock`: a second run into it
        is refused). Once the folder is known to hold this run, the temporaries a
        killed run left are removed and scratch files go to ``<root>/.tmp``. On
        TensorFlow each stage's first step is traced once, not twice
        (`_compat.traced_once`: the training variables are built before the trace).
        """
        from keras_bertopt._compat import traced_once

        with RunLock(self.paths.root):
            self.state = open_run(self.paths.root, self.config)  # refuses a foreign folder
            with files.temporaries_inside(self.paths.root), traced_once():
                removed = files.remove_temporaries(self.paths.root)
                if removed:
                    log.info(f"removed {len(removed)} unfinished file(s) a stopped run left")
                return self._run()

    def _run(self) -> dict[str, Any]:
        from keras_bertopt.recipe import report

        if self.state.batch_size is not None:
            self.data.batch_size = self.state.batch_size
        todo = [s for s in STAGES if getattr(self.config, s.name).enabled]
        log.info(f"output: {self.paths.root}")
        self._start(todo)
        for i, stage in enumerate(todo, start=1):
            head = f"stage {i}/{len(todo)} {stage.name}"
            if stage.name in self.state.completed:
                log.info(f"{head}: already completed in {self.paths.root}, skipped")
            else:
                self._run_stage(stage, head)
        state = self.state.to_dict()
        written = report.write_report(self.paths.root, state)
        log.info(f"report: {', '.join(written)}")
        return report.build_report(state)


def _summary(stage: str, result: Mapping[str, Any]) -> str:
    history = result.get("history") or {}
    parts = []
    if history.get("val_accuracy"):
        parts.append(f"val accuracy {history['val_accuracy'][-1]:.4f}")
    sparsity = result.get("sparsity")
    if isinstance(sparsity, Mapping) and "pruned_variables" in sparsity:
        parts.append(f"sparsity of pruned kernels {sparsity['pruned_variables']:.3f}, "
                     f"of all weights {sparsity['overall']:.3f}")
    if "files" in result:
        parts.append(f"{len(result['files'])} TFLite files")
    for item in result.get("exports", []) if stage == "evaluate" else []:
        split = next(iter(item["metrics"]), None)
        if split is not None:
            parts.append(f"{item['name']} {split} acc {item['metrics'][split]['accuracy']:.4f}")
    return (" (" + ", ".join(parts) + ")") if parts else ""


def run(
    config: Union[str, os.PathLike[str], Mapping[str, Any], RecipeConfig],
    *,
    output_dir: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    fit_verbose: Any = "auto",
) -> dict[str, Any]:
    """Check `config` fully, then run or resume its stages into the output folder.

    Args:
        config: a YAML/JSON path, a mapping or a `RecipeConfig`.
        output_dir: overrides `config.output_dir`.
        overrides: dotted key -> value changes applied before the checks.
        fit_verbose: `verbose` of `model.fit` (Keras progress bars by default).

    Returns:
        The report dict (what ``report.json`` holds).

    Raises:
        ValueError / FileNotFoundError: a bad config, before any training.
        FileExistsError: the output folder holds something else (never overwritten).
        RecipeError: a stage failed (completed stages stay; run again to resume).
    """
    cfg = load_config(config, overrides)
    if output_dir is not None:
        cfg = cfg.model_copy(update={"output_dir": os.fspath(output_dir)})
    if cfg.output_dir is None:
        raise ValueError("`output_dir` must be given (argument or config key 'output_dir')")
    return Run(cfg, fit_verbose=fit_verbose).run()


__all__ = ["BY_NAME", "RecipeError", "Run", "run"]
