"""The console: backend fixed before Keras loads, log levels, noise filters, fast --help."""

import json
import logging
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

from keras_bertopt import cli, console

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code: str, env: dict | None = None, text: bool = True
            ) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    base.update(PYTHONPATH=REPO, **(env or {}))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=text,
                          env=base, timeout=300)


def test_help_and_argument_errors_do_not_import_tensorflow():
    code = (
        "import sys\n"
        "from keras_bertopt import cli\n"
        "for argv in (['--help'], ['evaluate', 'x.keras', '--data', 'demo', '--limit', '0']):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit as e:\n"
        "        print('exit', e.code)\n"
        "print('loaded', 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    result = _python(code)
    assert "exit 0" in result.stdout and "exit 2" in result.stdout
    assert "loaded False False" in result.stdout
    assert "--limit: expected a whole number >= 1, got '0'" in result.stderr


def test_a_jax_backend_in_the_environment_is_refused_before_any_work(tmp_path):
    code = (
        "import sys\n"
        "from keras_bertopt import cli\n"
        f"rc = cli.main(['evaluate', {str(tmp_path / 'm.keras')!r}, '--data', 'demo'])\n"
        "print('rc', rc, 'loaded', 'keras' in sys.modules)\n"
    )
    result = _python(code, env={"KERAS_BACKEND": "jax"})
    assert "rc 2 loaded False" in result.stdout
    assert "KERAS_BACKEND=jax" in result.stderr and "tensorflow" in result.stderr


def test_keras_json_asking_for_jax_is_overridden(tmp_path):
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax"}))
    env = {"KERAS_HOME": str(tmp_path)}
    show = "import keras; print('backend', keras.backend.backend())"
    # Without the console set-up this environment really gives JAX ...
    assert "backend jax" in _python(show, env).stdout
    # ... and with it, TensorFlow.
    fixed = _python("from keras_bertopt import console; console.configure(); " + show, env)
    assert "backend tensorflow" in fixed.stdout
    assert console.keras_json_backend(str(tmp_path / "keras.json")) == "jax"


def test_keras_already_running_another_backend_is_an_error(monkeypatch):
    class FakeKeras:
        class backend:
            @staticmethod
            def backend():
                return "jax"

    monkeypatch.setitem(sys.modules, "keras", FakeKeras)
    with pytest.raises(console.BackendError, match="already running on the 'jax' backend"):
        console.fix_backend()


def test_warnings_our_calls_cause_are_filtered_and_others_kept():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        console.filter_warnings(console.NORMAL)
        warnings.warn("Skipping variable loading for optimizer 'adam_1', because it has 2 "
                      "variables whereas the saved optimizer has 0 variables.", stacklevel=1)
        warnings.warn("    Warning: tf.lite.Interpreter is deprecated and is scheduled for "
                      "deletion\n    in TF 2.20.", UserWarning, stacklevel=1)
        warnings.warn("`shuffle=True` was passed, but will be ignored since the data `x` ...",
                      stacklevel=1)
        warnings.warn("something a user should see", stacklevel=1)
    assert [str(w.message) for w in caught] == ["something a user should see"]


def test_verbose_keeps_every_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        console.filter_warnings(console.VERBOSE)
        warnings.warn("Skipping variable loading for optimizer 'adam_1'", stacklevel=1)
    assert len(caught) == 1


@pytest.mark.parametrize("verbosity, shown", [
    (console.QUIET, ["warning"]),
    (console.NORMAL, ["info", "warning"]),
    (console.VERBOSE, ["debug", "info", "warning"]),
])
def test_log_levels(verbosity, shown, capsys):
    console.set_log_levels(verbosity)
    log = console.logger()
    log.debug("debug")
    log.info("info")
    log.warning("warning")
    out, err = capsys.readouterr()
    lines = out.splitlines() + err.splitlines()
    assert lines == [f"[keras-bertopt] {word}" for word in shown]  # the handler adds the prefix
    assert ("warning" in err) and ("warning" not in out)
    console.set_log_levels(console.NORMAL)
    assert logging.getLogger("tensorflow").level == logging.ERROR


NATIVE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796458048.498097   11932 port.cc:153] oneDNN custom operations are on.\n"
    "W0000 00:00:1796458205.024915   11932 tf_tfl_flatbuffer_helpers.cc:364] Ignored "
    "output_format.\n"
    "E0000 00:00:1796458063.809329   11932 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n"
    "fully_quantize: 0, inference_type: 6, input_inference_type: FLOAT32\n"
    "E0000 00:00:1796458063.809329   11932 something.cc:52] a real error\n"
    "Traceback (most recent call last):\n"
)


def test_native_noise_is_dropped_from_a_file_descriptor(capfd):
    with console.native_output_filtered(True):
        os.write(2, NATIVE.encode())
        os.write(1, b"fully_quantize: 0, inference_type: 6\nkept on stdout\n")
    out, err = capfd.readouterr()
    assert out == "kept on stdout\n"
    assert err.splitlines() == [
        "E0000 00:00:1796458063.809329   11932 something.cc:52] a real error",
        "Traceback (most recent call last):",
    ]


