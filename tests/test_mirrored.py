"""Every two-replica MirroredStrategy check in one process (two logical CPUs).

Logical devices must be configured before TensorFlow starts, so the checks run in one fresh
subprocess, started once for this file (`mirrored_results`), each check apart from the
others in its own part of the script; the tests below read their part of its RESULT line.
All parts share one `MirroredStrategy` over the two devices: two strategies over the same
devices in one process draw the same collective instance keys, and their all-reduces clash.
Grappler is off in it, and the one-device runs trace their first step once, as in the
test processes (tests/_processes.py; under the strategy Keras builds before tracing itself).

- ``fit``: tiny BERT + LR schedule + MagnitudePruning + every metrics callback on raw
  strings, mirrored against one device.
- ``distiller``: one SGD step of `Distiller` (logits + hidden states) on the same global
  batch moves the student exactly as on one device: the losses are scaled per replica like
  Keras's own, so the gradients summed over the two replicas are those of the global mean.
- ``qat``: QAT under the strategy: every replica ends with the same trained ranges.
- ``bucketed``: a length-bucketed fit with dynamic padding (two shapes) matches one device.
- ``pruning``: `MagnitudePruning` keeps the same masks on both replicas, zeros where they say.
- ``optimizer``: `create_optimizer`'s weight-decay exclusion and per-layer rates run inside
  tf.distribute's update and give one device's weights.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from _processes import TEST_PROCESS_SETTINGS

PRELUDE = """
import json, time
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
import keras_bertopt as kb
RESULTS = {}
"""

FIT = """
from keras_bertopt.callbacks import (
    LearningRateLogger, SparsityLogger, Throughput, ValidationMetrics)
from keras_bertopt.pruning import MagnitudePruning, PolynomialSparsity

strategy = kb.distribute.get_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2

# The fix itself: reducing boolean per-replica values (what Keras does with the
# preprocessor's padding_mask) works and stays boolean.
flags = strategy.experimental_distribute_values_from_function(
    lambda ctx: tf.constant([True, False]) if ctx.replica_id_in_sync_group == 0
    else tf.constant([False, False]))
reduced = strategy.reduce("MEAN", {"mask": flags, "n": strategy.run(lambda: tf.constant(2))},
                          axis=None)
assert reduced["mask"].dtype == tf.bool and reduced["mask"].numpy().tolist() == [True, False]

