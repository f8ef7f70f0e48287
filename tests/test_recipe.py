"""The recipe: config loading and strict validation, output-dir rules, the report, the stages."""

import json
import os

import pytest
from _processes import PROCESS_PRELUDE

from keras_bertopt import recipe, report
from keras_bertopt.recipe.state import open_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- config


def test_defaults_and_demo_yaml_match_demo_config():
    assert recipe.load_config(os.path.join(REPO, "examples", "demo.yaml")) == recipe.demo_config()
    cfg = recipe.load_config({})
    assert cfg.model.source == "tiny" and cfg.prune.enabled and cfg.qat.enabled
    assert cfg.finetune.optimizer.clipnorm == 1.0


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"finetune": {"epoch": 1}}, "key 'finetune.epoch' (did you mean 'epochs'?)"),
        ({"fintune": {}}, "unknown config key 'fintune' (did you mean 'finetune'?)"),
        ({"finetune": {"optimizer": {"kind": "sgd"}}}, "'finetune.optimizer.kind'"),
        ({"finetune": {"epochs": "2"}}, "'finetune.epochs': expected an integer, got str"),
        ({"finetune": {"epochs": 2.0}}, "'finetune.epochs': expected an integer"),
        ({"prune": {"enabled": 1}}, "'prune.enabled': expected true or false"),
        ({"prune": {"target_sparsity": "half"}}, "'prune.target_sparsity': expected a number"),
        ({"prune": {"target_sparsity": 1.0}},
         "'prune.target_sparsity': expected a number in (0, 1)"),
        ({"prune": {"pattern": "block"}}, "'prune.block_shape'"),
        ({"prune": {"block_shape": [1, 4]}}, "'prune.block_shape': expected null unless"),
        ({"prune": {"pattern": "n:m", "n": 4, "m": 4}}, "'prune.n'"),
        ({"prune": {"begin_step": 10, "end_step": 5}}, "'prune.end_step'"),
        ({"prune": {"include": "(("}}, "'prune.include'"),
        ({"prune": {"include": [1]}}, "'prune.include'"),
        ({"export": {"quantization": ["int4"]}}, "'export.quantization[0]': expected one of"),
        ({"export": {"quantization": "int8"}}, "'export.quantization': expected a list"),
        ({"export": {"quantization": ["int8", "int8"]}}, "'export.quantization': expected no rep"),
        ({"export": {"labels": ["good"]}}, "'export.labels': expected [] or 2 distinct"),
        ({"export": {"labels": ["a", "a"]}}, "'export.labels': expected [] or 2 distinct"),
        ({"export": {"metadata": "yes"}}, "'export.metadata'"),
        ({"qat": {"activations": "runtime"}}, "'qat.activations': expected one of"),
        ({"qat": {"activations": "dynamic"}}, "'export.qat_quantization': expected no 'int8'"),
        ({"evaluate": {"splits": ["dev"]}}, "'evaluate.splits[0]'"),
        ({"model": {"num_classes": 1}}, "'model.num_classes'"),
        ({"model": {"tiny": {"hidden_dim": 30, "num_heads": 4}}}, "'model.tiny.hidden_dim'"),
        ({"model": {"tiny": {"layers": 2}}}, "unknown config key 'model.tiny.layers'"),
        ({"model": "tiny"}, "'model': expected a mapping, got str 'tiny'"),
        ({"data": {"source": "files"}}, "'data.train'"),
        ({"data": {"source": "tfds"}}, "'data.name'"),
        ({"data": {"train": "x.tsv"}}, "'data.train': expected not set when data.source is 'demo'"),
        ({"data": {"batch_size": 0}}, "'data.batch_size'"),
        ({"finetune": {"regularization": {"l1": 0.0}}}, "'finetune.regularization'"),
        ({"finetune": {"optimizer": {"clipnorm": True}}}, "'finetune.optimizer.clipnorm'"),
        ({"strategy": "gpu"}, "'strategy'"),
        ({"seed": None}, "'seed': expected an integer"),
    ],
)
def test_bad_config_names_the_key(raw, message):
    with pytest.raises(ValueError) as info:
        recipe.load_config(raw)
    assert message in str(info.value)


