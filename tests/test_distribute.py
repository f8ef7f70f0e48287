"""keras_bertopt.distribute: strategy selection, batch sizes, and real distributed fits.

Distributed runs happen in fresh subprocesses (logical devices and collective ops
must be configured before TensorFlow starts), each bounded by a timeout and
killed on failure. The two-replica MirroredStrategy checks share one process, in
tests/test_mirrored.py.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
ENV.pop("TF_CONFIG", None)
# Environment variables that announce a TPU (Colab, GKE, Cloud TPU VMs).
TPU_HINTS = (
    "TPU_NAME", "COLAB_TPU_ADDR", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS", "TPU_ACCELERATOR_TYPE"
)


def _run(code, timeout, env=None):
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env=env or ENV, timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def _result(stdout):
    line = [x for x in stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_argument_errors_and_batch_sizes(monkeypatch):
    from keras_bertopt import distribute

    with pytest.raises(ValueError, match="`kind` must be one of"):
        distribute.get_strategy("gpu")
    with pytest.raises(ValueError, match="`devices` applies to kind='mirrored'"):
        distribute.get_strategy("cpu", devices=["/cpu:0"])
    with pytest.raises(ValueError, match="`devices` must be a list"):
        distribute.get_strategy("mirrored", devices="/gpu:0")
    with pytest.raises(ValueError, match="`communication`"):
        distribute.get_strategy("multi_worker", communication="mpi")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG environment variable"):
        distribute.get_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG must be JSON"):
        distribute.get_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1"]},
                                                 "task": {"type": "worker", "index": 3}}))
    with pytest.raises(ValueError, match="does not name a member"):
        distribute.get_strategy("multi_worker")

    import tensorflow as tf

    cpu = distribute.get_strategy("cpu")
    assert isinstance(cpu, tf.distribute.OneDeviceStrategy)
    sizes = distribute.batch_sizes(32, cpu)
    assert (sizes.global_batch_size, sizes.per_replica_batch_size, sizes.num_replicas) == (
        32, 32, 1)
    mirrored = distribute.get_strategy("mirrored", devices=["/cpu:0"])
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert "1 replica(s)" in distribute.describe(mirrored, 8)
    with pytest.raises(ValueError, match="global_batch_size"):
        distribute.batch_sizes(0)

    class Two:
        num_replicas_in_sync = 2

    assert distribute.batch_sizes(64, Two()).per_replica_batch_size == 32
    with pytest.raises(ValueError, match="multiple of the 2 replicas"):
        distribute.batch_sizes(33, Two())


def test_tpu_without_a_tpu_names_what_it_tried():
    out = _run(
        """
        import json
        from keras_bertopt.distribute import TPUNotFoundError, get_strategy
        messages = []
        for kwargs in ({}, {"tpu": "local"}):
            try:
                get_strategy("tpu", **kwargs)
            except TPUNotFoundError as err:
                messages.append(str(err))
        import tensorflow as tf
        strategy = get_strategy("auto")
        print("RESULT " + json.dumps({
            "messages": messages,
            "auto_mirrored": isinstance(strategy, tf.distribute.MirroredStrategy),
            "auto_default": strategy is tf.distribute.get_strategy(),
            "auto_replicas": strategy.num_replicas_in_sync,
            "gpus": len(tf.config.list_logical_devices("GPU")),
        }))
        """,
        timeout=300,
        # No TPU hints in the environment: "auto" then depends on the GPUs alone.
        env={k: v for k, v in ENV.items() if k not in TPU_HINTS},
    )
    result = _result(out)
    default, local = result["messages"]
    assert "TPUClusterResolver(tpu=None, zone=None, project=None)" in default
    assert "tpu='local'" in default  # tells the user what to pass on a TPU VM
    assert "TPUClusterResolver(tpu='local'" in local
    assert "initialize_tpu_system" in local
    # "auto" without a TPU: MirroredStrategy over every GPU when there are several,
    # else TensorFlow's default strategy (one replica).
    if result["gpus"] > 1:
        assert result["auto_mirrored"] and result["auto_replicas"] == result["gpus"]
    else:
        assert result["auto_default"] and result["auto_replicas"] == 1


WORKER = """
import json, sys
import keras_bertopt as kb
# Created first: collective ops must be configured before TensorFlow starts work.
strategy = kb.distribute.get_strategy("multi_worker", communication="ring")
import keras
import numpy as np
from keras_bertopt.callbacks import LearningRateLogger, Throughput
with strategy.scope():
    model = kb.models.build_classifier(
        kb.models.TinyConfig(dropout=0.0, seed=0), 2, sequence_length=32, dropout=0.0)
    model.compile(optimizer=keras.optimizers.AdamW(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
start = {v.path.replace("/", "__"): keras.ops.convert_to_numpy(v) for v in model.weights}
train = kb.data.demo_dataset("train", 16, size=48, shuffle=False)
history = model.fit(train, epochs=1, verbose=0,
                    callbacks=[Throughput(warmup_steps=1, verbose=0), LearningRateLogger()])
np.savez(sys.argv[1], **{v.path.replace("/", "__"): keras.ops.convert_to_numpy(v)
                         for v in model.weights})
np.savez(sys.argv[1].replace(".npz", "_start.npz"), **start)
print("RESULT " + json.dumps({"replicas": strategy.num_replicas_in_sync,
                              "loss": history.history["loss"]}), flush=True)
"""


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.mark.slow
def test_multi_worker_two_processes_end_with_identical_weights(tmp_path):
    import numpy as np

    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    cluster = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    procs, logs = [], []
    deadline = time.monotonic() + 480
    try:
        for index in range(2):
            tf_config = {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}
            env = dict(ENV, TF_CONFIG=json.dumps(tf_config))
            out, err = tmp_path / f"out{index}.txt", tmp_path / f"err{index}.txt"
            logs.append((out, err))
            with open(out, "w") as fo, open(err, "w") as fe:
                procs.append(subprocess.Popen(
                    [sys.executable, str(script), str(tmp_path / f"w{index}.npz")],
                    env=env, stdout=fo, stderr=fe,
                ))
        # Wait for both; if one fails, the other would wait for it forever: stop it.
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.5)
    finally:
        for p in procs:  # bounded: never leave a worker behind
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    for p, (_, err) in zip(procs, logs, strict=True):
        assert p.returncode == 0, err.read_text()[-4000:]
    outputs = [out.read_text() for out, _ in logs]
    results = [_result(out) for out in outputs]
    assert [r["replicas"] for r in results] == [2, 2]
    assert results[0]["loss"] == results[1]["loss"]
    first, second = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert sorted(first.files) == sorted(second.files) and len(first.files) > 30
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    # Identical seeds give identical weights even without training: they must also have moved.
    start = np.load(tmp_path / "w0_start.npz")
    assert sorted(start.files) == sorted(first.files)
    moved = [n for n in first.files if not np.array_equal(first[n], start[n])]
    assert "logits__kernel" in moved and len(moved) > 0.5 * len(first.files)
