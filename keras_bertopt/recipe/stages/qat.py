"""Stage ``qat``: quantization-aware training (`quantize_aware`), keeping the pruned zeros."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from keras_bertopt.recipe import training
from keras_bertopt.recipe.sections import StageSection, TeacherConfig, check_teacher
from keras_bertopt.recipe.stages import distill, prune

if TYPE_CHECKING:
    from keras_bertopt.recipe.context import StageContext


class QATConfig(StageSection):
    """Quantization-aware training (`keras_bertopt.quantization.quantize_aware`).

    `preserve_sparsity`: after the prune stage, keep its zeros fixed during QAT
    (the pruning masks stay on, as in tfmot's pruning-preserving QAT), so the
    int8 file is as sparse as the pruned model. `quantize_embeddings`: also
    int8 embedding tables (`QuantizationConfig(quantize_embeddings=True)`); in
    MiniLM the token table is half the parameters, so this is what brings the
    int8 file to about a quarter of the float32 size. `activations`:
    ``static`` trains int8 activation ranges for the ``int8`` file;
    ``dynamic`` (`QuantizationConfig(activations="dynamic")`) trains int8
    weights only, for a ``dynamic`` file (activations quantized at run time,
    the faster CPU file; then list ``dynamic``, not ``int8``, in
    `export.qat_quantization`).
    """

    epochs: int = Field(1, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    preserve_sparsity: bool = True
    quantize_embeddings: bool = True
    activations: Literal["static", "dynamic"] = "static"
    distill: TeacherConfig = Field(default_factory=TeacherConfig)


SECTION = QATConfig


def check(config: Any) -> None:
    """A teacher named in `qat.distill` must run."""
    check_teacher(config, "qat")


def run(ctx: StageContext) -> dict[str, Any]:
    """Train the input model with fake-quant; writes ``qat/model.keras``."""
    import keras

    from keras_bertopt import pruning, quantization

    q: QATConfig = ctx.section
    pr = ctx.config.prune
    preserve = q.preserve_sparsity and "prune" in ctx.completed

    def setup(model: Any, total: int) -> training.Setup:
        qmodel = quantization.quantize_aware(
            model, quantization.QuantizationConfig(quantize_embeddings=q.quantize_embeddings,
                                                   activations=q.activations)
        )
        trained = distill.wrap(ctx, qmodel, q.distill)
        extra = [prune.mask_keeper(pr, trained)] if preserve else []
        return training.Setup(trained, keras.optimizers.AdamW(q.learning_rate, weight_decay=0.0),
                              extra)

    def finish(trained: Any) -> tuple[Any, dict[str, Any]]:
        if preserve:
            pruning.strip_pruning(trained)
        qmodel = distill.unwrap(trained)
        if not preserve:
            return qmodel, {}
        kept = prune.sparsity(qmodel, pr)
        return qmodel, {"sparsity": {"pruned_variables": kept["pruned_variables"],
                                     "overall": kept["overall"]}}

    return training.train(ctx, epochs=q.epochs, steps_per_epoch=q.steps_per_epoch,
                          setup=setup, finish=finish)
