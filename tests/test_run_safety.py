"""Runs that survive kills and each other: the run-folder lock, leftover temporaries."""

import json
import os
import signal
import subprocess
import sys
import tempfile

import pytest

from keras_bertopt import files
from keras_bertopt.recipe.lock import LOCK_NAME, RunLock, RunLockedError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _hold_lock(folder) -> subprocess.Popen:
    """Another process that takes the lock on `folder` and waits (prints 'held')."""
    code = ("import sys, time\n"
            "from keras_bertopt.recipe.lock import RunLock\n"
            f"RunLock({str(folder)!r}).acquire()\n"
            "print('held', flush=True)\n"
            "time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": REPO})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_refused_with_the_holders_pid_then_a_killed_holder_frees_it(
        tmp_path):
    folder = tmp_path / "run"
    holder = _hold_lock(folder)
    try:
        with pytest.raises(RunLockedError, match=f"in use by another keras-bertopt run "
                                                 f"\\(pid {holder.pid}, started"):
            RunLock(folder).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The kernel dropped the dead holder's lock; its file (with its pid) is still there.
    assert json.loads((folder / LOCK_NAME).read_text())["pid"] == holder.pid
    with RunLock(folder) as lock:
        assert lock.held
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (folder / LOCK_NAME).exists()  # a clean exit leaves nothing behind


def test_two_locks_in_one_process_exclude_each_other_and_release_on_error(tmp_path):
    first = RunLock(tmp_path).acquire()
    with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
        RunLock(tmp_path).acquire()
    first.release()
    first.release()  # twice is harmless
    with pytest.raises(RuntimeError):
        with RunLock(tmp_path):
            raise RuntimeError("a failing run")
    assert RunLock(tmp_path).acquire().held  # released by the failure above


def test_a_lock_on_a_file_path_is_a_clear_error(tmp_path):
    path = tmp_path / "not_a_folder"
    path.write_text("x")
    with pytest.raises(FileExistsError, match="exists and is not a directory"):
        RunLock(path).acquire()


def test_leftover_temporaries_are_found_by_atomic_outputs_own_naming(tmp_path):
    # Made by the real helper, then "killed": the body raises BaseException subclasses
    # only after we copy its temporary aside (a kill leaves it exactly like this).
    leftovers = []
    for name, directory in (("model.keras", False), ("export/int8.tflite", False),
                            ("saved", True)):
        try:
            with files.atomic_output(tmp_path / name, directory=directory) as tmp:
                os.rename(tmp, tmp + ".kept") if not directory else None
                leftovers.append(tmp)
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            pass
    for tmp in leftovers:  # put them back where a kill would have left them
        if os.path.exists(tmp + ".kept"):
            os.rename(tmp + ".kept", tmp)
        else:
            os.makedirs(tmp)
    keep = [tmp_path / "model.keras", tmp_path / ".hidden", tmp_path / "a.tmp",
            tmp_path / "export" / "x.tflite"]
    for path in keep:
        path.write_text("keep")
    assert files.remove_temporaries(tmp_path) == sorted(leftovers)
    assert all(not os.path.exists(p) for p in leftovers)
    assert all(p.exists() for p in keep)


def test_temporaries_inside_routes_tempfile_into_the_run_folder(tmp_path):
    stale = tmp_path / files.TEMP_FOLDER / "keras_bertopt_savedmodel_old"
    stale.mkdir(parents=True)
    before = tempfile.gettempdir()
    with files.temporaries_inside(tmp_path) as scratch:
        assert not stale.exists()  # what a killed run left is cleared on entry
        made = tempfile.mkdtemp(prefix="keras_bertopt_savedmodel_")
        assert os.path.dirname(made) == scratch == str(tmp_path / files.TEMP_FOLDER)
    assert not os.path.exists(scratch)
    assert tempfile.gettempdir() == before
