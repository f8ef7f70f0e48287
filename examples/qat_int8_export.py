"""Quantization-aware training of a BERT classifier, then a real int8 TFLite file.

Fine-tunes the tiny built-in BERT in float, wraps it with
`keras_bertopt.quantization.quantize_aware`, trains a little more with 8-bit
fake quantization (`model.fit` on raw strings), saves the QAT model as
`.keras`, exports int8 TFLite from the learned ranges (no calibration data)
and classifies raw text with the file. Offline, about two minutes on 2 cores:

    python examples/qat_int8_export.py --output /tmp/qat

With a real checkpoint: build the float model with
`keras_bertopt.models.build_classifier(HF_DIR, 2, sequence_length)` instead.
"""

import argparse
import os
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default=None, help="folder for qat.keras and the .tflite")
    parser.add_argument("--float-steps", type=int, default=64, help="float training steps")
    parser.add_argument("--qat-steps", type=int, default=64, help="QAT training steps")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--exclude", default=None,
                        help="regex of kernel paths kept float, e.g. '^logits/'")
    args = parser.parse_args(argv)

    import keras

    import keras_bertopt as kb

    output = args.output or tempfile.mkdtemp(prefix="qat_int8_")
    os.makedirs(output, exist_ok=True)
    train = kb.data.demo_dataset("train", args.batch_size).repeat()
    validation = kb.data.demo_dataset("validation", 64)

    # 1. A float model fine-tuned as usual.
    model = kb.models.build_classifier(kb.models.TinyConfig(), num_classes=2, sequence_length=32)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(train, epochs=1, steps_per_epoch=args.float_steps, verbose=2)
    _, float_accuracy = model.evaluate(validation, verbose=0)

    # 2. QAT: same weights, Dense/EinsumDense layers fake-quantized to 8 bits.
    config = kb.quantization.QuantizationConfig(exclude=args.exclude)
    qat = kb.quantization.quantize_aware(model, config)
    qat.compile(
        optimizer=keras.optimizers.AdamW(3e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    qat.fit(train, epochs=1, steps_per_epoch=args.qat_steps, verbose=2)
    _, qat_accuracy = qat.evaluate(validation, verbose=0)
    keras_path = os.path.join(output, "qat.keras")
    qat.save(keras_path)  # reloads with keras.saving.load_model (ranges and step included)

    # 3. int8 TFLite from the learned ranges, verified against the Keras model.
    texts, labels = kb.data.demo_examples("validation")
    tflite_path = os.path.join(output, "qat_int8.tflite")
    report = kb.export.to_tflite(qat, tflite_path, quantization="int8", sample_data=texts,
                                 num_samples=len(texts), latency_runs=5)
    print(report)

    # 4. Raw strings through the preprocessor and the file.
    runner = kb.export.TFLiteClassifier(tflite_path, qat.preprocessor)
    tflite_accuracy = runner.evaluate(texts, labels)["accuracy"]
    print(runner.predict(["a wonderful warm film", "a dull and boring mess"])["labels"])
    print(f"validation accuracy: float Keras {float_accuracy:.4f}, QAT Keras "
          f"{qat_accuracy:.4f}, int8 TFLite {tflite_accuracy:.4f}")
    print(f"quantized layers ({len(qat.quantized_paths)}): {qat.quantized_paths}")
    return {
        "float_accuracy": float_accuracy,
        "qat_accuracy": qat_accuracy,
        "tflite_accuracy": tflite_accuracy,
        "report": report,
        "quantized_paths": qat.quantized_paths,
        "keras_path": keras_path,
        "tflite_path": tflite_path,
    }


if __name__ == "__main__":
    main()
