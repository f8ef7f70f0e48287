"""Atomic file output: write to a temporary name beside the target, then rename.

Every file keras_bertopt writes (TFLite models, `.keras` checkpoints, reports)
goes through `atomic_output` so a crash leaves either the old file or the new
one at `path`, never a half-written one. Finished outputs get the permissions a
plain ``open()`` / ``os.mkdir`` would give under the process umask (usually
0644 / 0755), not the private 0600 / 0700 of the temporary name.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
import tempfile
from typing import Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]


def _umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the only portable read is set-and-restore
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: PathLike, *, directory: bool = False) -> Iterator[str]:
    """Yield a temporary path to write to; on success rename it to `path`.

    The temporary name keeps `path`'s extension (Keras insists on `.keras`),
    lives in the same folder (so the rename is atomic) and is removed if the
    body raises. With `directory=True` the temporary path is a fresh empty
    folder that replaces `path` as a whole. The finished file (folder) gets mode
    ``0o666 & ~umask`` (``0o777 & ~umask``), as ``open()`` (``os.mkdir``) gives.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    _, ext = os.path.splitext(base)
    if directory:
        tmp = tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=folder)
    else:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{ext}", dir=folder)
        os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, (0o777 if directory else 0o666) & ~_umask())
        if directory and os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)
        raise


#: The names `atomic_output` gives its temporaries: ``.<name>.<random>.tmp[<ext>]``.
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[^.]+)?$")


def is_temporary(name: str) -> bool:
    """Whether a file or folder name is one of `atomic_output`'s temporaries."""
    return bool(_TEMPORARY.match(name))


def remove_temporaries(folder: PathLike) -> list[str]:
    """Delete the temporaries a killed `atomic_output` left anywhere under `folder`.

    Only call it while no other process writes into `folder` (the recipe holds
    the run-folder lock). Returns the paths removed.

    ```python
    keras_bertopt.files.remove_temporaries("runs/sst2")  # [".../.model.keras.x1y2z3a4.tmp.keras"]
    ```
    """
    removed = []
    for root, dirs, names in os.walk(os.fspath(folder)):
        for name in [d for d in dirs if is_temporary(d)]:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            dirs.remove(name)
            removed.append(os.path.join(root, name))
        for name in filter(is_temporary, names):
            os.remove(os.path.join(root, name))
            removed.append(os.path.join(root, name))
    return sorted(removed)


TEMP_FOLDER = ".tmp"


@contextlib.contextmanager
def temporaries_inside(folder: PathLike) -> Iterator[str]:
    """Make `tempfile` (and so TensorFlow's SavedModel and autograph scratch files) use
    ``<folder>/.tmp`` during the block; that folder is emptied on entry and removed on exit.

    A process killed inside the block leaves its scratch files in ``<folder>/.tmp``,
    where the next run's entry removes them, instead of in the system temp dir.

    ```python
    with keras_bertopt.files.temporaries_inside("runs/sst2"):
        keras_bertopt.export.to_tflite(model, "runs/sst2/model.tflite")
    ```
    """
    scratch = os.path.join(os.path.abspath(os.fspath(folder)), TEMP_FOLDER)
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    saved = tempfile.tempdir
    tempfile.tempdir = scratch
    try:
        yield scratch
    finally:
        tempfile.tempdir = saved
        shutil.rmtree(scratch, ignore_errors=True)


def write_bytes(path: PathLike, data: bytes) -> str:
    """Atomically write `data` to `path`; returns the path."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return os.fspath(path)


def write_text(path: PathLike, text: str) -> str:
    """Atomically write UTF-8 `text` to `path`; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def gzip_size(path: PathLike) -> int:
    """Bytes of the file after gzip -9 (what a download or an app bundle carries)."""
    with open(path, "rb") as f:
        return len(gzip.compress(f.read(), compresslevel=9))
