"""Stage ``target``: the fastest file that meets a latency / accuracy target.

Runs `keras_bertopt.compress.compress_to_target` on the last float model (the
fine-tuned one): candidate shapes are exported and timed against the float32
fixed-length file on the held-out sentences, the fastest meeting
``target.latency`` is pruned by importance and recovered by distillation on the
training split; when its accuracy drop exceeds ``target.max_accuracy_drop``
the search bisects the larger candidates (`compress.next_candidate`). Writes ``target/`` (the
files, ``state.json`` of the search, ``report.md`` naming the file to ship); a
killed run resumes the search. No candidate meeting the target fails the stage
(non-zero exit) naming the best file found, which stays in ``target/``.

```yaml
target: {latency: 0.05, max_accuracy_drop: 1.0, device: cpu}
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Union

from pydantic import Field, model_validator

from keras_bertopt.recipe.sections import StageSection, rule

if TYPE_CHECKING:
    from keras_bertopt.recipe.context import StageContext


class TargetConfig(StageSection):
    """Compress to a target (`keras_bertopt.compress.compress_to_target`).

    On when `latency` is set (or with ``enabled: true``). `latency`: a fraction
    in (0, 1] of the float32 fixed-length file's time per held-out sentence, or
    ``"<n> ms"``; `max_accuracy_drop`: accuracy points the shipped file may lose
    against the float model; `device`: ``cpu`` (dynamic-range file) or ``int8``.
    Recovery: `epochs` over the training split, `learning_rate`, KD `temperature`
    and `alpha`, `freeze_embeddings` (embedding tables kept fixed: a cheaper
    step), `steps_per_execution`, `dropout` (the student's rate while it
    recovers; null keeps the model's), `hidden_weight` (TinyBERT's hidden-state
    loss on top of the logits; the teacher then runs on every batch),
    `dtype_policy` (``mixed_bfloat16``: the student trains with bfloat16 matmuls); at most
    `max_trials` candidates recovered.
    Candidate shapes: `layers` (default every count up to the model's),
    `head_fractions`, `ffn_fractions`; `timing_sentences` held-out sentences timed;
    `reference_length`: the fixed length of the float32 file the latency ratio is
    counted against (null: `model.sequence_length`; 128: the fixed-128 file
    MediaPipe's text tasks used to run).
    """

    enabled: bool = False
    latency: Union[float, str, None] = None
    max_accuracy_drop: Union[float, None] = None
    device: Literal["cpu", "int8"] = "cpu"
    epochs: int = Field(1, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(0.7, ge=0, le=1)
    freeze_embeddings: bool = False
    steps_per_execution: int = Field(1, ge=1)
    dropout: Union[float, None] = Field(None, ge=0, lt=1)
    hidden_weight: float = Field(0.0, ge=0)
    dtype_policy: Literal["float32", "mixed_bfloat16"] = "float32"
    max_trials: int = Field(3, ge=1)
    layers: Union[list[int], None] = None
    head_fractions: list[float] = Field(default_factory=lambda: [1.0, 0.75, 0.5, 0.25])
    ffn_fractions: list[float] = Field(default_factory=lambda: [1.0, 0.5, 0.25])
    timing_sentences: int = Field(200, ge=1)
    reference_length: Union[int, None] = Field(None, ge=2)

    @model_validator(mode="before")
    @classmethod
    def _on_when_set(cls, value: Any) -> Any:
        if isinstance(value, dict) and "enabled" not in value and value.get("latency") is not None:
            return {**value, "enabled": True}
        return value

    @model_validator(mode="after")
    def _target(self) -> TargetConfig:
        if self.enabled:
            from keras_bertopt.compress.target import parse_target

            parse_target(self.goal())
        for key in ("head_fractions", "ffn_fractions"):
            values = getattr(self, key)
            rule(bool(values) and all(0 < v <= 1 for v in values), key,
                 "a non-empty list of fractions in (0, 1]", values)
        rule(self.layers is None or (bool(self.layers) and min(self.layers) >= 1), "layers",
             "null or a non-empty list of layer counts >= 1", self.layers)
        return self

    def goal(self) -> dict[str, Any]:
        """The ``{latency, max_accuracy_drop, device}`` mapping `parse_target` reads."""
        return {"latency": self.latency, "max_accuracy_drop": self.max_accuracy_drop,
                "device": self.device}

    def search_arguments(self, model: Any, batch_size: int, seed: int) -> dict[str, Any]:
        """The keyword arguments of `compress_to_target` this section sets."""
        from keras_bertopt import compress

        settings = compress.RecoverySettings(
            epochs=self.epochs, batch_size=batch_size, learning_rate=self.learning_rate,
            temperature=self.temperature, alpha=self.alpha, seed=seed,
            freeze_embeddings=self.freeze_embeddings,
            steps_per_execution=self.steps_per_execution, dropout=self.dropout,
            hidden_weight=self.hidden_weight, dtype_policy=self.dtype_policy)
        shapes = compress.candidate_shapes(model, self.layers, self.head_fractions,
                                           self.ffn_fractions)
        return {"candidates": shapes, "recovery": settings, "max_trials": self.max_trials,
                "timing_sentences": self.timing_sentences,
                "reference_length": self.reference_length}


SECTION = TargetConfig


def check(config: Any) -> None:
    """A fine-tuned model to compress, layer counts within it (when known)."""
    t = config.target
    if not t.enabled:
        return
    rule(config.finetune.enabled, "target.enabled",
         "false unless finetune is enabled (the target compresses the fine-tuned model)", True)
    layers = config.model.layer_count()
    rule(t.layers is None or layers is None or max(t.layers) <= layers, "target.layers",
         f"layer counts <= the model's {layers}", t.layers)


def run(ctx: StageContext) -> dict[str, Any]:
    """Search for the file to ship; writes ``target/``."""
    from keras_bertopt import compress

    t: TargetConfig = ctx.section
    floats = [stage for stage, is_float in ctx.trained.items() if is_float]
    model = ctx.models.load(floats[-1])
    data = ctx.data
    train = data.train_examples()
    held_out = data.held_out_split()
    validation = data.eval_examples(held_out) if held_out else train
    if not isinstance(train[0], list):
        raise ValueError("target: single-sentence data only (sentence pairs are not supported)")
    result = compress.compress_to_target(
        model, t.goal(), train, validation, ctx.paths("target"),
        **t.search_arguments(model, data.batch_size, ctx.seed))
    return {"file": ctx.paths.relative(result.file), "candidate": result.name,
            "accuracy": result.accuracy, "baseline_accuracy": result.baseline_accuracy,
            "accuracy_drop_pt": result.accuracy_drop, "latency_ratio": result.ratio,
            "latency_ms": result.median_ms, "report": ctx.paths.relative(result.report),
            "validation_split": held_out or "train", "base_model": floats[-1]}
