"""Do keras_bertopt's training parts keep plain-`fit` speed? Ratios measured side by side.

For the backend and device present (JAX on a GPU/TPU, or this CPU with either backend):
steady-state examples/s of `fit` on a random-init keras-hub BERT classifier
(``preprocessor=None``, int32 token ids whose real lengths follow SST-2's WordPiece
histogram, padded to 64) with each part, over plain `fit` of the same model and batch:

  plain            keras.Model.fit (the reference)
  throughput       + keras_bertopt.callbacks.Throughput
  noop_batch_end   + a callback with an empty on_train_batch_end (what any per-batch hook
                   costs: Keras stops dispatching asynchronously)
  magnitude        + MagnitudePruning, PolynomialSparsity 0 -> 0.8, frequency 10
  magnitude_masks  + MagnitudePruning after its schedule (masks applied, never recomputed)
  structured       + StructuredPruning, heads and neurons 0 -> 0.5, frequency 10
  qat              quantize_aware(model)
  distill          Distiller, live teacher of the shape -> shrink(teacher, half the layers);
                   its ratio is to `distill_student`, plain fit of that student

Every fit goes through `keras.Model.fit` on a generator of NumPy batches (no tf.data, so it
runs where TensorFlow is absent). Timing: one warm-up fit (compilation), then `--reps`
rounds; in each, every configuration in turn runs a fit of `--short` and one of `--steps`
steps: step time = (sum long - sum short) / (reps * (steps - short)), which cancels the
fixed cost of a `fit` call; rounds interleave the configurations so load drift hits all.

Usage (JSON to benchmarks/results/accelerator_<backend>_<shape>.json, and to --out):

  KERAS_BACKEND=jax python benchmarks/accelerator.py --shape minilm --batches 32,256
  KERAS_BACKEND=jax python benchmarks/accelerator.py --smoke     # tiny shapes: a CPU check
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from common import write_result  # noqa: E402

SHAPES = {
    "tiny": dict(vocabulary_size=512, num_layers=2, num_heads=2, hidden_dim=64,
                 intermediate_dim=128),
    "minilm": dict(vocabulary_size=30522, num_layers=6, num_heads=12, hidden_dim=384,
                   intermediate_dim=1536),
    "base": dict(vocabulary_size=30522, num_layers=12, num_heads=12, hidden_dim=768,
                 intermediate_dim=3072),
}
WIDTH = 64
# SST-2 train token lengths (all-MiniLM-L6-v2 WordPiece, [CLS]/[SEP] included), in bins:
# (upper length, share). Mean 13.3, p50 10, p90 27, p99 44.
LENGTH_BINS = ((6, 0.18), (10, 0.33), (16, 0.21), (24, 0.14), (32, 0.08), (48, 0.05),
               (64, 0.01))
CONFIGS = ("plain", "throughput", "noop_batch_end", "magnitude", "magnitude_masks",
           "structured", "qat", "distill_student", "distill")


def batches(batch, count, vocab, seed=0):
    """`count` (x, y) batches of token ids padded to WIDTH."""
    rng = np.random.default_rng(seed)
    uppers = np.array([u for u, _ in LENGTH_BINS])
    shares = np.array([s for _, s in LENGTH_BINS])
    out = []
    for _ in range(count):
        bins = rng.choice(len(uppers), size=batch, p=shares / shares.sum())
        lower = np.concatenate([[3], uppers[:-1] + 1])[bins]
        lengths = rng.integers(lower, uppers[bins] + 1)
        mask = (np.arange(WIDTH)[None, :] < lengths[:, None]).astype("int32")
        ids = rng.integers(5, vocab, size=(batch, WIDTH)).astype("int32") * mask
        x = {"token_ids": ids, "padding_mask": mask,
             "segment_ids": np.zeros((batch, WIDTH), "int32")}
        out.append((x, rng.integers(0, 2, size=(batch,)).astype("int32")))
    return out


def classifier(shape, seed=0):
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(max_sequence_length=512, dropout=0.1,
                                             **SHAPES[shape])
    return keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=None)


def compiled(model, lr=1e-4):
    import keras

    model.compile(optimizer=keras.optimizers.AdamW(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class NoopBatchEnd:
    """Built lazily (keras imported after the backend is set)."""

    def __new__(cls):
        import keras

        class _Noop(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                pass

        return _Noop()


def build(name, shape):
    """(model, callbacks) for configuration `name`."""
    import keras_bertopt as kb
    from keras_bertopt.pruning import (
        ConstantSparsity,
        MagnitudePruning,
        PolynomialSparsity,
        StructuredPruning,
    )

    layers = SHAPES[shape]["num_layers"]
    if name in ("distill", "distill_student"):
        from keras_bertopt.distillation import Distiller, shrink

        teacher = classifier(shape, seed=1)
        student = shrink(teacher, num_layers=max(1, layers // 2))
        if name == "distill_student":
            return compiled(student), []
        distiller = Distiller(teacher, student, temperature=2.0, alpha=0.5)
        return compiled(distiller), []
    model = classifier(shape)
    if name == "qat":
        return compiled(kb.quantization.quantize_aware(model)), []
    callbacks = {
        "plain": [],
        "throughput": lambda: [kb.callbacks.Throughput(warmup_steps=1, verbose=0)],
        "noop_batch_end": lambda: [NoopBatchEnd()],
        "magnitude": lambda: [MagnitudePruning(PolynomialSparsity(0.0, 0.8, 0, 10_000,
                                                                  frequency=10))],
        "magnitude_masks": lambda: [MagnitudePruning(ConstantSparsity(0.5, begin_step=0,
                                                                      end_step=1, frequency=1))],
        "structured": lambda: [StructuredPruning(PolynomialSparsity(0.0, 0.5, 0, 10_000,
                                                                    frequency=10))],
    }[name]
    return compiled(model), (callbacks() if callable(callbacks) else callbacks)


def fit(model, data, steps, callbacks):
    import keras

    def gen():
        i = 0
        while True:
            yield data[i % len(data)]
            i += 1

    t = time.perf_counter()
    keras.Model.fit(model, gen(), steps_per_epoch=steps, epochs=1, verbose=0,
                    callbacks=list(callbacks))
    return time.perf_counter() - t


def measure(names, shape, batch, args):
    """Examples/s of each configuration, rounds interleaved."""
    vocab = SHAPES[shape]["vocabulary_size"]
    data = batches(batch, max(args.steps, 8), vocab)
    runs = {}
    for name in names:
        t0 = time.perf_counter()
        model, callbacks = build(name, shape)
        fit(model, data, 2, callbacks)  # compile; magnitude_masks: its one mask update
        runs[name] = {"model": model, "callbacks": callbacks, "short": 0.0, "long": 0.0,
                      "warmup_s": time.perf_counter() - t0}
    for _ in range(args.reps):
        for name in names:
            r = runs[name]
            r["short"] += fit(r["model"], data, args.short, r["callbacks"])
            r["long"] += fit(r["model"], data, args.steps, r["callbacks"])
    out = {}
    for name in names:
        r = runs[name]
        step = (r["long"] - r["short"]) / (args.reps * (args.steps - args.short))
        out[name] = {"warmup_s": r["warmup_s"]}
        if step <= 0:  # noise larger than the difference (too few steps): the plain rate
            step = r["long"] / (args.reps * args.steps)
            out[name]["note"] = "long - short <= 0; long-fit rate used"
        out[name].update(examples_per_second=batch / step, step_ms=step * 1e3)
    for name in names:
        ref = "distill_student" if name == "distill" else "plain"
        if ref in out:
            out[name]["ratio"] = out[name]["examples_per_second"] / out[ref][
                "examples_per_second"]
    return out


def device_info():
    import keras

    info = {"backend": keras.backend.backend()}
    if info["backend"] == "jax":
        import jax

        info.update(jax_version=jax.__version__, device=str(jax.devices()[0].device_kind),
                    device_count=jax.device_count())
    else:
        info["device"] = "cpu"
    return info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="minilm", choices=sorted(SHAPES))
    ap.add_argument("--batches", default="32,256", help="comma list of batch sizes")
    ap.add_argument("--steps", type=int, default=40, help="steps of the long fit")
    ap.add_argument("--short", type=int, default=8, help="steps of the short fit")
    ap.add_argument("--reps", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--only", default=None, help="comma list of configurations")
    ap.add_argument("--out", default=None, help="also copy the JSON into this folder")
    ap.add_argument("--smoke", action="store_true", help="tiny shape, few steps (CPU check)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.shape, args.batches, args.steps, args.short, args.reps = "tiny", "8", 4, 2, 1
    if not 0 < args.short < args.steps:
        ap.error("--short must be > 0 and < --steps")
    names = [n for n in CONFIGS if args.only is None or n in args.only.split(",")]
    if "distill" in names and "distill_student" not in names:
        names.insert(names.index("distill"), "distill_student")
    if "plain" not in names:
        names.insert(0, "plain")
    started = time.time()
    results = {}
    for batch in (int(b) for b in args.batches.split(",")):
        results[f"batch_{batch}"] = res = measure(names, args.shape, batch, args)
        for name, r in res.items():
            print(f"{args.shape} b{batch} {name:16s} {r['examples_per_second']:10.1f} ex/s "
                  f"ratio {r.get('ratio', float('nan')):.3f}", flush=True)
    info = device_info()
    payload = {
        "model": f"random-init keras-hub BertTextClassifier, {args.shape} shape "
                 f"{SHAPES[args.shape]}, token ids padded to {WIDTH}, SST-2-like lengths",
        "budget": {"steps": args.steps, "short": args.short, "reps": args.reps},
        "command": "python benchmarks/accelerator.py " + " ".join(argv or sys.argv[1:]),
        "hours": round((time.time() - started) / 3600, 4),
        **info, "results": results,
    }
    stem = f"accelerator_{info['backend']}_{args.shape}" + ("_smoke" if args.smoke else "")
    path = write_result(stem, payload)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        shutil.copy(path, args.out)
    return payload


if __name__ == "__main__":
    main()
