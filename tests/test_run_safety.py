"""Runs that survive kills and each other: the run-folder lock, leftover temporaries."""

import json
import os
import signal
import subprocess
import sys
import tempfile

import pytest
from _processes import cli_command

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


# ---------------------------------------------------------------------------------------
# The recipe: lock, leftovers and resume inside a stage, through the command line.

DEMO = os.path.join(REPO, "examples", "demo.yaml")
SMALL = ["finetune.epochs=1", "finetune.steps_per_epoch=12", "prune.steps_per_epoch=24",
         "prune.frequency=4", "qat.enabled=false", "export.quantization=[none]",
         "export.qat_quantization=[]", "evaluate.enabled=false", "checkpoint_every=4"]


def _sets(items):
    return [arg for item in items for arg in ("--set", item)]


def test_a_second_run_into_a_locked_folder_is_refused_before_any_work(tmp_path, capsys):
    from keras_bertopt import cli

    folder = tmp_path / "run"
    holder = _hold_lock(folder)
    try:
        assert cli.main(["run", DEMO, "--output", str(folder), "--quiet", *_sets(SMALL)]) == 2
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    err = capsys.readouterr().err
    assert f"is in use by another keras-bertopt run (pid {holder.pid}" in err
    assert sorted(os.listdir(folder)) == [LOCK_NAME]  # nothing written by the refused run


def _run(folder, log):
    return subprocess.Popen(
        cli_command("run", DEMO, "--output", str(folder), *_sets(SMALL)),
        stdout=open(log, "ab"), stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": REPO})


def _checkpoint_step(path):
    from keras_bertopt.recipe.checkpoints import StepCheckpoint

    try:
        return StepCheckpoint(path).step if os.path.exists(path) else 0
    except (OSError, ValueError, KeyError):  # being renamed into place
        return 0


@pytest.mark.slow
def test_a_run_killed_mid_stage_resumes_to_the_uninterrupted_result(tmp_path):
    """kill -9 in the prune stage after its second checkpoint (step 8 of 24); the rerun
    resumes at that step and ends with the same pruned weights and the same TFLite file
    as a run never killed, leaving nothing behind."""
    import time

    import numpy as np

    from keras_bertopt.predict import load_model

    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert _run(reference, tmp_path / "reference.log").wait(timeout=1200) == 0
    proc = _run(killed, tmp_path / "killed.log")
    checkpoint = killed / "prune" / "checkpoint.npz"
    deadline = time.time() + 1200
    while _checkpoint_step(checkpoint) < 8 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert _checkpoint_step(checkpoint) >= 8
    assert _run(killed, tmp_path / "resumed.log").wait(timeout=1200) == 0
    log = (tmp_path / "resumed.log").read_text()
    assert "finetune: already completed" in log
    assert "prune: resuming at step " in log
    for a, b in zip(load_model(reference / "prune" / "model.keras").get_weights(),
                    load_model(killed / "prune" / "model.keras").get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    name = "prune_float32.tflite"
    assert (reference / "export" / name).read_bytes() == (killed / "export" / name).read_bytes()

    def listing(folder):
        return sorted(os.path.relpath(os.path.join(root, n), folder)
                      for root, dirs, names in os.walk(folder) for n in names + dirs)

    assert listing(killed) == listing(reference)  # no lock, checkpoint or temporary left


def test_a_folder_that_is_not_a_run_is_refused_and_left_untouched(tmp_path, capsys):
    """Cleaning leftovers is for run folders only: a foreign folder's '.tmp' and files named
    like our temporaries stay, and no lock file is left in it."""
    from keras_bertopt import cli

    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "mine.txt").write_text("keep")
    (tmp_path / ".notes.abcd1234.tmp").write_text("keep")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert cli.main(["run", DEMO, "--output", str(tmp_path), "--quiet", *_sets(SMALL)]) == 2
    assert "holds no keras-bertopt run" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
