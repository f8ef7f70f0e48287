"""examples/train_mirrored.py, reduced: two logical CPU replicas, one short epoch."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_train_mirrored_example_runs_on_two_cpu_replicas(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    env.pop("TF_CONFIG", None)
    proc = subprocess.run(
        [
            sys.executable, os.path.join(ROOT, "examples", "train_mirrored.py"),
            "--cpu-replicas", "2", "--epochs", "1", "--train-size", "96",
            "--batch-size", "16", "--sparsity", "0.5", "--output", str(tmp_path),
        ],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "MirroredStrategy with 2 replica(s); global batch 16 = 2 replica(s) x 8" in proc.stdout
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert summary["replicas"] == 2 and summary["per_replica_batch_size"] == 8
    assert summary["sparsity"] == pytest.approx(0.5, abs=0.01)
    for key in ("examples_per_second", "tokens_per_second", "learning_rate", "val_f1", "val_mcc"):
        assert key in summary, key
    assert summary["tokens_per_second"] > 0
    assert (tmp_path / "log.csv").exists()
    saved = json.loads((tmp_path / "confusion_matrix.json").read_text())
    assert sum(map(sum, saved["matrix"])) == 256  # the whole demo validation split