def test_stderr_filter_of_a_command_line_process():
    code = (
        "import os, sys\n"
        "from keras_bertopt import console\n"
        "console.configure()\n"
        "print(console.filter_native_stderr(), flush=True)\n"
        f"os.write(2, {NATIVE.encode()!r})\n"
        "sys.stderr.write('\\rprogress 5'); sys.stderr.flush()\n"
        "sys.stderr.write('\\rprogress 9\\n'); sys.stderr.flush()\n"
        "sys.stderr.write('last line, no newline')\n"
    )
    result = _python(code, text=False)  # bytes: keep the carriage returns
    assert result.stdout == b"True\n"
    assert result.stderr.decode() == (
        "E0000 00:00:1796458063.809329   11932 something.cc:52] a real error\n"
        "Traceback (most recent call last):\n\rprogress 5\rprogress 9\nlast line, no newline")


def test_ctrl_c_prints_one_line_and_exits_130(monkeypatch, tmp_path, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_run", interrupted)
    assert cli.main(["run", str(tmp_path / "c.yaml"), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert err == "keras-bertopt run: interrupted; run the same command again to resume\n"


def test_loading_a_saved_classifier_warns_nothing(tiny_classifier, tmp_path):
    """Files are saved without optimizer state; keras-hub tasks compile themselves when
    rebuilt, so a plain load warns "Skipping variable loading for optimizer"; ours does not."""
    import keras

    from keras_bertopt.predict import load_model

    path = str(tmp_path / "model.keras")
    tiny_classifier.optimizer, tiny_classifier.compiled = None, False
    tiny_classifier.save(path)
    with warnings.catch_warnings(record=True) as plain:
        warnings.simplefilter("always")
        keras.saving.load_model(path, compile=False)
    assert any("Skipping variable loading for optimizer" in str(w.message) for w in plain)
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        model = load_model(path)
    assert [str(w.message) for w in ours] == []
    np.testing.assert_array_equal(model.get_weights()[0], tiny_classifier.get_weights()[0])


def test_quiet_still_prints_the_final_table(capsys):
    console.set_log_levels(console.QUIET)
    try:
        console.logger().info("stage 1/5 finetune: running")
        cli._print_summary({"splits": ["test"], "models": [
            {"stage": "prune", "size_bytes": 206_000, "metrics": {"test": {"accuracy": 0.95}}}],
            "exports": [{"stage": "qat", "quantization": "int8", "size_bytes": 104_000,
                         "metrics": {"test": {"accuracy": 0.9531}}}]})
    finally:
        console.set_log_levels(console.NORMAL)
    assert capsys.readouterr().out.splitlines() == [
        "      prune keras             0.206 MB  test accuracy 0.9500",
        "        qat tflite int8       0.104 MB  test accuracy 0.9531"]


# A one-epoch, six-step fine-tune and its evaluation: the smallest run with a training stage.
_SHORT_RUN = ["run", os.path.join(REPO, "examples", "demo.yaml"), "--set", "prune.enabled=false",
              "--set", "qat.enabled=false", "--set", "export.enabled=false",
              "--set", "finetune.epochs=1", "--set", "finetune.steps_per_epoch=6",
              "--set", "evaluate.splits=[validation]"]


def _cli_output(args: list[str], terminal: bool) -> str:
    """stdout + stderr of `python -m keras_bertopt.cli ARGS`, on a pseudo-terminal or a pipe."""
    import pty

    command = [sys.executable, "-m", "keras_bertopt.cli", *args]
    env = {**os.environ, "PYTHONPATH": REPO, "COLUMNS": "120"}
    if not terminal:
        return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, env=env, timeout=600,
                              check=True).stdout.decode()
    leader, follower = pty.openpty()
    proc = subprocess.Popen(command, stdout=follower, stderr=follower,
                            stdin=subprocess.DEVNULL, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 1 << 16)
        except OSError:  # EIO: the process closed its end of the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=600) == 0
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.slow  # two short recipe runs in their own processes (~15 s each)
def test_terminal_shows_step_progress_and_a_pipe_one_line_per_epoch(tmp_path):
    piped = _cli_output([*_SHORT_RUN, "--output", str(tmp_path / "pipe")], terminal=False)
    lines = piped.splitlines()
    epochs = [line for line in lines if re.match(r"^6/6 - \d+s - ", line)]
    assert len(epochs) == 1, piped  # Keras's verbose=2: one line for the epoch, at its end
    assert "\r" not in piped and "\x08" not in piped and "━" not in piped
    for line in lines:  # ours, the epoch line, or the final table (indented)
        assert line.startswith(("[keras-bertopt] ", "6/6 - ", "   ")), line
    assert "[keras-bertopt] stage 1/2 finetune: done in" in piped

    shown = _cli_output([*_SHORT_RUN, "--output", str(tmp_path / "tty")], terminal=True)
    # Keras's progress bar: redrawn in place for every step ("━" bar, carriage returns).
    assert "━" in shown and ("\r" in shown or "\x08" in shown), shown
    steps = set(re.findall(r"(?<!\d)([1-6])/6(?!\d)", shown))  # amid colour codes
    assert len(steps) >= 2, shown  # more than the final step was drawn
    assert "[keras-bertopt] stage 1/2 finetune: done in" in shown