def build(scope_strategy):
    with scope_strategy.scope():
        model = kb.models.build_classifier(
            kb.models.TinyConfig(dropout=0.0, seed=0), 2, sequence_length=32, dropout=0.0)
        schedule = kb.schedules.create(
            "linear", peak_learning_rate=3e-3, total_steps=8, warmup_steps=2)
        model.compile(optimizer=keras.optimizers.AdamW(schedule),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    return model

def fit(model):
    throughput = Throughput(warmup_steps=1, verbose=0)
    callbacks = [
        MagnitudePruning(PolynomialSparsity(0.0, 0.5, begin_step=1, end_step=6, frequency=2)),
        throughput, LearningRateLogger(), SparsityLogger(),
        ValidationMetrics(kb.data.demo_dataset("validation", 16, size=32)),
    ]
    train = kb.data.demo_dataset("train", 16, size=64, shuffle=False)
    history = model.fit(throughput.count_tokens(train, model), epochs=2, verbose=0,
                        callbacks=callbacks)
    return history.history, throughput

def weights(model):
    out = {}
    for v in model.weights:
        copies = getattr(v.value, "values", None)
        if copies is not None:  # every replica holds the same value
            for c in copies[1:]:
                assert np.array_equal(copies[0].numpy(), c.numpy()), v.path
        out[v.path] = keras.ops.convert_to_numpy(v)
    return out

single = build(tf.distribute.get_strategy())
initial = {v.path: keras.ops.convert_to_numpy(v) for v in single.trainable_weights}
single_history, _ = fit(single)
mirrored = build(strategy)
mirrored_history, throughput = fit(mirrored)
w1, w2 = weights(single), weights(mirrored)
assert set(w1) == set(w2), set(w1) ^ set(w2)
moved = max(float(np.max(np.abs(w1[k] - initial[k]))) for k in initial)
# A tf.data dataset of raw strings built by hand, on the same mirrored model.
texts, labels = kb.data.demo_examples("train", 32)
raw = tf.data.Dataset.from_tensor_slices((texts, labels)).batch(16)
raw_loss = mirrored.fit(raw, epochs=1, verbose=0).history["loss"]
RESULTS["fit"] = {
    "single": single_history, "mirrored": mirrored_history, "raw_loss": raw_loss,
    "max_weight_diff": max(float(np.max(np.abs(w1[k] - w2[k]))) for k in w1),
    "weights_moved": moved,
    "zeros_differ": sum(int(np.sum((w1[k] == 0) != (w2[k] == 0))) for k in w1),
    "mirrored_tokens": [r["tokens"] for r in throughput.epoch_rates],
    "real_tokens": int(np.sum(keras.ops.convert_to_numpy(
        mirrored.preprocessor(np.array(kb.data.demo_examples("train", 64)[0]))["padding_mask"]))),
    "first_batch_tokens": int(np.sum(keras.ops.convert_to_numpy(mirrored.preprocessor(
        np.array(kb.data.demo_examples("train", 64)[0][:16]))["padding_mask"]))),
    "batch": str(kb.distribute.batch_sizes(16, strategy)),
}
"""

DISTILLER = """
def distiller_check():
    from keras_bertopt.distillation import Distiller, shrink

    texts, labels = kb.data.demo_examples("train", 32)
    data = kb.data.from_examples(texts, labels, 32)

    def build():
        teacher = kb.models.build_classifier(
            kb.models.TinyConfig(num_layers=2, dropout=0.0, seed=3), 2, 32, dropout=0.0)
        student = shrink(teacher, num_layers=1)
        student.get_layer("logits").kernel.assign(
            np.random.default_rng(0).normal(size=(32, 2)).astype("float32"))
        distiller = Distiller(teacher, student, temperature=2.0, alpha=0.5,
                              hidden_weight=1.0, layer_map=[1])
        distiller.compile(optimizer=keras.optimizers.SGD(0.5))
        return teacher, distiller

    with strategy.scope():
        teacher, mirrored = build()
    before = [np.array(v) for v in teacher.weights]
    history = mirrored.fit(data, epochs=1, verbose=0)
    _, single = build()
    single_history = single.fit(data, epochs=1, verbose=0)

    differ = []
    for v in mirrored.student.weights:
        copies = [np.asarray(x) for x in v.value.values]
        if not all(np.array_equal(copies[0], c) for c in copies[1:]):
            differ.append(v.path)
    diff = max(float(np.max(np.abs(np.asarray(a.value.values[0]) - np.asarray(b))))
               for a, b in zip(mirrored.student.weights, single.student.weights))
    moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for a, b in zip(single.student.weights, build()[1].student.weights))
    teacher_same = all(np.array_equal(a, np.asarray(v.value.values[0]))
                       for a, v in zip(before, teacher.weights))
    return {"replicas": strategy.num_replicas_in_sync, "differ": differ, "diff": diff,
            "moved": moved, "teacher_same": teacher_same,
            "loss": history.history["loss"][0],
            "single_loss": single_history.history["loss"][0]}

