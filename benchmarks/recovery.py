"""Recovery at real budgets on MiniLM-L6 + SST-2: accuracy against examples seen, per lever.

Three steps, each its own process (run each under the benchmark lock, in the
background, in this order); every step adds its section to
benchmarks/results/recovery.json as soon as it has something to say, with the
date, library versions, budget, command and hours taken:

* ``teacher``: the dense teacher, one full SST-2 epoch (67,349 sentences) of
  length-bucketed fine-tuning (`common.finetune_minilm_bucketed`, batch 32, up to
  64 tokens, peak 1e-4), cached under $KBO_CACHE_DIR; its SST-2 dev accuracy.
* ``cache``: the teacher's logits on every SST-2 train sentence, once, written
  to $KBO_CACHE_DIR/recovery_teacher_logits.npz (what every row learns from).
* ``row NAME``: one compressed model recovered by logit distillation from the
  cached logits (`keras_bertopt.distillation.Distiller`, temperature 2, alpha
  0.7; `create_optimizer`, 10% warm-up, linear decay, weight decay 0.01) on
  length-bucketed batches of 32 for ``--epochs`` epochs; its SST-2 dev accuracy
  every ``--eval-every`` examples seen (the recovery curve) and at the end;
  then latency: the row's dynamic-range real-length file, its float32
  real-length file and the teacher's float32 fixed-128 file, ``--latency-sentences``
  SST-2 dev sentences, batch 1, one thread, paired per sentence in a fresh
  process (`keras_bertopt.compress.time_in_fresh_process`), ratios against
  the teacher's fixed-128 file.
  Rows: ``student3`` / ``student4`` (`shrink(teacher, 3 | 4)`, evenly spaced
  layers), ``structured`` (`prune_structure(teacher, layers=2, heads=0.25,
  intermediate=0.5, importance="taylor")` on 8 batches: 4 layers x 9 heads x
  FFN 768), ``sparse80`` (a trainable copy of the teacher, `MagnitudePruning` of
  the transformer kernels to 80% by `PolynomialSparsity` over the first ``--ramp``
  (default half) of the steps, during the same distillation; the stripped model's
  measured sparsity). ``--lr`` sets the peak learning rate; ``--freeze-embeddings``
  keeps the embedding tables fixed (`keras_bertopt.compress.recover.frozen_embeddings`).
  ``--teacher FILE.keras`` distils from another fine-tune: its logits and its rows
  get their own file and sections (``--teacher-name``), beside the cached teacher's.
  ``--hidden-weight`` / ``--attention-weight`` add TinyBERT's hidden-state MSE and
  MiniLM's attention KL (`Distiller`, evenly spaced layer map; the teacher then
  runs on every batch, for its features and logits) and name the section ``..._h<w>_a<w>``;
  ``--alpha`` / ``--temperature`` change the soft-target weight and temperature.

Run (one step at a time, each after the previous one finished):

    export KBO_CACHE_DIR=/work/artifacts/cache
    nohup flock /tmp/kbo_bench.lock python benchmarks/recovery.py teacher > teacher.log 2>&1 &
    nohup flock /tmp/kbo_bench.lock python benchmarks/recovery.py cache > cache.log 2>&1 &
    nohup flock /tmp/kbo_bench.lock python benchmarks/recovery.py row student3 > s3.log 2>&1 &

``chain`` runs teacher, cache and the rows structured, student3 (both ``--save``) and
student4 as consecutive processes inside one hold of the benchmark lock (each still
writes its own section as it goes), so other benchmarks cannot slip in between steps:

    nohup flock /tmp/kbo_bench.lock python benchmarks/recovery.py chain --rounds 1 \
        --latency-sentences 200 > chain.log 2>&1 &

``--quick`` (with ``--limit``) is a smoke run on a few hundred sentences
written to recovery_quick.json (not a result).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

BATCH_SIZE = 32
TRAIN_LENGTH = 64
TEACHER_LR = 1e-4
KD_TEMPERATURE = 2.0
KD_ALPHA = 0.7
DEFAULT_LR = 1e-4
DEFAULT_RAMP = 0.5
ROWS = {
    "student3": {"layers": 3},
    "student4": {"layers": 4},
    "structured": {"prune": {"layers": 2, "heads": 0.25, "intermediate": 0.5}},
    "sparse80": {"sparsity": 0.8},
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def result_name(args: argparse.Namespace) -> str:
    return "recovery_quick" if args.quick else "recovery"


def update_result(args: argparse.Namespace, section: str, value: dict) -> str:
    """Add or replace one section of recovery.json (the others stay as they were)."""
    path = os.path.join(common.RESULTS_DIR, f"{result_name(args)}.json")
    current: dict = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            current = json.load(f)
    current.pop("benchmark", None)
    current.pop("machine", None)
    sections = current.setdefault("sections", {})
    sections[section] = {**value, "machine": common.machine_info(),
                         "command": "flock /tmp/kbo_bench.lock python benchmarks/recovery.py "
                         + " ".join(sys.argv[1:])}
    current["description"] = __doc__.split("\n\n")[0]
    return common.write_result(result_name(args), current)


def teacher_path(args: argparse.Namespace) -> str:
    if args.teacher:
        return args.teacher
    return common.bucketed_cache_path(1, TRAIN_LENGTH, BATCH_SIZE, 0, TEACHER_LR)


def load_teacher(args: argparse.Namespace) -> Any:
    import keras

    path = teacher_path(args)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no teacher at {path}: run `recovery.py teacher` first")
    model = keras.saving.load_model(path)
    common._compile_plain(model)
    return model


def dev_data(args: argparse.Namespace) -> Any:
    return common.sst2_dataset("dev", 64, limit=args.dev_limit)


def run_teacher(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    path = teacher_path(args)
    if os.path.isfile(path):
        log(f"teacher cached at {path}")
        with open(os.path.splitext(path)[0] + ".json", encoding="utf-8") as f:
            info = json.load(f)
    else:
        model, info = common.finetune_minilm_bucketed(1, TRAIN_LENGTH, BATCH_SIZE, 0, TEACHER_LR)
        common._save_finetuned(model, info, path)
    accuracy = common.evaluate_accuracy(load_teacher(args), dev_data(args))
    log(f"teacher dev accuracy {accuracy:.4f}")
    update_result(args, "teacher", {
        "budget": f"1 epoch of SST-2 train ({info.get('examples')} sentences), batch "
                  f"{BATCH_SIZE}, length-bucketed up to {TRAIN_LENGTH} tokens",
        "dev_accuracy": round(accuracy, 4), "model_file": path, **info,
        "hours": round((time.perf_counter() - start) / 3600, 3),
        "train_hours": round(info.get("train_seconds", 0) / 3600, 3)})


def teacher_tag(args: argparse.Namespace) -> str:
    """``""`` for the cached full-epoch teacher, else ``_teacher-NAME`` for ``--teacher``'s
    model (NAME: ``--teacher-name``, default the first 8 hex digits of the path's SHA-1), so
    another teacher's logits and rows never replace this one's."""
    if not args.teacher:
        return ""
    name = args.teacher_name or hashlib.sha1(
        os.path.abspath(args.teacher).encode()).hexdigest()[:8]
    return f"_teacher-{name}"


def logits_path(args: argparse.Namespace) -> str:
    suffix = teacher_tag(args) + ("_quick" if args.quick else "")
    return os.path.join(common.CACHE_DIR, f"recovery_teacher_logits{suffix}.npz")


def run_cache(args: argparse.Namespace) -> None:
    import numpy as np

    from keras_bertopt.data import bucket_by_length, dynamic_padding

    start = time.perf_counter()
    teacher = load_teacher(args)
    dynamic_padding(teacher)
    texts, labels = common.sst2_examples("train", limit=args.limit)
    index = list(range(len(texts)))
    batches = bucket_by_length((texts, index), teacher.preprocessor, 128, shuffle=False)
    logits = np.zeros((len(texts), 2), "float32")
    done = 0
    for x, i in batches:
        logits[np.asarray(i)] = np.asarray(teacher.predict_on_batch(x), "float32")
        done += len(i)
        if done % 8192 < 128:
            log(f"{done}/{len(texts)} sentences")
    os.makedirs(common.CACHE_DIR, exist_ok=True)
    np.savez(logits_path(args) + ".tmp.npz", logits=logits, labels=np.asarray(labels))
    os.replace(logits_path(args) + ".tmp.npz", logits_path(args))
    seconds = time.perf_counter() - start
    agree = float(np.mean(np.argmax(logits, -1) == np.asarray(labels)))
    log(f"cached {len(texts)} logits in {seconds:.0f} s; teacher train accuracy {agree:.4f}")
    update_result(args, "cache" + teacher_tag(args), {
        "budget": f"{len(texts)} SST-2 train sentences, one teacher pass, batches of 128 "
                  "by length", "file": logits_path(args), "sentences": len(texts),
        "teacher_train_accuracy": round(agree, 4), "seconds": round(seconds, 1),
        "hours": round(seconds / 3600, 3),
        "sentences_per_second": round(len(texts) / seconds, 1)})


def build_row(name: str, teacher: Any, args: argparse.Namespace) -> tuple[Any, dict]:
    from keras_bertopt.distillation import shrink
    from keras_bertopt.pruning import prune_structure

    spec = ROWS[name]
    if "sparsity" in spec:
        return shrink(teacher, num_layers=teacher.backbone.num_layers), {
            "target_sparsity": spec["sparsity"],
            "pruning": "MagnitudePruning, transformer kernels, per variable, unstructured, "
                       f"PolynomialSparsity 0 -> target over the first {args.ramp:g} of the steps"}
    if "layers" in spec:
        return shrink(teacher, num_layers=spec["layers"]), {"student_layers": spec["layers"]}
    scoring = common.sst2_dataset("train", BATCH_SIZE, limit=8 * BATCH_SIZE, shuffle=True)
    model = prune_structure(teacher, importance="taylor", data=scoring, batches=8,
                            **spec["prune"])
    backbone = model.backbone
    shape = {"layers": int(backbone.num_layers), "heads": [int(h) for h in backbone.num_heads],
             "intermediate": [int(d) for d in backbone.intermediate_dim],
             "prune": spec["prune"], "importance": "taylor, 8 batches of 32"}
    return model, {"shape": shape}


class Curve:
    """Keras callback factory: dev accuracy every `every` examples, JSON written each time."""

    def __init__(self, student: Any, dev: Any, every: int, on_point: Any) -> None:
        import keras

        curve = self
        self.points: list[dict] = []
        self.start = time.perf_counter()
        self.seen = 0
        self.next = every

        class _Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                curve.seen += BATCH_SIZE
                if curve.seen >= curve.next:
                    curve.next += every
                    curve.point(student, dev, on_point)

        self.callback = _Callback()

    def point(self, student: Any, dev: Any, on_point: Any) -> None:
        accuracy = common.evaluate_accuracy(student, dev)
        self.points.append({"examples_seen": self.seen, "dev_accuracy": round(accuracy, 4),
                            "hours": round((time.perf_counter() - self.start) / 3600, 3)})
        log(f"{self.seen} examples: dev accuracy {accuracy:.4f}")
        on_point(self.points)


def train_row(student: Any, teacher: Any, args: argparse.Namespace, on_point: Any) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_bertopt.compress.recover import frozen_embeddings
    from keras_bertopt.data import bucket_by_length, dynamic_padding
    from keras_bertopt.distillation import Distiller
    from keras_bertopt.optimizers import create_optimizer
    from keras_bertopt.pruning import (
        MagnitudePruning,
        PolynomialSparsity,
        sparsity_report,
        strip_pruning,
    )
    from keras_bertopt.selection import TRANSFORMER_KERNELS

    stored = np.load(logits_path(args))
    logits, labels = tf.constant(stored["logits"]), tf.constant(stored["labels"], tf.int32)
    texts, _ = common.sst2_examples("train", limit=args.limit)
    fixed = student.preprocessor
    dynamic_padding(student)
    # Full batches only (at most BATCH_SIZE - 1 sentences per bucket left out per epoch),
    # so examples seen = batches x BATCH_SIZE.
    data = bucket_by_length((texts, list(range(len(texts)))), student.preprocessor,
                            BATCH_SIZE, seed=0, drop_remainder=True)
    if args.hidden_weight or args.attention_weight:
        # Feature losses need the teacher's forward pass: it gives the logits too.
        data = data.map(lambda x, i: (x, tf.gather(labels, i)))
    else:
        data = data.map(lambda x, i: (x, (tf.gather(labels, i), tf.gather(logits, i))))
    steps = sum(1 for _ in data) * args.epochs
    keras.utils.set_random_seed(0)
    distiller = Distiller(teacher, student, temperature=args.temperature, alpha=args.alpha,
                          hidden_weight=args.hidden_weight,
                          attention_weight=args.attention_weight)
    curve = Curve(student, dev_data(args), args.eval_every, on_point)
    callbacks = [curve.callback]
    target = ROWS[args.name].get("sparsity")
    if target:
        end = max(1, int(steps * args.ramp))
        callbacks.insert(0, MagnitudePruning(PolynomialSparsity(
            0.0, target, begin_step=0, end_step=end, frequency=max(1, min(100, end // 10)))))
    start = time.perf_counter()
    with frozen_embeddings(student, args.freeze_embeddings):
        distiller.compile(
            optimizer=create_optimizer(args.lr, steps, warmup_steps=max(1, steps // 10),
                                       weight_decay=0.01),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
        history = distiller.fit(data, epochs=args.epochs, callbacks=callbacks, verbose=0)
    seconds = time.perf_counter() - start
    if curve.seen % args.eval_every:
        curve.point(student, dev_data(args), on_point)
    student.preprocessor = fixed
    extra = {}
    if target:
        strip_pruning(student)
        report = sparsity_report(student, include=TRANSFORMER_KERNELS)
        extra["measured_sparsity_transformer_kernels"] = round(float(report.sparsity), 4)
    return {**extra, "steps": steps, "epochs": args.epochs, "examples": curve.seen,
            "train_seconds": round(seconds, 1), "train_hours": round(seconds / 3600, 3),
            "examples_per_second_with_evals": round(curve.seen / seconds, 2),
            "train_loss": round(float(history.history["loss"][-1]), 4), "curve": curve.points}


def latency(teacher: Any, student: Any, args: argparse.Namespace) -> dict:
    """Paired batch-1 one-thread times: student files vs the teacher's float32 fixed-128."""
    import numpy as np
    from latency import summary

    from keras_bertopt.compress import time_in_fresh_process
    from keras_bertopt.export import preprocess_texts, to_tflite

    texts, truth = common.sst2_examples("dev", limit=args.latency_sentences)
    preprocessor = common.minilm_preprocessor(128)
    os.makedirs(common.CACHE_DIR, exist_ok=True)
    folder = tempfile.mkdtemp(prefix="recovery_", dir=common.CACHE_DIR)
    plans = {"teacher_float32_fixed128": (teacher, "none", {"length_buckets": None}),
             "student_dynamic_real_length": (student, "dynamic", {}),
             "student_float32_real_length": (student, "none", {})}
    files = {}
    for key, (model, mode, kwargs) in plans.items():
        files[key] = os.path.join(folder, f"{key}.tflite")
        to_tflite(model, files[key], mode, sequence_length=128, verify=False, **kwargs)
    times, labels = time_in_fresh_process(
        files, dict.fromkeys(files, preprocess_texts(preprocessor, texts)), args.rounds)
    base = np.asarray(times["teacher_float32_fixed128"])
    out = {}
    for key in files:
        out[key] = {**summary([t for r in times[key] for t in r]),
                    "ratio_to_teacher_fixed128": round(float(np.median(
                        np.asarray(times[key]) / base)), 4),
                    "accuracy": round(float(np.mean(np.asarray(labels[key]) == truth)), 4),
                    "size_bytes": os.path.getsize(files[key])}
        os.remove(files[key])
    return {"sentences": len(texts), "rounds": args.rounds, "batch_size": 1,
            "num_threads": 1, "files": out}


def row_section(args: argparse.Namespace) -> str:
    """``row_NAME[_eN][_hW_aW][_alphaA_tT][_lrL][_rampR][_frozen-emb][_teacher-NAME]``: the
    defaults leave their part out."""
    section = f"row_{args.name}" + (f"_e{args.epochs}" if args.epochs != 1 else "")
    if args.hidden_weight or args.attention_weight:
        section += f"_h{args.hidden_weight:g}_a{args.attention_weight:g}"
    if (args.alpha, args.temperature) != (KD_ALPHA, KD_TEMPERATURE):
        section += f"_alpha{args.alpha:g}_t{args.temperature:g}"
    if args.lr != DEFAULT_LR:
        section += f"_lr{args.lr:g}"
    if args.ramp != DEFAULT_RAMP:
        section += f"_ramp{args.ramp:g}"
    if args.freeze_embeddings:
        section += "_frozen-emb"
    return section + teacher_tag(args)


def run_row(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    teacher = load_teacher(args)
    teacher_accuracy = common.evaluate_accuracy(teacher, dev_data(args))
    student, info = build_row(args.name, teacher, args)
    section = row_section(args)
    base = {"budget": f"{args.epochs} epoch(s) of SST-2 train, length-bucketed batches of "
                      f"{BATCH_SIZE}, logit KD from cached teacher logits (T {args.temperature}, "
                      f"alpha {args.alpha}; hidden-state weight {args.hidden_weight}, attention "
                      f"weight {args.attention_weight}), peak lr {args.lr}",
            "teacher_dev_accuracy": round(teacher_accuracy, 4), **info}

    def on_point(points: list) -> None:
        update_result(args, section, {**base, "partial": True, "curve": points,
                                      "hours": round((time.perf_counter() - start) / 3600, 3)})

    on_point([{"examples_seen": 0, "dev_accuracy": round(
        common.evaluate_accuracy(student, dev_data(args)), 4), "hours": 0.0}])
    training = train_row(student, teacher, args, on_point)
    final = training["curve"][-1]["dev_accuracy"]
    within = [p["examples_seen"] for p in training["curve"]
              if p["dev_accuracy"] >= teacher_accuracy - 0.01]
    row = {**base, **training, "dev_accuracy": final,
           "minus_teacher_pt": round(100 * (final - teacher_accuracy), 2),
           "examples_to_within_1pt": within[0] if within else None}
    if args.save:
        path = os.path.join(common.CACHE_DIR, f"recovery_{args.name}.keras")
        student.save(path)
        row["model_file"] = path
    update_result(args, section, {**row, "partial": "latency pending",
                                  "hours": round((time.perf_counter() - start) / 3600, 3)})
    row["latency"] = latency(teacher, student, args)
    row["hours"] = round((time.perf_counter() - start) / 3600, 3)
    log(f"{args.name}: dev {final:.4f} ({row['minus_teacher_pt']} pt), latency "
        f"{json.dumps(row['latency']['files'])}")
    update_result(args, section, row)


CHAIN = (["teacher"], ["cache"], ["row", "structured", "--save"], ["row", "student3", "--save"],
         ["row", "student4"])


def run_chain(args: argparse.Namespace) -> None:
    """Every step, one process each, in order; a failed step is logged and the next runs."""
    import subprocess

    latency_args = ["--rounds", str(args.rounds), "--latency-sentences",
                    str(args.latency_sentences)]
    for step in CHAIN:
        name = step[1] if step[0] == "row" else step[0]
        log(f"chain: start {name}")
        path = os.path.join(args.log_dir, f"recovery_{name}.log")
        with open(path, "w", encoding="utf-8") as out:
            rc = subprocess.call([sys.executable, os.path.abspath(__file__), *step,
                                  *(latency_args if step[0] == "row" else [])],
                                 stdout=out, stderr=subprocess.STDOUT)
        log(f"chain: end {name}, exit status {rc}, log {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    steps = {name: sub.add_parser(name) for name in ("teacher", "cache", "row")}
    chain = sub.add_parser("chain")
    chain.add_argument("--rounds", type=int, default=2)
    chain.add_argument("--latency-sentences", type=int, default=300)
    chain.add_argument("--log-dir", default=".")
    steps["row"].add_argument("name", choices=sorted(ROWS))
    steps["row"].add_argument("--epochs", type=int, default=1)
    steps["row"].add_argument("--lr", type=float, default=DEFAULT_LR)
    steps["row"].add_argument("--ramp", type=float, default=DEFAULT_RAMP,
                              help="sparse rows: fraction of the steps the sparsity ramps over")
    steps["row"].add_argument("--freeze-embeddings", action="store_true",
                              help="embedding tables fixed during recovery")
    steps["row"].add_argument("--eval-every", type=int, default=8192)
    steps["row"].add_argument("--latency-sentences", type=int, default=300)
    steps["row"].add_argument("--rounds", type=int, default=2)
    steps["row"].add_argument("--save", action="store_true", help="keep the recovered model")
    steps["row"].add_argument("--alpha", type=float, default=KD_ALPHA)
    steps["row"].add_argument("--temperature", type=float, default=KD_TEMPERATURE)
    steps["row"].add_argument("--hidden-weight", type=float, default=0.0)
    steps["row"].add_argument("--attention-weight", type=float, default=0.0)
    for p in steps.values():
        p.add_argument("--quick", action="store_true", help="smoke run (not a result)")
        p.add_argument("--limit", type=int, default=None, help="SST-2 train sentences")
        p.add_argument("--dev-limit", type=int, default=None)
        p.add_argument("--teacher", default=None,
                       help="a .keras teacher instead of the cached full-epoch fine-tune")
        p.add_argument("--teacher-name", default=None,
                       help="names --teacher's logits file and rows (default: a path hash)")
    args = parser.parse_args(argv)
    if args.step == "chain":
        return run_chain(args)
    if args.quick:
        args.limit, args.dev_limit = args.limit or 256, args.dev_limit or 64
        if args.step == "row":
            args.eval_every, args.latency_sentences, args.rounds = 128, 16, 1
    log(f"recovery {args.step}: {vars(args)}")
    {"teacher": run_teacher, "cache": run_cache, "row": run_row}[args.step](args)


if __name__ == "__main__":
    main()
