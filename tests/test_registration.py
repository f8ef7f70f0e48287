"""Saved models holding the package's Keras objects load after plain `import keras_bertopt`."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LOAD = """
import importlib.util, json, sys
import keras_bertopt
importlib.util.find_spec("keras")  # a probe for Keras must not use up the hook
import keras_hub  # imports Keras inside its own import
import keras
assert "keras_bertopt.pruning" not in sys.modules  # nothing registered before the load
out = {}
for name, path in json.loads(sys.argv[1]).items():
    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    logits = model.predict(["a good film", "bad and boring"], verbose=0)
    out[name] = {"type": type(model).__name__, "backbone": type(model.backbone).__name__,
                 "logits": [[float(x) for x in row] for row in logits]}
print("RESULT " + json.dumps(out))
"""


@pytest.mark.slow  # builds three models, loads them in a fresh process (~25 s CPU)
def test_qat_pruned_and_structured_files_load_after_plain_import(tmp_path, tiny_classifier):
    from keras_bertopt import pruning, quantization

    texts = ["a good film", "bad and boring"]
    models = {}
    masked = tiny_classifier
    keeper = pruning.MagnitudePruning(schedule=pruning.ConstantSparsity(0.5, frequency=10**9))
    keeper.set_model(masked)
    keeper.update_masks(0.5)  # masks and their state layer stay in the saved file
    models["pruned"] = masked
    models["structured"] = pruning.prune_structure(masked, heads=0.5, importance="magnitude")
    models["qat"] = quantization.quantize_aware(models["structured"])
    paths, expected = {}, {}
    for name, model in models.items():
        paths[name] = str(tmp_path / f"{name}.keras")
        model.save(paths[name])
        expected[name] = np.asarray(model.predict(texts, verbose=0))
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-c", LOAD, json.dumps(paths)], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    loaded = json.loads(line[len("RESULT "):])
    assert loaded["qat"]["type"] == "QuantizeAwareTextClassifier"
    assert loaded["structured"]["backbone"] == "PrunedBertBackbone"
    for name in models:
        np.testing.assert_allclose(loaded[name]["logits"], expected[name], atol=1e-5)
