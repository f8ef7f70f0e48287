"""Fine-tune the tiny built-in BERT briefly, export it to TFLite and classify raw text.

Offline, about a minute on 2 CPU cores:

    python examples/export_tflite.py --output /tmp/tflite --modes none dynamic int8

Each export prints its report: file size, int8 vs float ops, agreement with
the Keras model on held-out sentences, batch-1 latency.
"""

import argparse
import os
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default=None, help="folder for the .tflite files")
    parser.add_argument("--steps", type=int, default=64, help="training steps (batch 32)")
    parser.add_argument("--modes", nargs="+", default=["none", "dynamic", "int8"],
                        choices=["none", "float16", "dynamic", "int8"])
    args = parser.parse_args(argv)

    import keras

    import keras_bertopt as kb

    model = kb.models.build_classifier(kb.models.TinyConfig(), num_classes=2, sequence_length=32)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(kb.data.demo_dataset("train", 32).repeat().take(args.steps), verbose=0)

    output = args.output or tempfile.mkdtemp(prefix="keras_bertopt_tflite_")
    texts, _ = kb.data.demo_examples("validation", 64)
    reports = {}
    for mode in args.modes:
        reports[mode] = kb.export.to_tflite(
            model,
            os.path.join(output, f"model_{'float32' if mode == 'none' else mode}.tflite"),
            quantization=mode,
            # Calibration data for post-training int8: (text, label) batches are fine.
            representative_data=kb.data.demo_dataset("train", 32, size=256) if mode == "int8"
            else None,
            sample_data=texts,  # held-out sentences for the Keras-vs-TFLite check
        )
        print(reports[mode], "\n")

    last = reports[args.modes[-1]].path
    runner = kb.export.TFLiteClassifier(last, model.preprocessor)
    sentences = ["a wonderful and moving film", "the plot was dull and the acting awful"]
    labels = runner.predict(sentences)["labels"].tolist()
    print(os.path.basename(last), dict(zip(sentences, labels, strict=True)))
    accuracy = runner.evaluate(kb.data.demo_dataset("validation"))["accuracy"]
    print(f"{os.path.basename(last)} demo validation accuracy: {accuracy:.4f}")
    return reports


if __name__ == "__main__":
    main()