RESULTS["distiller"] = distiller_check()
"""

QAT = """
def qat_check():
    from keras_bertopt.quantization import quantize_aware

    with strategy.scope():
        model = kb.models.build_classifier(
            kb.models.TinyConfig(dropout=0.0), 2, sequence_length=32, dropout=0.0)
        qat = quantize_aware(model)
        qat.compile(optimizer=keras.optimizers.Adam(1e-3),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = {v.path: np.asarray(v) for v in qat.weights if v.path.endswith("input_max")}
    qat.fit(kb.data.demo_dataset("train", 16, size=96, shuffle=False), epochs=1, verbose=0)
    differ, moved = [], 0
    for v in qat.weights:
        copies = [np.asarray(x) for x in v.value.values]
        if not all(np.array_equal(copies[0], c) for c in copies[1:]):
            differ.append(v.path)
        if v.path in before and not np.array_equal(before[v.path], copies[0]):
            moved += 1
    return {"replicas": strategy.num_replicas_in_sync, "differ": differ, "moved": moved,
            "ranges": len(before), "step": qat.qat_step}

RESULTS["qat"] = qat_check()
"""

BUCKETED = """
def bucketed_check():
    texts, labels = kb.data.demo_examples("train", 96)

    def run(scope_strategy):
        with scope_strategy.scope():
            model = kb.models.build_classifier(
                kb.models.TinyConfig(dropout=0.0, seed=0), 2, sequence_length=32, dropout=0.0)
            kb.data.dynamic_padding(model, bounds=(8, 16))
            model.compile(optimizer=keras.optimizers.AdamW(3e-3),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        # Full batches only: Keras averages each replica's mean loss, so a short batch
        # split unevenly (3 + 2) would weight examples differently than one device does.
        train = kb.data.bucket_by_length((texts, labels), model.preprocessor, 16,
                                         bounds=(8, 16), shuffle=False, drop_remainder=True)
        history = model.fit(train, epochs=1, verbose=0)
        return model, history.history["loss"], kb.data.padding_report(train, model).to_dict()

    keras.utils.set_random_seed(0)
    single, loss1, report = run(tf.distribute.get_strategy())
    keras.utils.set_random_seed(0)
    mirrored, loss2, _ = run(strategy)
    diff = max(float(np.max(np.abs(keras.ops.convert_to_numpy(a)
                                   - keras.ops.convert_to_numpy(b))))
               for a, b in zip(single.weights, mirrored.weights))
    return {"diff": diff, "loss": [loss1, loss2], "report": report}

RESULTS["bucketed"] = bucketed_check()
"""

PRUNING = """
def pruning_check():
    from keras_bertopt.pruning import MagnitudePruning, PolynomialSparsity, get_state

    with strategy.scope():
        model = kb.models.build_classifier(kb.models.TinyConfig(), 2, sequence_length=32)
        model.compile(optimizer=keras.optimizers.Adam(1e-2),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pre = model.preprocessor

    def prep(x, y):
        x = pre(x)
        x["padding_mask"] = tf.cast(x["padding_mask"], "int32")
        return x, y

    data = kb.data.demo_dataset("train", batch_size=16, size=128).map(prep)
    model.preprocessor = None
    pruning = MagnitudePruning(PolynomialSparsity(0.0, 0.5, 1, 5, frequency=2),
                               include=r"transformer_layer_\\d+/.*kernel$")
    model.fit(data, epochs=1, callbacks=[pruning], verbose=0)
    state = get_state(model)
    out = {"step": int(state.step.numpy()), "kernels": 0, "copies": [], "masks_differ": 0,
           "wrong_zero_count": 0, "masked_nonzero": 0, "replica_diff": 0.0}
    for mask, var in zip(state.masks, pruning.variables):
        copies = [t.numpy() for t in mask.value.values]
        weights = [t.numpy() for t in var.value.values]
        out["kernels"] += 1
        out["copies"].append([len(copies), len(weights)])
        out["masks_differ"] += int(not np.array_equal(copies[0], copies[1]))
        out["wrong_zero_count"] += int(round(0.5 * copies[0].size) != int((copies[0] == 0).sum()))
        out["masked_nonzero"] += sum(int(np.sum(w[copies[0] == 0] != 0)) for w in weights)
        out["replica_diff"] = max(out["replica_diff"],
                                  float(np.max(np.abs(weights[0] - weights[1]))))
    return out

RESULTS["pruning"] = pruning_check()
"""

OPTIMIZER = """
def optimizer_check():
    from keras_bertopt import optimizers

    texts = np.array(["the movie was good", "the plot was bad and dull", "great fun",
                      "not good"] * 4)
    labels = np.array([1, 0, 1, 0] * 4)

    def run(scope_strategy):
        with scope_strategy.scope():
            model = kb.models.build_classifier(
                kb.models.TinyConfig(dropout=0.0), 2, sequence_length=16, dropout=0.0)
            start = {v.path: keras.ops.convert_to_numpy(v) for v in model.trainable_weights}
            opt = optimizers.create_optimizer(1e-2, 10, warmup_steps=0, weight_decay=0.5,
                                              layerwise_lr_decay=0.5, model=model)
            model.compile(optimizer=opt,
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(texts, labels, batch_size=8, epochs=1, verbose=0, shuffle=False)
        end = {v.path: keras.ops.convert_to_numpy(v) for v in model.trainable_weights}
        return start, end

    s0, s1 = run(tf.distribute.get_strategy())
    m0, m1 = run(strategy)
    return {"same_start": all(np.array_equal(s0[k], m0[k]) for k in s0),
            "max_diff": max(float(np.max(np.abs(s1[k] - m1[k]))) for k in s1),
            "moved": {k: float(np.max(np.abs(s1[k] - s0[k]))) for k in s0}}

RESULTS["optimizer"] = optimizer_check()
print("RESULT " + json.dumps(RESULTS))
"""


@pytest.fixture(scope="module")
def mirrored_results():
    """The RESULT line of the one two-replica process: {"fit", "distiller", "qat",
    "bucketed", "pruning", "optimizer"}."""
    parts = (PRELUDE, FIT, DISTILLER, QAT, BUCKETED, PRUNING, OPTIMIZER)
    code = TEST_PROCESS_SETTINGS + "".join(textwrap.dedent(part) for part in parts)
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


@pytest.mark.slow
def test_mirrored_two_cpu_replicas_match_a_single_device_run(mirrored_results):
    """Tiny BERT + LR schedule + MagnitudePruning + all metrics callbacks on raw strings.

    Tolerance: weights within 1e-5 (absolute) of the single-device run after 8
    AdamW steps (same data order, same seed, dropout 0); the two runs differ
    only in float summation order (per-replica gradients are all-reduced).
    """
    result = mirrored_results["fit"]
    single, mirrored = result["single"], result["mirrored"]
    assert result["weights_moved"] > 1e-3  # training really changed the weights
    assert result["max_weight_diff"] < 1e-5, result["max_weight_diff"]
    assert result["zeros_differ"] == 0  # identical pruning masks
    for key in ("loss", "learning_rate", "sparsity", "val_accuracy", "val_f1", "val_mcc"):
        assert mirrored[key] == pytest.approx(single[key], rel=1e-4, abs=1e-6), key
    assert mirrored["sparsity"][-1] == pytest.approx(0.5, abs=0.01)
    assert result["mirrored_tokens"][1] == result["real_tokens"]  # epoch 2: every batch
    # epoch 1: all but the skipped warm-up batch, although Keras read (and threw away)
    # batches from an extra iterator to build the model under the strategy.
    assert result["mirrored_tokens"][0] == result["real_tokens"] - result["first_batch_tokens"]
    assert result["batch"] == "global batch 16 = 2 replica(s) x 8"
    assert len(result["raw_loss"]) == 1 and result["raw_loss"][0] > 0


@pytest.mark.slow
def test_distiller_under_mirrored_strategy_matches_one_device(mirrored_results):
    result = mirrored_results["distiller"]
    assert result["replicas"] == 2
    assert result["differ"] == []  # both replicas hold the same student
    assert result["teacher_same"]
    assert result["moved"] > 1e-3  # the step did change the student...
    assert result["diff"] < 1e-4 * max(1.0, result["moved"]) + 1e-5  # ...as on one device
    assert abs(result["loss"] - result["single_loss"]) < 1e-4 * abs(result["single_loss"]) + 1e-5


@pytest.mark.slow
def test_qat_fit_under_mirrored_strategy_keeps_replicas_identical(mirrored_results):
    result = mirrored_results["qat"]
    assert result["replicas"] == 2
    assert result["differ"] == []  # ranges, step and weights agree on both replicas
    assert result["ranges"] > 0 and result["moved"] == result["ranges"]  # ranges were trained
    assert result["step"] == 96 // 16


@pytest.mark.slow
def test_bucketed_fit_under_mirrored_strategy_matches_one_device(mirrored_results):
    """Global batch 16 split over 2 CPU replicas, dynamic padding, dropout 0.

    Tolerance: weights within 1e-5 of the single-device run (float summation order).
    """
    result = mirrored_results["bucketed"]
    assert len(result["report"]["distinct_lengths"]) >= 2  # more than one shape was trained
    assert result["loss"][1] == pytest.approx(result["loss"][0], rel=1e-4)
    assert result["diff"] < 1e-5, result["diff"]


@pytest.mark.slow
def test_magnitude_pruning_keeps_identical_masks_on_both_replicas(mirrored_results):
    result = mirrored_results["pruning"]
    assert result["step"] == 128 // 16
    assert result["kernels"] == 12  # 6 kernels in each of the 2 transformer layers
    assert result["copies"] == [[2, 2]] * 12  # one mask and one kernel per replica
    assert result["masks_differ"] == 0
    assert result["wrong_zero_count"] == 0  # each mask is half zeros (target 0.5)
    assert result["masked_nonzero"] == 0  # every replica's kernel is zero where its mask is
    assert result["replica_diff"] < 1e-6


@pytest.mark.slow
def test_layerwise_decay_optimizer_under_mirrored_strategy_matches_single_device(
        mirrored_results):
    """Weight-decay exclusion and per-variable rates inside tf.distribute's update: two
    replicas vs one device, same seed and data, 2 steps: weights agree to float summation
    order."""
    result = mirrored_results["optimizer"]
    assert result["same_start"]
    assert result["max_diff"] < 1e-5, result["max_diff"]
    # Every variable moved except the attention key biases, whose gradient is exactly zero
    # (softmax does not change when the same number is added to every score of a row).
    still = {k for k, d in result["moved"].items() if d < 1e-6}
    assert still <= {k for k in result["moved"] if k.endswith("key/bias")}, sorted(still)
    assert max(result["moved"].values()) > 1e-3
