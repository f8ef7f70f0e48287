"""Fine-tune the tiny built-in BERT on the built-in demo data and print its accuracy.

Runs offline in well under a minute on 2 CPU cores:

    python examples/quickstart.py --epochs 2
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)

    import keras

    import keras_bertopt as kb

    model = kb.models.build_classifier(kb.models.TinyConfig(), num_classes=2, sequence_length=32)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(kb.data.demo_dataset("train", args.batch_size), epochs=args.epochs, verbose=2)
    _, accuracy = model.evaluate(kb.data.demo_dataset("validation"), verbose=0)
    print(f"demo validation accuracy: {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    main()
