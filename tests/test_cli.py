"""The `keras-bertopt` command: help, exit codes, config checks, export and evaluate."""

import os
import subprocess
import sys

import pytest

from keras_bertopt import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "run", "export", "evaluate"):
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


def test_run_check_accepts_every_example_config(capsys):
    for name in sorted(os.listdir(os.path.join(REPO, "examples"))):
        if name.endswith((".yaml", ".yml", ".json")):
            path = os.path.join(REPO, "examples", name)
            assert cli.main(["run", path, "--output", "unused", "--check"]) == 0, name
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


def test_console_script_runs():
    result = subprocess.run(
        [sys.executable, "-m", "keras_bertopt.cli", "--help"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0 and "keras-bertopt" in result.stdout
