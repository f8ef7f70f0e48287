"""Kill -9 the demo recipe at random moments, rerun it each time, compare with a run never killed.

    python benchmarks/kill_resume.py [--kills 10] [--seed 0] [--work DIR]

1. ``keras-bertopt demo`` into ``reference/`` (never killed; its time T).
2. ``keras-bertopt demo`` into ``killed/``, killed with SIGKILL after a random
   delay (uniform in [5 s, T/3]), rerun, killed again, ... `--kills` times, then
   rerun to the end.
3. Compared: every ``export/*.tflite`` file (same bytes? labels and max |logit
   difference| on the demo test split, each file with its stage's preprocessor),
   every stage's ``model.keras`` weights, the files in each folder (nothing
   left behind: no lock, checkpoint or temporary), new entries in the system
   temp dir, and the step each resumed stage restarted from.

Writes benchmarks/results/kill_resume.json.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMAND = [sys.executable, "-m", "keras_bertopt.cli", "demo", "--output"]


def _start(folder: str, log_path: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("KERAS_BACKEND", None)
    log = open(log_path, "ab")
    return subprocess.Popen(COMMAND + [folder], stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=REPO)


def _files(folder: str) -> set[str]:
    out = set()
    for root, dirs, names in os.walk(folder):
        for name in names + [d + "/" for d in dirs]:
            out.add(os.path.relpath(os.path.join(root, name), folder))
    return out


def _temp_entries() -> set[str]:
    prefixes = ("keras_bertopt", "__autograph_generated")
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith(prefixes)}


def _last_stage(text: str) -> str | None:
    found = re.findall(r"stage \d+/\d+ (\w+): running", text)
    return found[-1] if found else None


def _compare(reference: str, killed: str) -> dict:
    import keras

    from keras_bertopt import data
    from keras_bertopt.export import TFLiteClassifier
    from keras_bertopt.predict import load_model

    texts, _ = data.demo_examples("test")
    files = {}
    for name in sorted(os.listdir(os.path.join(reference, "export"))):
        if not name.endswith(".tflite"):
            continue
        stage = name.split("_")[0]
        pre = load_model(os.path.join(reference, stage, "model.keras")).preprocessor
        a = TFLiteClassifier(os.path.join(reference, "export", name), pre).predict(texts)
        b = TFLiteClassifier(os.path.join(killed, "export", name), pre).predict(texts)
        with open(os.path.join(reference, "export", name), "rb") as f1, \
                open(os.path.join(killed, "export", name), "rb") as f2:
            same_bytes = f1.read() == f2.read()
        files[name] = {
            "same_bytes": same_bytes,
            "label_agreement": float(np.mean(a["labels"] == b["labels"])),
            "max_abs_probability_diff": float(np.max(np.abs(a["probabilities"]
                                                            - b["probabilities"]))),
        }
    models = {}
    for stage in ("finetune", "distill", "prune_structure", "prune", "qat"):
        path = os.path.join(reference, stage, "model.keras")
        if os.path.isfile(path):
            wa = load_model(path).get_weights()
            wb = load_model(os.path.join(killed, stage, "model.keras")).get_weights()
            models[stage] = float(max(np.max(np.abs(x - y)) if x.size else 0.0
                                      for x, y in zip(wa, wb, strict=True)))
    keras.backend.clear_session()
    return {"tflite": files, "keras_max_abs_weight_diff": models}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="folder for the runs (default: a new one)")
    args = parser.parse_args()
    started = time.time()
    rng = random.Random(args.seed)
    work = args.work or tempfile.mkdtemp(prefix="kill_resume_")
    os.makedirs(work, exist_ok=True)  # --work may name a new folder
    reference, killed = os.path.join(work, "reference"), os.path.join(work, "killed")
    temp_before = _temp_entries()

    t0 = time.time()
    proc = _start(reference, os.path.join(work, "reference.log"))
    if proc.wait() != 0:
        raise SystemExit(f"the reference run failed; see {work}/reference.log")
    reference_seconds = time.time() - t0
    print(f"reference run: {reference_seconds:.1f} s", flush=True)

    log_path = os.path.join(work, "killed.log")
    kills = []
    for k in range(args.kills):
        delay = rng.uniform(5.0, max(6.0, reference_seconds / 3))
        size = os.path.getsize(log_path) if os.path.exists(log_path) else 0
        proc = _start(killed, log_path)
        try:
            finished = proc.wait(timeout=delay) is not None
        except subprocess.TimeoutExpired:
            finished = False
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        with open(log_path, encoding="utf-8", errors="replace") as f:
            f.seek(size)
            text = f.read()
        resumed = re.findall(r"(\w+): resuming at step (\d+)", text)
        kills.append({"delay_seconds": round(delay, 1), "finished_before_kill": finished,
                      "stage_running": _last_stage(text),
                      "resumed": [{"stage": s, "step": int(n)} for s, n in resumed],
                      "files_after_kill": len(_files(killed)) if os.path.isdir(killed) else 0})
        print(f"kill {k + 1}: {kills[-1]}", flush=True)
    size = os.path.getsize(log_path)
    t1 = time.time()
    proc = _start(killed, log_path)
    final_rc = proc.wait()
    with open(log_path, encoding="utf-8", errors="replace") as f:
        f.seek(size)
        final_text = f.read()
    # Before the comparison: it loads models in this process, whose autograph files stay
    # in the temp dir until this process exits (they are not the runs' leftovers).
    new_temp = sorted(_temp_entries() - temp_before)
    comparison = _compare(reference, killed) if final_rc == 0 else {}
    left = sorted(_files(killed) - _files(reference))
    missing = sorted(_files(reference) - _files(killed))
    tflite = comparison.get("tflite", {})
    summary = {
        "final_run_exit_status": final_rc,
        "final_run_seconds": round(time.time() - t1, 1),
        "final_run_resumed": re.findall(r"(\w+): resuming at step (\d+)", final_text),
        "all_tflite_same_bytes": all(v["same_bytes"] for v in tflite.values()) if tflite else None,
        "min_label_agreement": min((v["label_agreement"] for v in tflite.values()), default=None),
        "max_abs_probability_diff": max((v["max_abs_probability_diff"]
                                         for v in tflite.values()), default=None),
        "left_behind": left, "missing": missing, "new_system_temp_entries": new_temp,
    }
    for key, value in summary.items():
        print(f"{key}: {value}")
    common.write_result("kill_resume", {
        "command": "python " + " ".join(sys.argv),
        "budget": {"kills": args.kills, "seed": args.seed, "recipe": "keras-bertopt demo",
                   "kill_delay": "uniform in [5 s, reference time / 3], SIGKILL"},
        "reference_seconds": round(reference_seconds, 1),
        "kills": kills, "summary": summary, "comparison": comparison,
        "targets": {"label_agreement": "1.0", "max_abs_logit_diff": "<= 1e-5",
                    "left_behind": "none", "redone_steps": "<= checkpoint_every"},
        "work": work,
        "hours": (time.time() - started) / 3600,
    })


if __name__ == "__main__":
    main()
