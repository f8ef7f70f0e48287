"""The `keras-bertopt` command: help, exit codes, config checks, export and evaluate."""

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_bertopt as kb
from keras_bertopt import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "run", "export", "evaluate", "predict"):
        assert command in out
    with pytest.raises(SystemExit):
        cli.main(["export", "--help"])
    out = capsys.readouterr().out
    assert "--quantization" in out and "int8" in out


def test_no_command_and_unknown_option_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        cli.main(["demo", "--outptu", "x"])
    assert info.value.code == 2


def test_run_rejects_a_bad_config_before_any_work(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("finetune:\n  epochs: 1\n  learning_rate: 0.1\n")
    assert cli.main(["run", str(config), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'finetune.learning_rate'" in err
    assert not (tmp_path / "out").exists()
    assert cli.main(["run", str(tmp_path / "missing.yaml"), "--output", "x"]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert cli.main(["run", str(config)]) == 2  # wrong key reported first
    config.write_text("seed: 1\n")
    assert cli.main(["run", str(config)]) == 2
    assert "--output" in capsys.readouterr().err
    assert cli.main(["run", str(config), "--set", "prune.target_sparsity=2", "--check"]) == 2
    assert "'prune.target_sparsity'" in capsys.readouterr().err
    assert cli.main(["run", str(config), "--set", "seed", "--check"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_a_bad_data_row_is_found_before_any_model_is_built(tmp_path, capsys):
    train = tmp_path / "train.tsv"
    rows = ["sentence\tlabel", "a good film\t1", "bad\tx"] + ["fine\t0"] * 300
    train.write_text("\n".join(rows) + "\n")  # the bad row is line 3 of 303
    late = tmp_path / "dev.tsv"
    late.write_text("\n".join(["sentence\tlabel"] + ["ok\t1"] * 500 + ["worse\t7"]) + "\n")
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data: {{source: files, train: {train}, validation: {late}}}\n"
        "evaluate: {splits: [validation]}\n"
    )
    assert cli.main(["run", str(config), "--check"]) == 2
    err = capsys.readouterr().err
    assert "data.train" in err and f"{train}, line 3" in err and "'x'" in err
    out = tmp_path / "out"
    assert cli.main(["run", str(config), "--output", str(out)]) == 2
    assert f"{train}, line 3" in capsys.readouterr().err
    assert not out.exists()  # nothing built, nothing written
    train.write_text("\n".join(rows[:2] + rows[3:]) + "\n")
    assert cli.main(["run", str(config), "--check"]) == 2  # every row, to the last one
    err = capsys.readouterr().err
    assert "data.validation" in err and f"{late}, line 502" in err


def test_run_check_accepts_every_example_config(example_configs, capsys):
    assert len(example_configs) >= 2
    for path in example_configs:
        assert cli.main(["run", path, "--output", "unused", "--check"]) == 0, path
        assert "config is valid" in capsys.readouterr().out


def test_demo_refuses_a_foreign_output_dir(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("keep me")
    assert cli.main(["demo", "--output", str(tmp_path), "--quiet"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_export_and_evaluate_argument_errors(tmp_path, capsys):
    assert cli.main(["export", str(tmp_path / "m.keras"), "--output", "x.bin"]) == 2
    assert ".tflite" in capsys.readouterr().err
    assert cli.main(["export", str(tmp_path / "m.keras"), "--output", "x.tflite"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["evaluate", str(tmp_path / "m.onnx"), "--data", "demo"]) == 2
    assert ".tflite or .keras" in capsys.readouterr().err
    assert cli.main(["evaluate", str(tmp_path / "m.keras"), "--data", "demo"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_installed_console_script_runs(tmp_path):
    # The `keras-bertopt` command that `pip install` put beside this Python.
    script = os.path.join(os.path.dirname(sys.executable), "keras-bertopt")
    assert os.access(script, os.X_OK), f"{script} is not installed (pip install -e .)"
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "keras-bertopt" in result.stdout
    assert all(command in result.stdout for command in ("demo", "run", "export", "evaluate"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("finetune: {epochs: zero}\n")
    check = subprocess.run([script, "run", str(bad), "--check"], capture_output=True,
                           text=True, timeout=120)
    assert check.returncode == 2 and "finetune.epochs" in check.stderr


# ----------------------------------------------------------------------------- the demo


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """`keras-bertopt demo --output DIR` run once for the tests below (the whole recipe)."""
    out = str(tmp_path_factory.mktemp("demo") / "run")
    assert cli.main(["demo", "--output", out, "--quiet"]) == 0
    return out


@pytest.mark.slow
def test_demo_runs_every_stage_and_reports(demo_run, capsys):

    out = demo_run
    report = json.loads(open(os.path.join(out, "report.json")).read())
    assert report["completed"] == ["finetune", "prune", "qat", "export", "evaluate"]
    for stage in ("finetune", "prune", "qat"):
        assert os.path.isfile(os.path.join(out, stage, "model.keras"))
    names = {e["name"]: e for e in report["exports"]}
    assert sorted(names) == ["prune_dynamic", "prune_float32", "prune_int8", "qat_int8"]
    for entry in names.values():
        path = os.path.join(out, entry["file"])
        assert open(path, "rb").read()[4:8] == b"TFL3"  # a TFLite flatbuffer
        assert entry["size_bytes"] == os.path.getsize(path) > entry["gzip_bytes"] > 0
        for split in ("validation", "test"):
            # The tiny model learns the demo task; every small file still works.
            assert entry["metrics"][split]["accuracy"] >= 0.85, (entry["name"], split)
            assert entry["metrics"][split]["examples"] == 256
        # A median of n timed runs: at least half of them took that long, inside the export.
        runs = entry["export_report"]["latency_runs"]
        assert runs >= 1 and entry["latency_ms"] / 1e3 * math.ceil(runs / 2) <= entry["seconds"]
    for entry in names.values():  # MediaPipe metadata is on by default (mediapipe installed)
        exported = entry["export_report"]
        assert exported["metadata"] and exported["labels"] == ["0", "1"], entry["name"]
        assert exported["mediapipe_agreement"] == 1.0 and exported["mediapipe_samples"] == 32
    assert names["prune_float32"]["agreement_with_keras"]["validation"] >= 0.99
    assert names["prune_float32"]["max_abs_logit_diff"] < 1e-3
    assert names["qat_int8"]["agreement_with_keras"]["validation"] >= 0.95
    assert names["qat_int8"]["int8_ops"] > 0
    assert names["prune_int8"]["size_bytes"] < 0.8 * names["prune_float32"]["size_bytes"]
    # The pruned kernels are half zeros, and QAT kept them (sparsity-preserving QAT).
    stages = {s["stage"]: s for s in report["stages"]}
    assert stages["prune"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert stages["qat"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    models = {m["stage"]: m for m in report["models"]}
    assert models["prune"]["sparsity"] > models["finetune"]["sparsity"] + 0.2
    assert models["qat"]["sparsity"] > models["finetune"]["sparsity"] + 0.2
    assert models["finetune"]["metrics"]["validation"]["accuracy"] >= 0.9
    assert {c["stage"] for c in report["curves"]} == {"finetune", "prune", "qat"}
    md = open(os.path.join(out, "report.md")).read()
    assert "| qat | tflite int8 |" in md and "| prune | keras |" in md
    assert open(os.path.join(out, "report.png"), "rb").read()[:4] == b"\x89PNG"

    # Re-running into the finished directory trains nothing and exits 0.
    capsys.readouterr()
    assert cli.main(["demo", "--output", out]) == 0  # not --quiet: it hides the stage lines
    assert capsys.readouterr().out.count("already completed") == 5


@pytest.mark.slow
def test_evaluate_and_export_commands_on_demo_outputs(demo_run, tmp_path, capsys):

    out = demo_run
    capsys.readouterr()
    # A recipe's TFLite file finds its preprocessor in the run folder.
    assert cli.main(["evaluate", os.path.join(out, "export", "qat_int8.tflite"),
                     "--data", "demo:test", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    report = json.loads(open(os.path.join(out, "report.json")).read())
    qat_int8 = next(e for e in report["exports"] if e["name"] == "qat_int8")
    assert metrics["accuracy"] == pytest.approx(qat_int8["metrics"]["test"]["accuracy"])
    assert metrics["examples"] == 256

    data = tmp_path / "few.tsv"
    data.write_text("label\tsentence\n1\tgreat wonderful film\n0\tawful boring plot\n")
    assert cli.main(["evaluate", os.path.join(out, "prune", "model.keras"),
                     "--data", str(data), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["examples"] == 2 and metrics["accuracy"] == 1.0

    target = str(tmp_path / "dyn.tflite")
    assert cli.main(["export", os.path.join(out, "prune", "model.keras"), "--output", target,
                     "--quantization", "dynamic", "--no-metadata"]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and os.path.getsize(target) > 0
    # --no-metadata: the file outputs logits and the log says it has no MediaPipe metadata.
    assert "x length dynamic (up to 32), output logits" in printed
    assert "MediaPipe metadata (labels" not in printed and "no MediaPipe metadata" in printed
    assert cli.main(["evaluate", target, "--data", "demo:validation", "--preprocessor",
                     os.path.join(out, "prune", "model.keras"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    # The same file and data through the Python API, the accuracy counted here; and the
    # Keras model it came from agrees with it on nearly every sentence.
    keras_model = keras.saving.load_model(os.path.join(out, "prune", "model.keras"))
    texts, labels = kb.data.demo_examples("validation")
    predicted = kb.export.TFLiteClassifier(target, keras_model.preprocessor).predict(
        texts)["labels"]
    assert printed["examples"] == len(labels)
    assert printed["accuracy"] == pytest.approx(np.mean(predicted == np.asarray(labels)))
    from_keras = np.argmax(keras_model.predict(np.asarray(texts), verbose=0), axis=-1)
    assert np.mean(predicted == from_keras) >= 0.95
    labelled = str(tmp_path / "mediapipe.tflite")
    assert cli.main(["export", os.path.join(out, "prune", "model.keras"), "--output", labelled,
                     "--metadata", "--labels", "negative,positive", "--data",
                     "demo:validation"]) == 0
    printed = capsys.readouterr().out
    assert "MediaPipe metadata (labels ['negative', 'positive']): 100.0% label agreement" \
        in printed and "x length dynamic (up to 32), output probabilities" in printed
    # int8 of a float model needs representative data: refused before any work.
    assert cli.main(["export", os.path.join(out, "prune", "model.keras"), "--output",
                     str(tmp_path / "x.tflite"), "--quantization", "int8"]) == 2
    assert "--data" in capsys.readouterr().err
    assert not (tmp_path / "x.tflite").exists()
    # With --data it calibrates on those sentences and writes an int8 file.
    int8 = str(tmp_path / "int8.tflite")
    assert cli.main(["export", os.path.join(out, "prune", "model.keras"), "--output", int8,
                     "--quantization", "int8", "--data", "demo:validation", "--limit", "64",
                     "--no-metadata"]) == 0
    assert "wrote" in capsys.readouterr().out
    facts = kb.export.inspect_tflite(int8)
    assert facts["int8_ops"] > facts["float_ops"]  # the matmuls run in int8
    predicted = kb.export.TFLiteClassifier(int8, keras_model.preprocessor).predict(
        texts)["labels"]
    assert np.mean(predicted == from_keras) >= 0.9


def test_a_keras_file_that_is_not_a_bert_classifier_is_named(tmp_path, capsys):
    other = str(tmp_path / "dense.keras")
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(other)
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip file")
    tflite = tmp_path / "m.tflite"
    tflite.write_bytes(b"")
    for argv in (["evaluate", other, "--data", "demo"],
                 ["export", other, "--output", str(tmp_path / "x.tflite")],
                 ["evaluate", str(tflite), "--data", "demo", "--preprocessor", other]):
        assert cli.main(argv + ["--quiet"]) == 2
        err = capsys.readouterr().err
        assert "holds a Sequential without a text preprocessor" in err, err
        assert "--sequence-length" not in err and "\x1b[" not in err
    assert cli.main(["evaluate", str(broken), "--data", "demo", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"model {str(broken)!r} cannot be loaded as a Keras model: " in err
    assert len(err.splitlines()) == 1 and "\x1b[" not in err
