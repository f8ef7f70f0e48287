"""Every example under examples/ runs in a reduced form somewhere in tests/, so none can rot.

This file covers the recipe examples (examples/*.yaml, full_recipe_minilm.py); the
component examples are run by their components' test files (listed below).
"""

import glob
import os
import re
import sys

import pytest

from keras_bertopt import recipe

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples")


def test_every_example_script_is_run_by_a_test():
    tests = {}
    for path in glob.glob(os.path.join(REPO, "tests", "test_*.py")):
        with open(path, encoding="utf-8") as f:
            tests[os.path.basename(path)] = f.read()
    missing = []
    for path in sorted(glob.glob(os.path.join(EXAMPLES, "*.py"))):
        name = os.path.basename(path)
        # Tests run an example as a file ("name.py") or import it ("import name").
        pattern = re.compile(rf"{re.escape(name)}|import {re.escape(name[:-3])}\b")
        if not any(pattern.search(text) for text in tests.values()):
            missing.append(name)
    assert not missing, f"examples with no test running them: {missing}"


def test_every_config_example_is_valid():
    configs = sorted(glob.glob(os.path.join(EXAMPLES, "*.yaml")))
    assert {os.path.basename(c) for c in configs} >= {"demo.yaml", "minilm_sst2.yaml"}
    for path in configs:
        # Validates keys, types and files (MiniLM package, SST-2 TSVs) without training.
        config = recipe.load_config(path)
        assert config.prune.enabled and config.qat.enabled and config.export.enabled


def _write_tsv(path, split, size):
    from keras_bertopt.data import demo_examples

    texts, labels = demo_examples(split, size)
    with open(path, "w", encoding="utf-8") as f:
        f.write("label\tsentence\n")
        for text, label in zip(texts, labels, strict=True):
            f.write(f"{label}\t{text}\n")
    return str(path)


@pytest.mark.slow
def test_full_recipe_minilm_example_reduced(tmp_path, capsys):
    """examples/full_recipe_minilm.py with its real config, reduced: tiny model, TSV files
    the test writes (the built-in demo data), a few steps per stage."""
    sys.path.insert(0, EXAMPLES)
    try:
        import full_recipe_minilm
    finally:
        sys.path.remove(EXAMPLES)
    train = _write_tsv(tmp_path / "train.tsv", "train", 512)
    dev = _write_tsv(tmp_path / "dev.tsv", "validation", 64)
    out = str(tmp_path / "run")
    report = full_recipe_minilm.main([
        "--output", out, "--verbose", "0",
        "--set", "model.source=tiny",
        "--set", "model.sequence_length=16",
        "--set", "model.tiny={num_layers: 1, hidden_dim: 16, intermediate_dim: 32}",
        "--set", f"data.train={train}",
        "--set", f"data.validation={dev}",
        "--set", "data.batch_size=16",
        "--set", "finetune.steps_per_epoch=6",
        "--set", "finetune.optimizer.peak_learning_rate=3e-3",
        "--set", "prune.steps_per_epoch=4",
        "--set", "prune.frequency=1",
        "--set", "qat.steps_per_epoch=2",
        "--set", "export.quantization=[dynamic]",
    ])
    assert report["completed"] == ["finetune", "prune", "qat", "export", "evaluate"]
    names = [e["name"] for e in report["exports"]]
    assert names == ["finetune_float32", "prune_dynamic", "qat_int8"]
    assert report["size_baseline"] == "finetune_float32"
    assert report["exports"][0]["gzip_vs_float32_gzip"] == 1.0
    for entry in report["exports"]:
        assert os.path.isfile(os.path.join(out, entry["file"]))
        assert entry["metrics"]["validation"]["examples"] == 64
    assert report["config"]["data"]["train"] == train
    printed = capsys.readouterr().out
    assert "qat tflite int8" in printed and "report.md" in printed
