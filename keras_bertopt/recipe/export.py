"""Stage ``export``: TFLite files (`keras_bertopt.export.to_tflite`) of the trained models."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keras_bertopt.recipe.runner import Recipe


def export_jobs(recipe: Recipe) -> list[tuple[str, str]]:
    """``(stage, mode)`` pairs to export: `export.quantization` for the last float model,
    `export.baseline_quantization` for the fine-tuned one when a later float stage changed it,
    `export.qat_quantization` for the QAT model."""
    ex = recipe.config.export
    done = recipe.state["completed"]
    jobs = []
    float_stage = recipe.last_model_stage("export", float_only=True)
    if float_stage not in (None, "finetune") and "finetune" in done:
        jobs += [("finetune", mode) for mode in ex.baseline_quantization]
    if float_stage is not None:
        jobs += [(float_stage, mode) for mode in ex.quantization]
    if "qat" in done:
        jobs += [("qat", mode) for mode in ex.qat_quantization]
    return jobs


def metadata_arguments(recipe: Recipe, model: Any) -> dict[str, Any]:
    """``metadata``/``labels`` for `to_tflite`: `export.metadata` (null: on when possible)."""
    ex = recipe.config.export
    labels = list(ex.labels) or [str(i) for i in range(recipe.config.model.num_classes)]
    if ex.metadata is False:
        return {}
    if ex.metadata is None:
        import importlib.util

        tokenizer = getattr(getattr(model, "preprocessor", None), "tokenizer", None)
        if importlib.util.find_spec("mediapipe") is None or not getattr(
                tokenizer, "lowercase", False):
            recipe.log("[keras-bertopt]   export: no MediaPipe metadata (mediapipe not "
                       "installed or a cased tokenizer); set export.metadata to require it")
            return {}
    return {"metadata": True, "labels": labels}


def run(recipe: Recipe) -> dict[str, Any]:
    """Export, check each file against its Keras model, log one line per file."""
    from keras_bertopt import export
    from keras_bertopt.report import format_number

    texts, _ = recipe.data.eval_examples(recipe.data.held_out_split() or "train")
    sample = texts[:64] if isinstance(texts, list) else None
    exports = []
    for stage, mode in export_jobs(recipe):
        name = f"{stage}_{'float32' if mode == 'none' else mode}.tflite"
        path = recipe.path("export", name)
        model = recipe.load_model(stage)
        report = export.to_tflite(
            model,
            path,
            quantization=mode,
            representative_data=recipe.data.representative_data() if mode == "int8" else None,
            sample_data=sample,
            **metadata_arguments(recipe, model),
        )
        exports.append({
            "name": name[: -len(".tflite")], "stage": stage, "quantization": mode,
            "quantize_aware": bool(report.quantize_aware),
            "file": os.path.relpath(path, recipe.out), "size_bytes": report.size_bytes,
            "gzip_bytes": report.gzip_bytes, "seconds": report.seconds,
            "latency_ms": report.latency_ms, "export_report": report.to_dict(),
        })
        recipe.log(
            f"[keras-bertopt]   export {name}: {report.size_bytes / 1e6:.3f} MB, "
            f"{report.int8_ops} int8 / {report.hybrid_ops} hybrid / {report.float_ops} float "
            f"ops, label agreement {format_number(report.label_agreement)}, max |logit diff| "
            f"{format_number(report.max_abs_logit_diff, '.3g')}, {report.seconds:.1f} s"
            + (f", MediaPipe label agreement {format_number(report.mediapipe_agreement)}"
               if report.metadata else "")
        )
    return {"files": exports}