def test_numbers_and_nested_dataclasses_are_accepted():
    cfg = recipe.load_config(
        {
            "finetune": {"optimizer": {"peak_learning_rate": 1, "clipnorm": None},
                         "regularization": {"l2": 1e-4}},
            "prune": {"pattern": "block", "block_shape": [4, 1]},
        }
    )
    assert cfg.finetune.optimizer.peak_learning_rate == 1.0
    assert isinstance(cfg.finetune.optimizer.peak_learning_rate, float)
    assert cfg.finetune.optimizer.clipnorm is None
    assert cfg.finetune.regularization.l2 == 1e-4
    assert cfg.prune.block_shape == [4, 1]
    again = recipe.load_config(cfg)
    assert again == cfg


def test_files_source_paths_resolve_against_the_config_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.tsv").write_text("label\tsentence\n1\tgood\n0\tbad\n")
    (tmp_path / "data" / "dev.tsv").write_text("label\tsentence\n1\tgood\n")
    config = tmp_path / "c.yaml"
    config.write_text(
        "data: {source: files, train: data/train.tsv, validation: data/dev.tsv}\n"
        "output_dir: out\n"
    )
    cfg = recipe.load_config(str(config))
    assert cfg.data.train == str(tmp_path / "data" / "train.tsv")
    assert cfg.output_dir == str(tmp_path / "out")

    config.write_text("data: {source: files, train: data/missing.tsv}\n")
    with pytest.raises(FileNotFoundError, match="'data.train'.*missing.tsv"):
        recipe.load_config(str(config))
    config.write_text(
        "data: {source: files, train: data/train.tsv}\nevaluate: {splits: [test]}\n"
    )
    with pytest.raises(ValueError, match="'evaluate.splits' asks for 'test' but 'data.test'"):
        recipe.load_config(str(config))


