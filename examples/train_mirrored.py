"""Fine-tune a BERT classifier on several devices with tf.distribute and the metrics callbacks.

On a multi-GPU box (one replica per GPU):

    python examples/train_mirrored.py --strategy mirrored --epochs 2

On a CPU-only machine, split the CPU into logical devices to try the same code:

    python examples/train_mirrored.py --cpu-replicas 2 --epochs 1

On a Cloud TPU VM: ``--strategy tpu --tpu local``. Batch sizes are global; the
per-replica size is printed. Uses the tiny built-in BERT and demo data unless
``--model DIR`` (a Hugging Face BERT checkpoint directory) is given.
"""

import argparse
import json
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--strategy", default="mirrored",
                        choices=["auto", "cpu", "mirrored", "multi_worker", "tpu"])
    parser.add_argument("--cpu-replicas", type=int, default=0,
                        help="split the CPU into N logical devices and mirror over them")
    parser.add_argument("--tpu", default=None, help="TPU name, or 'local' on a TPU VM")
    parser.add_argument("--model", default=None, help="HF BERT checkpoint dir (default: tiny)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32, help="global batch size")
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--sequence-length", type=int, default=32)
    parser.add_argument("--sparsity", type=float, default=0.0, help="prune to this sparsity")
    parser.add_argument("--output", default=None, help="folder for logs and confusion matrix")
    args = parser.parse_args(argv)

    devices = None
    if args.cpu_replicas:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.cpu_replicas
        )
        devices = [f"/cpu:{i}" for i in range(args.cpu_replicas)]

    import keras

    import keras_bertopt as kb

    strategy = kb.distribute.get_strategy(
        args.strategy, tpu=args.tpu, devices=devices if args.strategy == "mirrored" else None
    )
    sizes = kb.distribute.batch_sizes(args.batch_size, strategy)
    print(kb.distribute.describe(strategy, args.batch_size))

    train = kb.data.demo_dataset("train", sizes.global_batch_size, size=args.train_size)
    steps = int(train.cardinality()) * args.epochs
    with strategy.scope():
        source = args.model or kb.models.TinyConfig()
        model = kb.models.build_classifier(source, 2, sequence_length=args.sequence_length)
        model.compile(
            optimizer=kb.optimizers.create_optimizer(
                1e-3 if args.model is None else 5e-5, total_steps=steps, warmup_ratio=0.1
            ),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )

    throughput = kb.callbacks.Throughput(warmup_steps=2)
    callbacks = [
        throughput,
        kb.callbacks.LearningRateLogger(),
        kb.callbacks.SparsityLogger(),
        kb.callbacks.ValidationMetrics(
            kb.data.demo_dataset("validation", sizes.global_batch_size),
            output_dir=args.output,
        ),
    ]
    if args.sparsity > 0:
        callbacks.insert(0, kb.pruning.MagnitudePruning(
            kb.pruning.PolynomialSparsity(0.0, args.sparsity, begin_step=0,
                                          end_step=max(steps // 2, 1), frequency=1)))
    if args.output:
        callbacks.append(keras.callbacks.CSVLogger(os.path.join(args.output, "log.csv")))
    history = model.fit(throughput.count_tokens(train, model), epochs=args.epochs,
                        callbacks=callbacks, verbose=2)
    summary = {
        "strategy": type(strategy).__name__,
        "replicas": sizes.num_replicas,
        "global_batch_size": sizes.global_batch_size,
        "per_replica_batch_size": sizes.per_replica_batch_size,
        **{k: v[-1] for k, v in history.history.items()},
    }
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
