"""Stage ``export``: TFLite files (`keras_bertopt.export.to_tflite`) of the trained models.

`export_model` and `metadata_arguments` are also what ``keras-bertopt export`` runs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pydantic import Field

from keras_bertopt.export.modes import QuantizationMode
from keras_bertopt.recipe.sections import StageSection, rule

if TYPE_CHECKING:
    from keras_bertopt.recipe.context import StageContext

log = logging.getLogger("keras_bertopt")


class ExportConfig(StageSection):
    """TFLite export (`keras_bertopt.export.to_tflite`).

    `quantization`: modes for the last float model (fine-tuned or pruned);
    ``int8`` there is post-training full int8 calibrated on
    `representative_batches` training batches. `qat_quantization`: modes for the
    QAT model (``int8`` uses its learned ranges). `baseline_quantization`: modes
    for the dense fine-tuned model when a prune stage ran (e.g. ``[none]``: the
    dense float32 file every other size is compared with). ``none`` is float32.

    `metadata`: embed MediaPipe TextClassifier metadata (vocabulary and
    `labels`) so the files run in MediaPipe Tasks on raw text; null (default):
    on when `mediapipe` is installed and the tokenizer is uncased. Every file
    but post-training int8 has one dynamic-length signature either way (each
    text runs at its own length in MediaPipe, LiteRT and `TFLiteClassifier`);
    post-training int8 has one fixed length.
    `labels`: class names (default: the class indices "0", "1", ...).
    """

    quantization: list[QuantizationMode] = Field(
        default_factory=lambda: ["none", "dynamic", "int8"])
    qat_quantization: list[QuantizationMode] = Field(default_factory=lambda: ["int8"])
    baseline_quantization: list[QuantizationMode] = Field(default_factory=list)
    representative_batches: int = Field(4, ge=1)
    metadata: bool | None = None
    labels: list[str] = Field(default_factory=list)


SECTION = ExportConfig


def check(config: Any) -> None:
    """Something to export, no repeats, modes the QAT model supports, labels per class."""
    ex, q = config.export, config.qat
    if not ex.enabled:
        return
    rule(bool(ex.quantization) or (q.enabled and bool(ex.qat_quantization)),
         "export.quantization", "at least one export mode", ex.quantization)
    for key in ("quantization", "qat_quantization", "baseline_quantization"):
        modes = getattr(ex, key)
        rule(len(set(modes)) == len(modes), f"export.{key}", "no repeated modes", modes)
    rule(not (q.enabled and q.activations == "dynamic" and "int8" in ex.qat_quantization),
         "export.qat_quantization", "no 'int8' when qat.activations is 'dynamic' (no "
         "activation ranges are learned; export 'dynamic')", ex.qat_quantization)
    n = config.model.num_classes
    rule(not ex.labels or (len(ex.labels) == n and len(set(ex.labels)) == n
                           and all(x.strip() for x in ex.labels)),
         "export.labels", f"[] or {n} distinct non-empty names", ex.labels)
    if ex.metadata:
        import importlib.util

        rule(importlib.util.find_spec("mediapipe") is not None, "export.metadata",
             "null or false when mediapipe is not installed (pip install mediapipe)",
             ex.metadata)


def export_jobs(trained: dict[str, bool], section: ExportConfig) -> list[tuple[str, str]]:
    """``(stage, mode)`` pairs to export from `trained` (stage -> its model is float, in
    order): `quantization` for the last float model, `baseline_quantization` for the
    fine-tuned one when a later float stage changed it, `qat_quantization` for QAT's."""
    floats = [s for s, is_float in trained.items() if is_float]
    last_float = floats[-1] if floats else None
    jobs = []
    if last_float not in (None, "finetune") and "finetune" in trained:
        jobs += [("finetune", mode) for mode in section.baseline_quantization]
    if last_float is not None:
        jobs += [(last_float, mode) for mode in section.quantization]
    if "qat" in trained:
        jobs += [("qat", mode) for mode in section.qat_quantization]
    return jobs


def metadata_arguments(model: Any, metadata: bool | None, labels: list[str],
                       num_classes: int) -> dict[str, Any]:
    """``metadata``/``labels`` keywords of `to_tflite`; `metadata` None: ``"auto"`` (on when
    mediapipe is installed, the tokenizer is uncased and the file has one signature)."""
    if metadata is False:
        return {"metadata": False}
    if labels:  # before any export work: the wrong count is bad input, not a failed export
        from keras_bertopt.export.metadata import check_labels

        check_labels(labels, num_classes)
    return {"metadata": "auto" if metadata is None else True,
            "labels": list(labels) or [str(i) for i in range(num_classes)]}


def export_model(model: Any, path: str, mode: str, **kwargs: Any) -> Any:
    """`to_tflite(model, path, quantization=mode, **kwargs)`, logged in one line; the report."""
    from keras_bertopt import export
    from keras_bertopt.recipe.report import format_number

    report = export.to_tflite(model, path, quantization=mode, **kwargs)
    log.info(
        f"export {path}: {report.size_bytes / 1e6:.3f} MB, {report.int8_ops} int8 / "
        f"{report.hybrid_ops} hybrid / {report.float_ops} float ops, label agreement "
        f"{format_number(report.label_agreement)}, max |logit diff| "
        f"{format_number(report.max_abs_logit_diff, '.3g')}, {report.seconds:.1f} s"
        + (f", MediaPipe label agreement {format_number(report.mediapipe_agreement)}"
           if report.metadata else ", no MediaPipe metadata")
    )
    return report


def run(ctx: StageContext) -> dict[str, Any]:
    """Export every job, each file checked against its Keras model."""
    ex: ExportConfig = ctx.section
    data = ctx.data
    texts, _ = data.eval_examples(data.held_out_split() or "train")
    sample = texts[:64] if isinstance(texts, list) else None
    exports = []
    for stage, mode in export_jobs(ctx.trained, ex):
        name = f"{stage}_{'float32' if mode == 'none' else mode}.tflite"
        path = ctx.paths("export", name)
        model = ctx.models.load(stage)
        representative = data.representative_data(ex.representative_batches)
        report = export_model(
            model, path, mode, sample_data=sample,
            representative_data=representative if mode == "int8" else None,
            **metadata_arguments(model, ex.metadata, ex.labels, ctx.config.model.num_classes),
        )
        exports.append({
            "name": name[: -len(".tflite")], "stage": stage, "quantization": mode,
            "quantize_aware": bool(report.quantize_aware),
            "file": ctx.paths.relative(path), "size_bytes": report.size_bytes,
            "gzip_bytes": report.gzip_bytes, "seconds": report.seconds,
            "latency_ms": report.latency_ms, "export_report": report.to_dict(),
        })
    return {"files": exports}