def test_config_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        recipe.load_config(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("finetune: [1, 2\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        recipe.load_config(str(bad))
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    with pytest.raises(ValueError, match="mapping at top level"):
        recipe.load_config(str(listing))
    txt = tmp_path / "c.txt"
    txt.write_text("{}")
    with pytest.raises(ValueError, match=".yaml, .yml or .json"):
        recipe.load_config(str(txt))
    good = tmp_path / "c.json"
    good.write_text(json.dumps({"finetune": {"epochs": 3}}))
    assert recipe.load_config(str(good)).finetune.epochs == 3


def test_overrides_are_validated_like_the_file():
    cfg = recipe.load_config({}, {"finetune.epochs": 1, "prune.target_sparsity": 0.8})
    assert cfg.finetune.epochs == 1 and cfg.prune.target_sparsity == 0.8
    with pytest.raises(ValueError, match="unknown config key 'prune.sparsity'"):
        recipe.load_config({}, {"prune.sparsity": 0.8})


def test_checkpoint_dir_model_source_is_checked(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="'model.source'.*model.safetensors, vocab.txt"):
        recipe.load_config({"model": {"source": str(tmp_path / "ckpt")}})


# ----------------------------------------------------------------------------- output dir


def test_output_dir_is_resumed_or_refused_never_overwritten(tmp_path):
    out = tmp_path / "run"
    cfg = recipe.demo_config(str(out))
    assert open_run(str(out), cfg).completed == []
    state = json.loads((out / "state.json").read_text())
    assert state["completed"] == [] and state["config"]["seed"] == 0
    assert json.loads((out / "config.json").read_text())["prune"]["target_sparsity"] == 0.5

    # Same config (even from another path): resumes with what was completed.
    state["completed"] = ["finetune"]
    (out / "state.json").write_text(json.dumps(state))
    assert open_run(str(out), recipe.demo_config(str(out))).completed == ["finetune"]

    # A different config: refused, naming what differs; nothing is touched.
    before = (out / "state.json").read_text()
    other = recipe.load_config(cfg, {"prune.target_sparsity": 0.8})
    with pytest.raises(FileExistsError, match="prune.target_sparsity"):
        open_run(str(out), other)
    assert (out / "state.json").read_text() == before

    # A folder that is not a recipe run: refused.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="no state.json"):
        recipe.run(recipe.demo_config(), output_dir=str(foreign))
    assert (foreign / "keep.txt").read_text() == "mine"
    assert sorted(os.listdir(foreign)) == ["keep.txt"]


def test_output_dir_is_required():
    with pytest.raises(ValueError, match="`output_dir`"):
        recipe.run(recipe.demo_config())


# ----------------------------------------------------------------------------- metrics


def test_classification_metrics_by_hand():
    labels = [1, 1, 1, 0, 0, 0, 1, 0]
    predicted = [1, 1, 0, 0, 0, 1, 1, 0]
    m = recipe.classification_metrics(labels, predicted, 2)
    # tp=3, fp=1, fn=1 for class 1 -> F1 = 6/8; class 0 the same.
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["f1"] == pytest.approx(0.75) and m["f1_macro"] == pytest.approx(0.75)
    assert m["confusion_matrix"] == [[3, 1], [1, 3]]
    m3 = recipe.classification_metrics([0, 1, 2, 2], [0, 2, 2, 2], 3)
    # class 0: F1 1; class 1: 0; class 2: 2*2/(4+1) = 0.8
    assert m3["f1"] == pytest.approx((1 + 0 + 0.8) / 3)
    with pytest.raises(ValueError, match="equal length"):
        recipe.classification_metrics([1], [1, 0], 2)


# ----------------------------------------------------------------------------- report


def _fake_state():
    """A state shaped like the recipe's (numbers made up: this tests the rendering only)."""
    metrics = {"validation": {"accuracy": 0.9, "f1": 0.89, "examples": 10}}
    return {
        "version": 1,
        "config": {"seed": 0},
        "completed": ["finetune", "prune", "export", "evaluate"],
        "curves": [
            {"stage": "finetune", "step": 1, "loss": 0.7, "accuracy": 0.5},
            {"stage": "finetune", "step": 10, "loss": 0.3, "accuracy": 0.9},
            {"stage": "prune", "step": 1, "loss": 0.35, "accuracy": 0.88},
        ],
        "stages": {
            "finetune": {"seconds": 3.0, "steps": 10, "history": {"loss": [0.3],
                                                                   "val_accuracy": [0.9]}},
            "prune": {"seconds": 2.0, "steps": 5,
                      "sparsity": {"pruned_variables": 0.5, "overall": 0.4}},
            "export": {"seconds": 1.0, "files": []},
            "evaluate": {
                "seconds": 1.0,
                "splits": ["validation"],
                "models": [{"stage": "finetune", "size_bytes": 2_000_000, "gzip_bytes": 1_800_000,
                            "metrics": metrics}],
                "exports": [{"name": "prune_int8", "stage": "prune", "quantization": "int8",
                             "size_bytes": 500_000, "gzip_bytes": 300_000, "metrics": metrics,
                             "agreement_with_keras": {"validation": 0.99},
                             "latency_ms": 1.5,
                             "export_report": {"latency_ms": 1.5, "all_weight_sparsity": 0.5,
                                               "weight_sparsity": 0.6}}],
            },
        },
    }


def test_report_files(tmp_path):
    written = report.write_report(str(tmp_path), _fake_state())
    assert [os.path.basename(p) for p in written] == list(report.REPORT_FILES)
    data = json.loads((tmp_path / "report.json").read_text())
    assert [s["stage"] for s in data["stages"]] == ["finetune", "prune", "export", "evaluate"]
    assert data["stages"][1]["sparsity"] == 0.5
    assert data["exports"][0]["latency_ms"] == 1.5 and data["exports"][0]["sparsity"] == 0.5
    assert data["machine"]["cpu_count"] == os.cpu_count()
    md = (tmp_path / "report.md").read_text()
    row = "| prune | tflite int8 | 0.500 | 0.300 | 0.500 | 0.9000 | 0.8900 | 0.9900 | 1.50 | - |"
    assert row in md  # no float32 file in this state: no size ratio
    assert "| finetune | 3.0 | 10 | 0.3000 | 0.9000 | - |" in md
    png = (tmp_path / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temporary leftovers
    # The timed file adds an accuracy-vs-latency panel; no structured pruning, no heatmap.
    assert report.panels(data) == ["size", "curves", "latency"]


def test_report_plots_head_importance_after_structured_pruning(tmp_path):
    state = _fake_state()
    state["completed"].insert(1, "prune_structure")
    state["stages"]["prune_structure"] = {
        "seconds": 1.0, "importance": {"method": "taylor", "batches": 2,
                                       "heads": [[0.1, 0.9], [0.5]], "intermediate": [[1.0]],
                                       "layers": [0.2, 0.4]}}
    report.write_report(str(tmp_path), state)
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["importance"]["heads"] == [[0.1, 0.9], [0.5]]
    assert report.panels(data) == ["size", "curves", "latency", "importance"]
    png = (tmp_path / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- stages

#: A few-step recipe on a 1-layer tiny BERT: exercises the stage code, not accuracy.
MICRO = {
    "model": {"sequence_length": 16,
              "tiny": {"num_layers": 1, "hidden_dim": 16, "intermediate_dim": 32}},
    "data": {"batch_size": 16, "train_limit": 128, "eval_limit": 32},
    "finetune": {"epochs": 1, "steps_per_epoch": 4},
    "prune": {"steps_per_epoch": 4, "frequency": 1, "target_sparsity": 0.5},
    "qat": {"enabled": False},
    "export": {"enabled": False},
    "evaluate": {"splits": ["validation"]},
}


@pytest.mark.slow
def test_failed_stage_keeps_earlier_ones_and_rerun_resumes(tmp_path, monkeypatch, capsys):
    """`keras-bertopt run CONFIG --output DIR --set k=v` as a user runs it (the CLI's own
    entry point, in this process): a stage that fails exits 1 and keeps the earlier stages;
    the same command again resumes; a finished run trains nothing."""
    import yaml

    from keras_bertopt import cli
    from keras_bertopt.recipe.stages import prune

    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(MICRO))
    out = str(tmp_path / "run")
    # --set overrides the file's 4 fine-tune steps (the state records the steps run).
    args = ["run", str(config), "--output", out, "--set", "finetune.steps_per_epoch=2"]

    def broken(ctx):
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(prune, "run", broken)
    assert cli.main(args) == 1
    printed = capsys.readouterr()
    assert "failed" in printed.err and "stage 'prune' failed: disk full" in printed.err
    assert "prune: FAILED" in printed.out + printed.err
    state = json.loads(open(os.path.join(out, "state.json")).read())
    assert state["completed"] == ["finetune"]
    assert state["stages"]["finetune"]["steps"] == 2
    finetune_bytes = open(os.path.join(out, "finetune", "model.keras"), "rb").read()

    monkeypatch.undo()
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "finetune: already completed" in printed
    assert "prune: done in" in printed and "evaluate: done in" in printed
    # The fine-tuned model was not retrained or rewritten.
    assert open(os.path.join(out, "finetune", "model.keras"), "rb").read() == finetune_bytes
    result = json.loads(open(os.path.join(out, "report.json")).read())
    assert result["completed"] == ["finetune", "prune", "evaluate"]
    prune_row = next(r for r in result["stages"] if r["stage"] == "prune")
    assert prune_row["sparsity"] == pytest.approx(0.5, abs=1e-3)
    pruned = next(m for m in result["models"] if m["stage"] == "prune")
    dense = next(m for m in result["models"] if m["stage"] == "finetune")
    assert pruned["sparsity"] > dense["sparsity"] + 0.1
    assert pruned["metrics"]["validation"]["examples"] == 32
    for name in report.REPORT_FILES:
        assert os.path.getsize(os.path.join(out, name)) > 0
    assert {c["stage"] for c in result["curves"]} == {"finetune", "prune"}

    # Everything done: a third run trains nothing and keeps the results.
    assert cli.main(args) == 0
    assert capsys.readouterr().out.count("already completed") == 3


def test_parse_overrides_reads_yaml_values():
    parsed = recipe.parse_overrides(
        ["finetune.optimizer.peak_learning_rate=3e-3", "export.quantization=[none, int8]",
         "model.source=tiny", "qat.enabled=false", "prune.end_step=null"]
    )
    assert parsed == {"finetune.optimizer.peak_learning_rate": 0.003,
                      "export.quantization": ["none", "int8"], "model.source": "tiny",
                      "qat.enabled": False, "prune.end_step": None}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        recipe.parse_overrides(["finetune.epochs"])
    with pytest.raises(ValueError, match=r"write 1.0e-3"):
        recipe.load_config({"qat": {"learning_rate": "1e-4"}})


MIRRORED_SCRIPT = """
import json, os, sys
os.environ["KERAS_BACKEND"] = "tensorflow"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import logging
from keras_bertopt import recipe
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
config = json.loads(sys.argv[2])
recipe.run(config, output_dir=sys.argv[1], fit_verbose=0)
"""


@pytest.mark.slow
def test_recipe_trains_under_mirrored_strategy_on_two_cpu_devices(tmp_path):
    import subprocess
    import sys

    config = dict(MICRO, strategy="mirrored", prune={"enabled": False})
    out = str(tmp_path / "run")
    result = subprocess.run(
        [sys.executable, "-c", PROCESS_PRELUDE + MIRRORED_SCRIPT, out, json.dumps(config)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "strategy: MirroredStrategy with 2 replica(s)" in result.stdout
    assert "global batch 16 = 2 replica(s) x 8" in result.stdout
    data = json.loads(open(os.path.join(out, "report.json")).read())
    assert data["completed"] == ["finetune", "evaluate"]
    assert data["models"][0]["metrics"]["validation"]["examples"] == 32


@pytest.mark.slow
def test_recipe_trains_on_length_bucketed_batches_by_default(tmp_path):
    import keras
    import keras_hub

    from keras_bertopt.bucketing import DynamicPaddingPreprocessor

    config = dict(MICRO, model=dict(MICRO["model"], sequence_length=64),
                  prune={"enabled": False}, evaluate={"enabled": False})
    padding = {}
    for bucketing in (True, False):
        out = str(tmp_path / f"run_{bucketing}")
        cfg = dict(config, data=dict(MICRO["data"], bucketing=bucketing),
                   finetune=dict(MICRO["finetune"], jit_compile=not bucketing))
        state = recipe.run(cfg, output_dir=out, fit_verbose=0)
        result = json.loads(open(os.path.join(out, "state.json")).read())["stages"]["finetune"]
        padding[bucketing] = result["padding"]
        assert result["jit_compile"] is (not bucketing)
        saved = keras.saving.load_model(os.path.join(out, "finetune", "model.keras"),
                                        safe_mode=True)
        # The saved model keeps its fixed-length preprocessor.
        assert type(saved.preprocessor) is keras_hub.models.BertTextClassifierPreprocessor
        assert not isinstance(saved.preprocessor, DynamicPaddingPreprocessor)
        assert saved.preprocessor.sequence_length == 64
        del state
    assert padding[True]["bucketed"] and not padding[False]["bucketed"]
    assert padding[False]["timed_examples"] == 16 * padding[False]["timed_steps"]
    # Demo sentences are far shorter than 64 tokens: padded to their bucket, most of
    # each batch is real tokens; padded to 64, most of it is padding.
    assert padding[False]["padding_efficiency"] < 0.35
    assert padding[True]["padding_efficiency"] > 2 * padding[False]["padding_efficiency"]


@pytest.mark.slow
def test_unset_sequence_length_is_measured_and_the_stage_step_is_built_before_tracing(
        tmp_path, package_log, monkeypatch):
    import keras

    from keras_bertopt import _compat
    from keras_bertopt.data import demo_examples, length_report
    from keras_bertopt.models import TinyConfig, build_classifier

    config = dict(MICRO, model={"tiny": MICRO["model"]["tiny"]},
                  finetune=dict(MICRO["finetune"], steps_per_epoch=2),
                  prune={"enabled": False}, evaluate={"enabled": False})
    out = str(tmp_path / "run")
    # With Keras's own deferred build before the run, the fine-tune's fit still builds its
    # variables from the dataset's spec first (what `_compat.traced_once` turns on).
    specs = []
    read_spec = _compat._input_spec
    monkeypatch.setattr(_compat, "_input_spec", lambda it: specs.append(1) or read_spec(it))
    _compat.build_before_tracing(enabled=False)
    try:
        recipe.run(config, output_dir=out, fit_verbose=0)
        assert not _compat.builds_before_tracing()  # Keras's own build again after the run
    finally:
        _compat.build_before_tracing()                      # the suite's setting
    assert specs
    lines = package_log.messages
    state = json.loads(open(os.path.join(out, "state.json")).read())
    # What length_report suggests for the same 128 demo training sentences.
    texts, _ = demo_examples("train")
    expected = length_report(texts[:128], build_classifier(TinyConfig(), 2).preprocessor,
                             candidates=(32, 64, 128)).suggest(0.01)
    assert expected == 32 and state["sequence_length"] == expected
    assert any("model.sequence_length unset: 32" in line for line in lines)
    saved = keras.saving.load_model(os.path.join(out, "finetune", "model.keras"))
    assert saved.preprocessor.sequence_length == 32


@pytest.mark.slow
def test_auto_batch_size_is_searched_and_trained_with(tmp_path, package_log):
    config = dict(MICRO, data=dict(MICRO["data"], batch_size="auto", batch_size_limit=16,
                                   bucketing=False),
                  prune={"enabled": False}, evaluate={"enabled": False})
    out = str(tmp_path / "run")
    recipe.run(config, output_dir=out, fit_verbose=0)
    lines = package_log.messages
    state = json.loads(open(os.path.join(out, "state.json")).read())
    search = state["batch_size_search"]
    tried = [t["batch_size"] for t in search["trials"]]
    assert tried == [8, 16]
    rates = {t["batch_size"]: t["tokens_per_second"] for t in search["trials"]}
    assert state["batch_size"] == search["fastest"] == max(rates, key=rates.get)
    padding = state["stages"]["finetune"]["padding"]
    # Every timed step trained on a batch of the chosen size.
    assert padding["timed_steps"] >= 1
    assert padding["timed_examples"] == padding["timed_steps"] * state["batch_size"]
    assert any("data.batch_size auto" in line for line in lines)


def test_recipe_warmup_rounds_like_create_optimizer():
    """warmup_ratio=0.1 over 125 steps: 13 warm-up steps (ceil) in the recipe and in
    `create_optimizer`; a rounding of its own (12) in the recipe would differ."""
    from keras_bertopt import optimizers
    from keras_bertopt._compat import learning_rate_schedule
    from keras_bertopt.recipe.stages import finetune

    cfg = recipe.load_config({"finetune": {"schedule": {"warmup_ratio": 0.1}}})
    ours = learning_rate_schedule(finetune.build_optimizer(cfg.finetune, total_steps=125))
    theirs = learning_rate_schedule(optimizers.create_optimizer(1e-3, 125, warmup_ratio=0.1))
    assert ours.warmup_steps == theirs.warmup_steps == 13
    # The rates agree step by step: still rising at step 12, the peak at step 13.
    for step in (0, 6, 12, 13, 60, 124):
        assert float(ours(step)) == pytest.approx(float(theirs(step)))
    assert float(ours(12)) < float(ours(13)) == pytest.approx(1e-3)
    explicit = recipe.load_config({"finetune": {"schedule": {"warmup_steps": 7}}})
    built = finetune.build_optimizer(explicit.finetune, total_steps=125)
    assert learning_rate_schedule(built).warmup_steps == 7


def test_warmup_longer_than_the_stage_is_refused_before_training():
    with pytest.raises(ValueError, match="'finetune.schedule': expected a warm-up shorter"):
        recipe.load_config({"finetune": {"epochs": 1, "steps_per_epoch": 4,
                                         "schedule": {"warmup_steps": 4}}})


def _prune_views(model_path):
    """(path, 2-D (inputs, outputs) view) of each pruned transformer kernel of a saved model."""
    import re

    import keras
    import numpy as np

    model = keras.saving.load_model(model_path)
    views = []
    for v in model.weights:
        if re.search(r"transformer_layer_\d+/.*kernel$", v.path):
            w = keras.ops.convert_to_numpy(v)
            if "attention_output" in v.path:  # (heads, head_dim, hidden): sums heads, head_dim
                w = w.reshape(-1, w.shape[-1])
            else:  # Dense (in, out) and q/k/v (hidden, heads, head_dim)
                w = w.reshape(w.shape[0], -1)
            views.append((v.path, w))
    assert views
    return model, views, np


@pytest.mark.slow  # two short recipe runs of a 1-layer BERT (~1-2 min on 2 cores)
def test_recipe_options_run_hf_dir_regularization_layerwise_block_global_and_n_m(tmp_path):
    import keras_bertopt as kb

    # A Hugging Face checkpoint directory as model.source (1 layer, hidden 16: not the
    # recipe's built-in tiny default of 2 layers, hidden 32).
    tiny = kb.models.build_classifier(
        kb.models.TinyConfig(num_layers=1, hidden_dim=16, intermediate_dim=32, seed=0), 2, 16)
    hf_dir = kb.models.save_hf_checkpoint(tiny.backbone, kb.data.demo_vocabulary(),
                                          tmp_path / "hf")
    config = json.loads(json.dumps(MICRO))
    config["model"] = {"source": str(hf_dir), "sequence_length": 16}
    config["finetune"]["regularization"] = {"l2": 1e-3}
    config["finetune"]["optimizer"] = {"layerwise_lr_decay": 0.5}
    config["prune"].update(pattern="block", block_shape=[1, 4], scope="global")
    out = str(tmp_path / "block")
    recipe.run(config, output_dir=out, fit_verbose=0)
    state = json.loads(open(os.path.join(out, "state.json")).read())
    finetune = state["stages"]["finetune"]
    assert finetune["regularized_variables"] == 6  # q, k, v, attention output, 2 feed-forward
    rates = finetune["history"]
    head, layer0, emb = (rates["learning_rate"][-1], rates["learning_rate/transformer_layer_0"][-1],
                         rates["learning_rate/embeddings"][-1])
    assert layer0 == pytest.approx(head * 0.5, rel=1e-5)  # 1 layer: x 0.5**1
    assert emb == pytest.approx(head * 0.25, rel=1e-5)  # embeddings: x 0.5**2
    model, views, np = _prune_views(os.path.join(out, "prune", "model.keras"))
    assert model.backbone.num_layers == 1 and model.backbone.hidden_dim == 16
    zeros = total = 0
    per_variable = []
    for path, w in views:
        blocks = (w == 0).reshape(w.shape[0], -1, 4)  # 1x4 blocks along the outputs
        assert np.all(blocks.all(-1) | ~blocks.any(-1)), f"{path}: zeros not in whole blocks"
        zeros += int((w == 0).sum())
        total += w.size
        per_variable.append(float((w == 0).mean()))
    assert zeros / total == pytest.approx(0.5, abs=0.01)
    # One global threshold: the variables end at different sparsities around the 50% total.
    assert max(per_variable) - min(per_variable) > 0.05

    config["prune"].update(pattern="n:m", n=2, m=4, scope="per_variable", block_shape=None)
    out = str(tmp_path / "nm")
    recipe.run(config, output_dir=out, fit_verbose=0)
    _, views, _ = _prune_views(os.path.join(out, "prune", "model.keras"))
    for path, w in views:
        groups = (w != 0).T.reshape(w.shape[1], -1, 4)  # 4 consecutive inputs per output
        assert np.all(groups.sum(-1) == 2), f"{path}: not 2 of every 4 kept"


@pytest.mark.slow
def test_qat_with_dynamic_activations_exports_a_dynamic_range_file(tmp_path):
    from keras_bertopt.export import inspect_tflite

    config = json.loads(json.dumps(MICRO))
    # Hidden 32, feed-forward 64: kernels of >= 1024 values, which the converter quantizes.
    config["model"]["tiny"] = {"num_layers": 1, "hidden_dim": 32, "intermediate_dim": 64}
    config["prune"] = {"enabled": False}
    config["qat"] = {"enabled": True, "steps_per_epoch": 2, "activations": "dynamic"}
    config["export"] = {"enabled": True, "quantization": [], "qat_quantization": ["dynamic"],
                        "metadata": False}
    out = str(tmp_path / "run")
    recipe.run(config, output_dir=out, fit_verbose=0)
    state = json.loads(open(os.path.join(out, "state.json")).read())
    (file,) = state["stages"]["export"]["files"]
    assert (file["stage"], file["quantization"]) == ("qat", "dynamic")
    signatures = inspect_tflite(os.path.join(out, "export", file["name"] + ".tflite"))[
        "op_signatures"]
    # The QAT model's matmuls run on int8 weights with activations quantized at run time.
    assert sum(n for s, n in signatures.items() if s.startswith("FULLY_CONNECTED(FLOAT32,INT8")) > 0
    assert not any(s.startswith(("QUANTIZE", "FULLY_CONNECTED(INT8")) for s in signatures)
