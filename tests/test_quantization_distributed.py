"""QAT under tf.distribute.MirroredStrategy: every replica ends with the same ranges."""

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
    from keras_bertopt.quantization import quantize_aware

    strategy = kb.distribute.get_strategy("mirrored")
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
    print("RESULT " + json.dumps({"replicas": strategy.num_replicas_in_sync, "differ": differ,
                                   "moved": moved, "ranges": len(before),
                                   "step": qat.qat_step}))
    """
)


@pytest.mark.slow
def test_qat_fit_under_mirrored_strategy_keeps_replicas_identical():
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    assert result["replicas"] == 2
    assert result["differ"] == []  # ranges, step and weights agree on both replicas
    assert result["ranges"] > 0 and result["moved"] == result["ranges"]  # ranges were trained
    assert result["step"] == 96 // 16
