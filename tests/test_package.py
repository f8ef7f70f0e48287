"""Package-level guarantees: cheap import, the selection helper, atomic files."""

import os
import subprocess
import sys

import pytest


def test_import_sets_nothing_and_loads_neither_tensorflow_nor_optional_packages():
    # What the package docstring promises: no TensorFlow (nor Keras) until a submodule is used.
    code = (
        "import os, sys; before = dict(os.environ); import keras_bertopt; "
        "assert dict(os.environ) == before, 'environment changed'; "
        "bad = [m for m in ('tensorflow', 'tensorflow_model_optimization', "
        "'tensorflow_datasets', 'mediapipe', 'keras') "
        "if m in sys.modules]; assert not bad, bad; "
        # The data loaders and models need TensorFlow and Keras, still not tfds or tfmot
        # (one process for both checks: each costs a TensorFlow import).
        "import keras_bertopt.data, keras_bertopt.models; "
        "bad = [m for m in ('tensorflow_datasets', 'tensorflow_model_optimization') "
        "if m in sys.modules]; assert not bad, bad; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_select_variables_by_path(tiny_classifier):
    from keras_bertopt.selection import TRANSFORMER_KERNELS, select_variables

    chosen = select_variables(tiny_classifier, TRANSFORMER_KERNELS)
    paths = [v.path for v in chosen]
    assert len(paths) == 2 * 6  # q, k, v, attention output, two feed-forward per layer
    assert all(p.startswith("transformer_layer_") and p.endswith("kernel") for p in paths)
    no_ffn = select_variables(tiny_classifier, TRANSFORMER_KERNELS, exclude="feedforward")
    assert len(no_ffn) == 2 * 4


def test_select_variables_errors(tiny_classifier):
    from keras_bertopt.selection import select_variables

    with pytest.raises(ValueError, match="include.*matched no variable"):
        select_variables(tiny_classifier, r"no_such_layer/kernel")
    with pytest.raises(ValueError, match="valid regular expression"):
        select_variables(tiny_classifier, r"transformer_layer_(")


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    from keras_bertopt.files import atomic_output, write_text

    target = tmp_path / "model.tflite"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"partial")
            raise RuntimeError("crash during export")
    assert os.listdir(tmp_path) == []
    write_text(target, "done")
    assert target.read_text() == "done"
    assert os.listdir(tmp_path) == ["model.tflite"]


@pytest.mark.parametrize(
    "umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)]
)
def test_atomic_outputs_get_the_mode_open_gives_under_the_umask(
    tmp_path, umask, file_mode, dir_mode
):
    import stat

    from keras_bertopt.files import atomic_output, write_bytes

    old = os.umask(umask)
    try:
        write_bytes(tmp_path / "model.tflite", b"x")
        with atomic_output(tmp_path / "saved", directory=True) as tmp:
            with open(os.path.join(tmp, "inside.txt"), "w") as f:
                f.write("y")
        with open(tmp_path / "plain.txt", "w") as f:  # the reference: a plain open()
            f.write("z")
    finally:
        os.umask(old)
    mode = lambda name: stat.S_IMODE(os.stat(tmp_path / name).st_mode)  # noqa: E731
    assert mode("plain.txt") == file_mode
    assert mode("model.tflite") == file_mode
    assert mode("saved") == dir_mode


@pytest.mark.slow
def test_quickstart_example_learns_the_demo_data():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
    try:
        import quickstart
    finally:
        sys.path.pop(0)
    assert quickstart.main(["--epochs", "2"]) > 0.85
