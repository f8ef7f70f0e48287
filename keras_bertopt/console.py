"""What the command line prints: the Keras backend fixed before import, log levels, noise filters.

The CLI calls `configure(verbosity)` before anything imports Keras, then
`import_backend()` (TensorFlow and Keras, their start-up lines filtered) before a
command's first heavy import. Messages of the package go through the logger
``logging.getLogger("keras_bertopt")``, which `configure` sends to stdout
(warnings and errors to stderr).

Verbosity: ``QUIET`` (-1: warnings, errors and the final table), ``NORMAL`` (0:
one line per stage and step, TensorFlow's C++ INFO/WARNING lines and the Python
warnings our own calls cause filtered out) and ``VERBOSE`` (1: debug messages,
every TensorFlow log line, no filters).

```python
from keras_bertopt import console

console.configure(console.NORMAL)   # before `import keras`
console.import_backend()
console.logger().info("shown on stdout as '[keras-bertopt] ...'")
```
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import tempfile
import warnings
from typing import IO, Any, Iterator

QUIET, NORMAL, VERBOSE = -1, 0, 1
LOGGER_NAME = "keras_bertopt"
#: The backend the CLI needs: TFLite conversion and tf.data run on TensorFlow.
BACKEND = "tensorflow"

#: Lines the native (C++) libraries write straight to the file descriptors: absl INFO and
#: WARNING records before absl::InitializeLog(), the CPU-feature notice, the TFLite
#: converter's option dumps. Dropped unless VERBOSE.
NATIVE_NOISE = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called"),
    re.compile(r"^[IW]\d{4} [\d:.]+\s+\d+ [\w.\-]+:\d+\] "),
    re.compile(r"^To enable the following instructions: .* rebuild TensorFlow"),
    re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+: [IW] "),  # TF's own pre-absl format
    re.compile(r"^fully_quantize: \d+, inference_type: \d+"),
    re.compile(r"^INFO: Created TensorFlow Lite XNNPACK delegate"),
    re.compile(r"^E\d{4} [\d:.]+\s+\d+ cuda_\w+\.cc:\d+\] failed call to cuInit"),
    re.compile(r"^E\d{4} [\d:.]+\s+\d+ util\.cc:\d+\] oneDNN supports DT_INT64 only"),
)

#: Python warnings raised inside Keras/TF by the way this package calls them, each
#: harmless for our use: (message regex, category).
PYTHON_NOISE: tuple[tuple[str, type[Warning]], ...] = (
    # fit(dataset, shuffle=True): tf.data datasets are shuffled by the pipeline.
    (r".*`shuffle=True` was passed.*", UserWarning),
    # Models are saved without optimizer state (each stage compiles its own).
    (r"Skipping variable loading for optimizer", UserWarning),
    # tf.lite.experimental.QuantizationDebugger builds a tf.lite.Interpreter internally.
    (r".*tf\.lite\.Interpreter is deprecated.*", UserWarning),
    (r".*tf\.lite\.Interpreter is deprecated.*", DeprecationWarning),
)


class BackendError(ValueError):
    """The environment asks for a Keras backend the command cannot run on."""


class _StdStream(logging.StreamHandler):
    """A handler writing to the *current* ``sys.stdout`` / ``sys.stderr`` (so redirection
    and test capture work), records of WARNING and above to stderr."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
        super().emit(record)


def add_arguments(parser: Any) -> None:
    """``--quiet`` / ``--verbose`` on a command's argparse parser (into ``args.verbosity``)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quiet", "-q", dest="verbosity", action="store_const", const=QUIET,
                       default=NORMAL, help="print only the final results and errors")
    group.add_argument("--verbose", "-v", dest="verbosity", action="store_const",
                       const=VERBOSE, help="also debug messages, TensorFlow's log and every "
                       "warning")


def logger() -> logging.Logger:
    """The package's logger (``keras_bertopt``)."""
    return logging.getLogger(LOGGER_NAME)


