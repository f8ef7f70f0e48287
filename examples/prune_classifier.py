"""Prune the tiny built-in BERT to 80% sparsity while fine-tuning it on the demo data.

Gradual magnitude pruning of the transformer kernels inside `model.fit`, then
`strip_pruning` and a sparsity report. Runs offline on 2 CPU cores in about a
minute:

    python examples/prune_classifier.py --epochs 3 --sparsity 0.8
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sparsity", type=float, default=0.8)
    parser.add_argument("--pattern", default="unstructured", help="unstructured | block | 2:4")
    args = parser.parse_args(argv)

    import keras

    import keras_bertopt as kb

    model = kb.models.build_classifier(kb.models.TinyConfig(), num_classes=2, sequence_length=32)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    total_steps = args.epochs * args.steps_per_epoch
    pruning = kb.pruning.MagnitudePruning(
        schedule=kb.pruning.PolynomialSparsity(
            initial_sparsity=0.0,
            final_sparsity=args.sparsity,
            begin_step=total_steps // 4,  # train dense a little first
            end_step=max(total_steps * 3 // 4, total_steps // 4 + 1),  # then recover
            frequency=max(1, total_steps // 16),
        ),
        include=r"transformer_layer_\d+/.*kernel$",
        pattern=args.pattern,
    )
    train = kb.data.demo_dataset("train", args.batch_size).repeat()
    history = model.fit(
        train,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        callbacks=[pruning],
        verbose=2,
    )
    model = kb.pruning.strip_pruning(model)
    report = kb.pruning.sparsity_report(model, include=r"transformer_layer_\d+/.*kernel$")
    print(report)
    _, accuracy = model.evaluate(kb.data.demo_dataset("validation"), verbose=0)
    print(f"demo validation accuracy at {report.sparsity:.0%} kernel sparsity: {accuracy:.4f}")
    return {"accuracy": accuracy, "sparsity": report.sparsity, "history": history.history}


if __name__ == "__main__":
    main()
