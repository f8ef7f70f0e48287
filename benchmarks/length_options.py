"""Which real-length layout to export: one dynamic-length signature, length buckets, or fixed 128.

MiniLM-L6 (all-MiniLM-L6-v2, untrained head: latency does not depend on the
weights' values), float32 and dynamic-range, converted three ways with the
same `keras.export.ExportArchive` + `tf.lite.TFLiteConverter` path `to_tflite`
uses: one signature of shape [1, None]; four signatures [1, 16/32/64/128] in one
file; one signature [1, 128]. Batch-1 median latency (30 runs, one thread) at
lengths 16/32/64/128 through each file's signature runner, plus file size;
for the dynamic file also alternating lengths (the resize cost).

    flock /tmp/kbo_bench.lock python benchmarks/length_options.py

About 8 minutes. Writes benchmarks/results/length_options.json. The first run
(2026-12-02 11:25, machine load ~10 on 2 cores) chose `to_tflite`'s default:
length buckets (static shapes XNNPack accepts; the dynamic-length graph has
dynamic-sized tensors and runs without XNNPack, ~3x slower).
"""
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from common import minilm_dir, write_result  # noqa: E402

from keras_bertopt.models import build_classifier  # noqa: E402

model = build_classifier(minilm_dir(), 2, 128)
NAMES = ("token_ids", "segment_ids", "padding_mask")


def serve(token_ids, segment_ids, padding_mask):
    return {"logits": model({"token_ids": token_ids, "segment_ids": segment_ids,
                             "padding_mask": tf.cast(padding_mask, tf.bool)}, training=False)}


def convert(endpoints, quant):
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, length in endpoints:
        spec = [tf.TensorSpec([1, length], tf.int32, name=n) for n in NAMES]
        archive.add_endpoint(name, serve, input_signature=spec)
    folder = tempfile.mkdtemp()
    archive.write_out(folder, verbose=False)
    conv = tf.lite.TFLiteConverter.from_saved_model(folder,
                                                    signature_keys=[n for n, _ in endpoints])
    if quant == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    t = time.time()
    b = conv.convert()
    print("convert", endpoints, quant, time.time() - t, len(b), flush=True)
    shutil.rmtree(folder)
    return b


def feed(length):
    rng = np.random.default_rng(0)
    return {"token_ids": rng.integers(1000, 20000, (1, length)).astype(np.int32),
            "segment_ids": np.zeros((1, length), np.int32),
            "padding_mask": np.ones((1, length), np.int32)}


def time_runner(runner, length, runs=30):
    f = feed(length)
    for _ in range(3):
        runner(**f)
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        runner(**f)
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


def time_alternating(runner, lengths, runs=30):
    ts = []
    fs = [feed(length) for length in lengths]
    for f in fs:
        runner(**f)
    for i in range(runs):
        f = fs[i % len(fs)]
        t = time.perf_counter()
        runner(**f)
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


res = {}
for quant in ["none", "dynamic"]:
    b = convert([("serving_default", None)], quant)
    r = Interpreter(model_content=b, num_threads=1).get_signature_runner("serving_default")
    res[f"dyn_{quant}"] = {"size": len(b), **{str(n): time_runner(r, n) for n in (16, 32, 64, 128)},
                           "alternating_16_32_64_128_mean_of_medians":
                               time_alternating(r, [16, 32, 64, 128], 40)}
    res[f"dyn_{quant}"]["alternating_20_to_30"] = time_alternating(r, list(range(20, 31)), 44)
    print(res, flush=True)
    b = convert([(f"len_{n}", n) for n in (16, 32, 64, 128)], quant)
    it = Interpreter(model_content=b, num_threads=1)
    res[f"buckets_{quant}"] = {"size": len(b), **{
        str(n): time_runner(it.get_signature_runner(f"len_{n}"), n) for n in (16, 32, 64, 128)}}
    print(res, flush=True)
    b = convert([("serving_default", 128)], quant)
    it = Interpreter(model_content=b, num_threads=1)
    res[f"fixed128_{quant}"] = {
        "size": len(b), "128": time_runner(it.get_signature_runner("serving_default"), 128)}
    print(res, flush=True)
write_result("length_options", {"results_ms_and_bytes": res})
