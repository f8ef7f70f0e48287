"""The runner: `Recipe` runs (or resumes) the registered stages into the output directory."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Mapping, Union

from keras_bertopt import files
from keras_bertopt.recipe import state as run_state
from keras_bertopt.recipe.config import RecipeConfig, resolve_model_source
from keras_bertopt.recipe.datasets import RecipeData
from keras_bertopt.recipe.loader import load_config
from keras_bertopt.recipe.stages import BY_NAME, MODEL_STAGES, STAGE_NAMES, STAGES


class RecipeError(RuntimeError):
    """A stage failed; the message names the stage. Earlier stages' results are kept."""


class Recipe:
    """Runs the stages of a validated `RecipeConfig` into `config.output_dir`.

    Use `run(config)`; this class holds what the stages share: the config, the
    run directory and its state, the data (`RecipeData`), the strategy and the
    models of finished stages. Each registered stage is also a method
    ``stage_<name>()`` (see `stages.STAGES`).
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
        self.data = RecipeData(config)
        self._models: dict[str, Any] = {}
        self._strategy: Any = None

    # ------------------------------------------------------------------ run directory
    def path(self, *parts: str) -> str:
        """A path inside the output directory."""
        return os.path.join(self.out, *parts)

    def prepare(self) -> list[str]:
        """Create or reopen the output dir; return the stages already completed.

        Raises:
            FileExistsError: the directory holds something that is not this
                recipe's run, or a run of a different config.
        """
        self.state = run_state.open_run(self.out, self.config)
        self.data.chosen_batch_size = self.state.get("batch_size")
        return list(self.state["completed"])

    def save_state(self) -> None:
        """Write ``state.json``."""
        run_state.save_state(self.out, self.state)

    # ------------------------------------------------------------------ shared resources
    def strategy(self) -> Any:
        """The tf.distribute strategy of `config.strategy` (built once)."""
        if self._strategy is None:
            from keras_bertopt import distribute

            self._strategy = distribute.get_strategy(self.config.strategy)
        return self._strategy

    def save_model(self, stage: str, model: Any) -> str:
        """Save ``<stage>/model.keras`` without its optimizer state (every stage compiles its
        own), so the file is the model alone and its size in the report is the weights' size."""
        path = self.path(stage, "model.keras")
        optimizer, compiled = model.optimizer, model.compiled
        model.optimizer, model.compiled = None, False
        try:
            with files.atomic_output(path) as tmp:
                model.save(tmp)
        finally:
            model.optimizer, model.compiled = optimizer, compiled
        self._models[stage] = model
        return path

    def load_model(self, stage: str) -> Any:
        """The model `stage` wrote (kept in memory after the first load)."""
        if stage not in self._models:
            import keras

            from keras_bertopt import pruning, quantization  # noqa: F401  (registers objects)

            self._models[stage] = keras.saving.load_model(
                self.path(stage, "model.keras"), compile=False
            )
        return self._models[stage]

    def model_stages_done(self) -> list[str]:
        """Completed stages that wrote a model, in stage order."""
        return [s for s in MODEL_STAGES if s in self.state["completed"]]

    def last_model_stage(self, before: str, *, float_only: bool = False) -> str | None:
        """The last completed model stage that runs before `before` (a float one if asked)."""
        limit = STAGE_NAMES.index(before)
        order = [s for s in self.model_stages_done() if STAGE_NAMES.index(s) < limit
                 and (BY_NAME[s].float_model or not float_only)]
        return order[-1] if order else None

    def input_model(self, stage: str) -> Any:
        """The model `stage` trains: the last finished stage's (it is changed in place, so it
        leaves the cache and is reloaded from its file when needed again), or a new one."""
        last = self.last_model_stage(stage)
        if last is not None:
            model = self.load_model(last)
            del self._models[last]
            return model
        from keras_bertopt import models

        m = self.config.model
        length = m.sequence_length or self.state.get("sequence_length")
        if m.source == "tiny":
            source: Any = models.TinyConfig(
                **dataclasses.asdict(m.tiny),
                max_sequence_length=max(128, length or 0), seed=self.config.seed,
            )
        else:
            source = resolve_model_source(m.source)
        with self.strategy().scope():
            model = models.build_classifier(source, m.num_classes, length or 128,
                                            dropout=m.dropout)
        if length is None:
            model.preprocessor.sequence_length = self._measure_sequence_length(model)
        if self.config.data.batch_size == "auto" and self.data.chosen_batch_size is None:
            self._measure_batch_size(model)
        return model

    def _measure_batch_size(self, model: Any) -> int:
        """`data.batch_size: auto`: the size with the best training tokens/s (see `DataConfig`)."""
        import keras

        from keras_bertopt.batch_size import find_batch_size
        from keras_bertopt.recipe.training import compile_classifier

        with self.strategy().scope():
            compile_classifier(model, keras.optimizers.AdamW(1e-5))
        report = find_batch_size(model, int(model.preprocessor.sequence_length),
                                 limit=self.config.data.batch_size_limit)
        size = report.choose("fastest")
        self.data.chosen_batch_size = size
        self.state["batch_size"] = size
        self.state["batch_size_search"] = report.to_dict()
        self.log(f"[keras-bertopt] data.batch_size auto: {size} (most tokens/s)\n{report}")
        return size

    def _measure_sequence_length(self, model: Any) -> int:
        """`length_report(train texts).suggest()` within the model's position table."""
        from keras_bertopt.lengths import length_report

        texts, _ = self.data.train_examples()
        positions = int(model.backbone.max_sequence_length)
        candidates = [c for c in (32, 64, 128, 256, 512) if c <= positions] or [positions]
        report = length_report(texts, model.preprocessor, candidates=candidates)
        length = report.suggest(0.01) or candidates[-1]
        self.state["sequence_length"] = length
        self.state["length_report"] = report.to_dict()
        self.log(f"[keras-bertopt] model.sequence_length unset: {length} from the training "
                 f"data ({report.percentiles})")
        return length

    # ------------------------------------------------------------------ driver
    def enabled(self, stage: str) -> bool:
        """`config.<stage>.enabled`."""
        return bool(getattr(self.config, stage).enabled)

    def _run_stage(self, stage: str, head: str) -> None:
        self.log(f"{head}: running")
        start = time.perf_counter()
        try:
            result = getattr(self, f"stage_{stage}")()
        except Exception as err:
            self.save_state()
            self.log(f"{head}: FAILED after {time.perf_counter() - start:.1f} s: {err}")
            raise RecipeError(f"stage {stage!r} failed: {err}") from err
        result["seconds"] = time.perf_counter() - start
        self.state["stages"][stage] = result
        self.state["completed"].append(stage)
        self.save_state()
        self.log(f"{head}: done in {result['seconds']:.1f} s{_summary(stage, result)}")

    def run(self) -> dict[str, Any]:
        """Run (or resume) every enabled stage, write the report; return the report dict."""
        from keras_bertopt import report

        done = self.prepare()
        todo = [s for s in STAGE_NAMES if self.enabled(s)]
        if any(s not in done for s in todo if s in MODEL_STAGES):
            resolve_model_source(self.config.model.source)  # a missing package fails here
        self.log(f"[keras-bertopt] output: {self.out}")
        if any(s not in done for s in todo if s in MODEL_STAGES):
            from keras_bertopt import distribute

            size = self.config.data.batch_size
            size = self.data.chosen_batch_size if size == "auto" else size
            self.log("[keras-bertopt] strategy: " + distribute.describe(self.strategy(), size))
        for i, stage in enumerate(todo, start=1):
            head = f"[keras-bertopt] stage {i}/{len(todo)} {stage}"
            if stage in done:
                self.log(f"{head}: already completed in {self.out}, skipped")
            else:
                self._run_stage(stage, head)
        written = report.write_report(self.out, self.state)
        self.log(f"[keras-bertopt] report: {', '.join(written)}")
        return report.build_report(self.state)


# Each registered stage becomes a method `Recipe.stage_<name>` (a stage's `run(recipe)` is a
# function of the recipe), so a subclass or a test can replace one stage.
for _stage in STAGES:
    setattr(Recipe, f"stage_{_stage.name}", _stage.run)


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
