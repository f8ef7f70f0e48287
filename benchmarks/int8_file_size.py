"""Size of the int8 TFLite file with default arguments vs float32 (MiniLM, SST-2 fine-tune).

What a new user does: ``qat = quantize_aware(model)``, a short QAT fit, then
``to_tflite(qat, path, quantization="int8")``, all with default arguments;
compared with ``to_tflite(model, path)`` (float32) of the same model. Also the
same int8 export with the embedding tables kept float
(``QuantizationConfig(quantize_embeddings=False)``), to show what that costs.
File size does not depend on how long QAT trains: the QAT fit here is a few
steps, only so the activation ranges are those of real data.

Budget: the cached 200-step fine-tune (`common.finetuned_minilm`), 8 QAT steps
of batch 32 per QAT model, three exports verified on 32 dev sentences.

    flock /tmp/kbo_bench.lock python benchmarks/int8_file_size.py
"""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import finetuned_minilm, sst2_dataset, sst2_examples, write_result  # noqa: E402

QAT_STEPS = 8


def main() -> str:
    import keras

    from keras_bertopt.export import to_tflite
    from keras_bertopt.quantization import QuantizationConfig, quantize_aware

    model = finetuned_minilm()
    texts, _ = sst2_examples("dev", limit=32)
    folder = tempfile.mkdtemp(prefix="int8_file_size_")
    reports = {}

    def export(name: str, source, quantization: str) -> None:
        path = os.path.join(folder, f"{name}.tflite")
        report = to_tflite(source, path, quantization, sample_data=texts, latency_runs=0)
        reports[name] = report
        print(f"{name}: {report.size_bytes} bytes, gzip {report.gzip_bytes}, "
              f"label agreement {report.label_agreement}", flush=True)

    export("float32", model, "none")
    for name, config in (("int8_default", None), ("int8_float_tables",
                         QuantizationConfig(quantize_embeddings=False))):
        qat = quantize_aware(model) if config is None else quantize_aware(model, config)
        qat.compile(optimizer=keras.optimizers.AdamW(2e-5),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        qat.fit(sst2_dataset("train", batch_size=32).take(QAT_STEPS), epochs=1, verbose=0)
        export(name, qat, "int8")

    base = reports["float32"]
    result = {"qat_steps": QAT_STEPS, "files": {}}
    for name, report in reports.items():
        result["files"][name] = {
            "size_bytes": report.size_bytes,
            "gzip_bytes": report.gzip_bytes,
            "size_vs_float32": report.size_bytes / base.size_bytes,
            "gzip_vs_float32": report.gzip_bytes / base.gzip_bytes,
            "label_agreement": report.label_agreement,
        }
    print("| file | bytes | x float32 | gzip x float32 | labels = Keras |")
    print("| --- | --- | --- | --- | --- |")
    for name, row in result["files"].items():
        print(f"| {name} | {row['size_bytes']} | {row['size_vs_float32']:.3f} | "
              f"{row['gzip_vs_float32']:.3f} | {row['label_agreement']} |")
    return write_result("int8_file_size", result)


if __name__ == "__main__":
    main()
