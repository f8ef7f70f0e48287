"""The run-folder lock: one keras-bertopt run writes into an output folder at a time.

The lock is an exclusive ``flock`` on ``<folder>/.keras-bertopt.lock``, held for
the whole run. The kernel releases it when the process ends in any way (kill -9
included), so a lock left by a dead run is never in the way; the file records the
holder's pid and start time for the refusal message, and a clean exit removes it.

```python
from keras_bertopt.recipe.lock import RunLock

with RunLock("runs/sst2"):      # raises RunLockedError if another run holds it
    ...                         # write into runs/sst2
```
"""

from __future__ import annotations

import json
import os
import socket
import time
from types import TracebackType

LOCK_NAME = ".keras-bertopt.lock"


class RunLockedError(FileExistsError):
    """Another live process holds the output folder's lock."""


def _holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    parts = []
    if "pid" in holder:
        parts.append(f"pid {holder['pid']}")
    if holder.get("host") and holder["host"] != socket.gethostname():
        parts.append(f"on {holder['host']}")
    if "started" in holder:
        parts.append("started " + time.strftime("%Y-%m-%d %H:%M:%S",
                                                time.localtime(holder["started"])))
    return ", ".join(parts) or "pid unknown"


class RunLock:
    """An exclusive lock on `folder` (created if missing) for one run; a context manager.

    Args:
        folder: the run's output folder.

    Raises (from `acquire`):
        RunLockedError: another live process holds the lock (the message names its pid).
        FileExistsError: `folder` exists and is not a folder.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = os.path.abspath(os.fspath(folder))
        self.path = os.path.join(self.folder, LOCK_NAME)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock now or raise `RunLockedError` (never waits)."""
        import fcntl

        if self._fd is not None:
            return self
        if os.path.exists(self.folder) and not os.path.isdir(self.folder):
            raise FileExistsError(f"output path {self.folder!r} exists and is not a directory")
        os.makedirs(self.folder, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise RunLockedError(
                    f"output directory {self.folder!r} is in use by another keras-bertopt run "
                    f"({_describe(holder)}); wait for it to finish or choose another output "
                    "directory"
                ) from None
            # The file may have been removed by a holder that released it after we opened
            # it: then this lock guards nothing; open the current file and try again.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and release the lock (a no-op when not held)."""
        if self._fd is None:
            return
        try:
            os.remove(self.path)  # while still held, so no other process locks a removed file
        except FileNotFoundError:
            pass
        os.close(self._fd)  # closing releases the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