def plain_text(text: str) -> str:
    """`text` without terminal colour codes (Keras colours some of its error messages)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text).strip()


def keras_json_backend(path: str | None = None) -> str | None:
    """The ``backend`` that ``~/.keras/keras.json`` (or `path`) names, if any."""
    if path is None:
        home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
        path = os.path.join(home, "keras.json")
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def fix_backend(backend: str = BACKEND) -> None:
    """Make Keras start on `backend`, before it is imported.

    ``KERAS_BACKEND`` set to another backend is an error (it would train on that
    backend and fail at export); ``keras.json`` naming another backend is
    overridden (``KERAS_BACKEND`` takes precedence over it).

    Raises:
        BackendError: ``KERAS_BACKEND`` names another backend, or Keras is
            already imported on another backend.
    """
    asked = os.environ.get("KERAS_BACKEND")
    if asked and asked != backend:
        raise BackendError(
            f"KERAS_BACKEND={asked}: keras-bertopt's commands run on the {backend} backend "
            f"(TFLite export needs it); unset KERAS_BACKEND or set KERAS_BACKEND={backend}"
        )
    if "keras" in sys.modules:
        running = sys.modules["keras"].backend.backend()
        if running != backend:
            raise BackendError(
                f"Keras is already running on the {running!r} backend in this process; "
                f"keras-bertopt's commands need {backend!r} (set KERAS_BACKEND={backend} "
                "before importing keras)"
            )
        return
    configured = keras_json_backend()
    os.environ["KERAS_BACKEND"] = backend
    if configured and configured != backend:
        logger().debug(f"keras.json names backend {configured!r}; "
                       f"using {backend!r} (KERAS_BACKEND)")


def set_log_levels(verbosity: int) -> None:
    """TensorFlow C++ and Python log levels for `verbosity` (a user's own
    ``TF_CPP_MIN_LOG_LEVEL`` wins); the package logger's level and handler."""
    if verbosity < VERBOSE:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    for name in ("tensorflow", "absl", "h5py", "jax"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity >= VERBOSE else logging.ERROR)
    log = logger()
    log.setLevel({QUIET: logging.WARNING, NORMAL: logging.INFO}.get(verbosity, logging.DEBUG))
    if not any(isinstance(h, _StdStream) for h in log.handlers):
        handler = _StdStream()
        handler.setFormatter(logging.Formatter("[keras-bertopt] %(message)s"))
        log.addHandler(handler)
    log.propagate = False


def filter_warnings(verbosity: int) -> None:
    """Ignore the Python warnings our own calls into Keras/TF cause (`PYTHON_NOISE`)."""
    if verbosity >= VERBOSE:
        return
    for message, category in PYTHON_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)


def configure(verbosity: int = NORMAL, *, backend: str | None = BACKEND) -> None:
    """Everything the CLI sets before Keras is imported (see the module docstring).

    Raises:
        BackendError: see `fix_backend` (`backend=None` skips the check).
    """
    set_log_levels(verbosity)
    if backend is not None:
        fix_backend(backend)
    filter_warnings(verbosity)
    global _VERBOSITY
    _VERBOSITY = verbosity


_VERBOSITY = NORMAL


def verbosity() -> int:
    """The verbosity `configure` was last called with."""
    return _VERBOSITY


def _keep(line: str) -> bool:
    return not any(p.search(line) for p in NATIVE_NOISE)


def _forward(source: int, target: int) -> None:
    """Copy lines from `source` to `target` until EOF, dropping `NATIVE_NOISE` lines."""
    pending = b""
    while True:
        chunk = os.read(source, 65536)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        kept = [line + b"\n" for line in lines if _keep(line.decode("utf-8", "replace"))]
        if kept:
            os.write(target, b"".join(kept))
        if b"\r" in pending:  # a progress line redrawn in place: show it now
            os.write(target, pending)
            pending = b""
    if pending and _keep(pending.decode("utf-8", "replace")):
        os.write(target, pending)
    os.close(source)


_STDERR_FILTER: dict[str, object] = {}


def filter_native_stderr() -> bool:
    """Route the process's stderr (file descriptor 2) through a thread that drops the
    `NATIVE_NOISE` lines TensorFlow's C++ code writes there at any time; undone at exit.

    Only for the command line (it changes the process's fd 2); returns whether it
    was installed (not when VERBOSE, not twice, not when ``sys.stderr`` is replaced).
    """
    import atexit
    import threading

    if _VERBOSITY >= VERBOSE or _STDERR_FILTER or sys.stderr is not sys.__stderr__:
        return False
    sys.stderr.flush()
    read, write = os.pipe()
    original = os.dup(2)
    os.dup2(write, 2)
    os.close(write)
    thread = threading.Thread(target=_forward, args=(read, original), daemon=True,
                              name="keras_bertopt-stderr")
    thread.start()
    _STDERR_FILTER.update(thread=thread, original=original)

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes the pipe's last write end: the thread sees EOF
        thread.join(timeout=5)

    atexit.register(restore)
    return True


def _replay(captured: IO[bytes], fd: int) -> None:
    captured.seek(0)
    kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(True)
            if _keep(line)]
    if kept:
        os.write(fd, "".join(kept).encode("utf-8"))


@contextlib.contextmanager
def native_output_filtered(enabled: bool | None = None, fds: tuple[int, ...] = (1, 2)
                           ) -> Iterator[None]:
    """Hold what native code writes to `fds` (stdout, stderr) during the block; afterwards
    write it out without the `NATIVE_NOISE` lines.

    For blocks that print no progress (imports, TFLite conversion): their output
    appears when the block ends. `enabled=None`: on unless VERBOSE.
    """
    if enabled is None:
        enabled = _VERBOSITY < VERBOSE
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in fds}
    files = {fd: tempfile.TemporaryFile() for fd in fds}
    try:
        for fd, f in files.items():
            os.dup2(f.fileno(), fd)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, original in saved.items():
            os.dup2(original, fd)
            os.close(original)
        for fd, f in files.items():
            _replay(f, fd)
            f.close()


def import_backend() -> None:
    """Import TensorFlow and Keras with their start-up lines filtered (`native_output_filtered`)."""
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return
    with native_output_filtered():
        import keras  # noqa: F401
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # device start-up lines (cuInit) now
