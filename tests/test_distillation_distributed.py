"""Distillation under tf.distribute.MirroredStrategy on two logical CPUs.

One SGD step on the same global batch must move the student exactly as on one
device: the losses are scaled per replica like Keras's own, so the gradients
summed over the two replicas are those of the global mean.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

CODE = textwrap.dedent(
    """
    import json
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    import keras_bertopt as kb
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

    strategy = kb.distribute.get_strategy("mirrored")
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
    print("RESULT " + json.dumps({
        "replicas": strategy.num_replicas_in_sync, "differ": differ, "diff": diff,
        "moved": moved, "teacher_same": teacher_same,
        "loss": history.history["loss"][0], "single_loss": single_history.history["loss"][0],
    }))
    """
)


@pytest.mark.slow
def test_distiller_under_mirrored_strategy_matches_one_device():
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    assert result["replicas"] == 2
    assert result["differ"] == []  # both replicas hold the same student
    assert result["teacher_same"]
    assert result["moved"] > 1e-3  # the step did change the student...
    assert result["diff"] < 1e-4 * max(1.0, result["moved"]) + 1e-5  # ...as on one device
    assert abs(result["loss"] - result["single_loss"]) < 1e-4 * abs(result["single_loss"]) + 1e-5
