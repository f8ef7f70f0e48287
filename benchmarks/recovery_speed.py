"""Recovery step speed on MiniLM-L6 + SST-2: examples/s of the recovery fit, per option.

The recovery fit of `benchmarks/recovery.py` (`train_row`) and of
`keras_bertopt.compress.recover_candidate`: the 4-layer student
(`shrink(teacher, num_layers=4)`, evenly spaced layers of the full-epoch
bucketed fine-tune) trained by `keras_bertopt.distillation.Distiller` (T 2,
alpha 0.7) against the cached teacher logits ($KBO_CACHE_DIR/
recovery_teacher_logits.npz, written by ``recovery.py cache``), on
length-bucketed batches of 32 SST-2 train sentences (up to 64 tokens, seed 0,
full batches), `create_optimizer` (AdamW, 10% warm-up, linear decay, weight
decay 0.01). Every variant trains a fresh student on the same batches in the
same order: one batch of each padded width first (a separate `fit`: tracing,
and on JAX one compiled program per width, happen there), then ``--warmup`` +
``--steps`` steps in one `fit`; examples/s counts the ``--steps`` after the
warm-up, timed between `on_train_batch_end` calls. Variants:

* ``plain``: today's recovery fit (TensorFlow);
* ``frozen``: `RecoverySettings.freeze_embeddings` (token / position / segment
  tables not trainable: the optimizer skips them);
* ``spe8``: ``steps_per_execution=8``; ``frozen_spe8``: both;
* ``nodrop``: `RecoverySettings.dropout` 0 (no dropout masks while
  recovering); ``frozen_spe8_nodrop``: all three;
* ``bf16``: the student under Keras's ``mixed_bfloat16`` dtype policy (bfloat16
  compute, float32 variables and optimizer; oneDNN runs bfloat16 matmuls natively on CPUs
  with AVX512_BF16 or AMX); ``frozen_spe8_nodrop_bf16``: with the three above;
* ``jax_plain`` (and, on request, ``jax_frozen_spe8``): the same fit under
  ``KERAS_BACKEND=jax`` in its own process (data still from tf.data), in the
  first ``--jax-rounds`` rounds only (it is the slowest variant).

Rounds interleave the variants (order reversed every other round) so load drift
on the shared machine hits all alike; the ratio to ``plain`` is taken within
each round, then the median over rounds. The JSON is rewritten after every
variant (marked ``partial`` until the last round ends). Each variant's SST-2 dev
accuracy after this short budget is the equal-accuracy check at this budget
(not a full-recovery result). The input pipeline alone (the Distiller's tf.data
pipeline, no training) is timed once per round.

    export KBO_CACHE_DIR=/work/artifacts/cache KBO_SST2_DIR=/work/shared/data/sst2
    nohup flock /tmp/kbo_bench.lock python benchmarks/recovery_speed.py --rounds 2 \
        > recovery_speed.log 2>&1 &

``--quick`` is a smoke run (few steps, written to recovery_speed_quick.json; not a
result). Writes benchmarks/results/recovery_speed.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

BATCH_SIZE = 32
STUDENT_LAYERS = 4
KD_TEMPERATURE = 2.0
KD_ALPHA = 0.7

def _variant(backend: str = "tensorflow", freeze: bool = False, spe: int = 1,
             dropout: float | None = None, policy: str = "float32") -> dict[str, Any]:
    return {"backend": backend, "freeze_embeddings": freeze, "steps_per_execution": spe,
            "dropout": dropout, "dtype_policy": policy}


VARIANTS = {
    "plain": _variant(),
    "frozen": _variant(freeze=True),
    "spe8": _variant(spe=8),
    "frozen_spe8": _variant(freeze=True, spe=8),
    "nodrop": _variant(dropout=0.0),
    "frozen_spe8_nodrop": _variant(freeze=True, spe=8, dropout=0.0),
    "bf16": _variant(policy="mixed_bfloat16"),
    "frozen_spe8_nodrop_bf16": _variant(freeze=True, spe=8, dropout=0.0,
                                        policy="mixed_bfloat16"),
    "jax_plain": _variant("jax"),
    "jax_frozen_spe8": _variant("jax", freeze=True, spe=8),
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def teacher_path(args: argparse.Namespace) -> str:
    return args.teacher or common.bucketed_cache_path(1, 64, BATCH_SIZE, 0, 1e-4)


def logits_path(args: argparse.Namespace) -> str:
    return args.logits or os.path.join(common.CACHE_DIR, "recovery_teacher_logits.npz")


_CACHE: dict[str, Any] = {}


def load_teacher(args: argparse.Namespace) -> Any:
    """The fine-tuned teacher, loaded once per process."""
    import keras

    path = teacher_path(args)
    if path not in _CACHE:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no teacher at {path}: run `recovery.py teacher` first")
        _CACHE[path] = keras.saving.load_model(path)
    return _CACHE[path]


def training_data(student: Any, args: argparse.Namespace) -> Any:
    """`train_row`'s batches: (raw sentences, (labels, cached teacher logits)), the first
    ``warmup + steps`` of the seed-0 length-bucketed stream."""
    import numpy as np
    import tensorflow as tf

    from keras_bertopt.data import bucket_by_length

    stored = np.load(logits_path(args))
    logits, labels = tf.constant(stored["logits"]), tf.constant(stored["labels"], tf.int32)
    texts, _ = common.sst2_examples("train", limit=args.limit)
    data = bucket_by_length((texts, list(range(len(texts)))), student.preprocessor,
                            BATCH_SIZE, seed=0, drop_remainder=True)
    data = data.map(lambda x, i: (x, (tf.gather(labels, i), tf.gather(logits, i))))
    return data.take(args.warmup + args.steps)


def width_batches(student: Any, data: Any, look: int = 400) -> Any:
    """The first batch of each padded width among the first `look` batches of `data`.

    Trained once before the timed fit, so tracing (TensorFlow) and compiling (one
    program per width on JAX) fall outside the timed steps for every variant alike.
    """
    import tensorflow as tf

    from keras_bertopt.bucketing import bucket_bounds

    every = len(bucket_bounds(student.preprocessor.sequence_length))
    first: dict[int, Any] = {}
    for x, y in data.take(look):
        first.setdefault(int(student.preprocessor(x)["token_ids"].shape[1]), (x, y))
        if len(first) == every:
            break
    chosen = [first[w] for w in sorted(first)]
    return tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(
        lambda *parts: tf.stack(parts), *chosen)), sorted(first)


def _timer() -> tuple[Any, list[float]]:
    import keras

    times: list[float] = []

    class _Timer(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            times.append(time.perf_counter())

    return _Timer(), times


def run_variant(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One fresh student trained `warmup + steps` steps with variant `name`, in this process."""
    import keras

    from keras_bertopt.compress.recover import frozen_embeddings, recovery_dropout
    from keras_bertopt.data import dynamic_padding
    from keras_bertopt.distillation import Distiller, shrink
    from keras_bertopt.models import with_dtype_policy
    from keras_bertopt.optimizers import create_optimizer

    spec = VARIANTS[name]
    spe = spec["steps_per_execution"]
    if keras.backend.backend() != spec["backend"]:
        raise RuntimeError(f"{name} runs on {spec['backend']}, this process has "
                           f"{keras.backend.backend()}")
    # keras.distillation.Distiller requires the teacher's and the student's outputs to have
    # one dtype, so a bfloat16 student gets a bfloat16 copy of the teacher (which never runs
    # here: its logits are cached).
    teacher = load_teacher(args)
    if spec["dtype_policy"] != "float32":
        teacher = with_dtype_policy(teacher, spec["dtype_policy"])
    keras.utils.set_random_seed(0)
    student = shrink(teacher, num_layers=STUDENT_LAYERS)  # the teacher's dtype policy
    fixed = student.preprocessor
    dynamic_padding(student)
    data = training_data(student, args)
    if "warm" not in _CACHE:  # the same batches for every variant of this process
        _CACHE["warm"] = width_batches(student, training_data(student, args))
    warm, widths = _CACHE["warm"]
    total = args.warmup + args.steps
    distiller = Distiller(teacher, student, temperature=KD_TEMPERATURE, alpha=KD_ALPHA)
    timer, times = _timer()
    with frozen_embeddings(student, spec["freeze_embeddings"]), \
            recovery_dropout(student, spec["dropout"]):
        distiller.compile(optimizer=create_optimizer(args.lr, total + len(widths),
                                                     warmup_steps=total // 10,
                                                     weight_decay=0.01),
                          steps_per_execution=spe)
        trainable = sum(math.prod(w.shape) for w in distiller.trainable_weights)
        distiller.fit(warm, epochs=1, verbose=0)
        start = time.perf_counter()
        history = distiller.fit(data, epochs=1, callbacks=[timer], verbose=0)
        wall = time.perf_counter() - start
    done = len(times) * spe
    if done != total:
        raise RuntimeError(f"{name}: {done} steps run, expected {total} (dataset too short?)")
    seconds = times[-1] - times[args.warmup // spe - 1]
    student.preprocessor = fixed
    accuracy = common.evaluate_accuracy(student, common.sst2_dataset("dev", 64,
                                                                     limit=args.dev_limit))
    out = {"variant": name, **spec, "examples_per_second": round(
        args.steps * BATCH_SIZE / seconds, 2), "measured_seconds": round(seconds, 2),
        "fit_wall_seconds": round(wall, 2), "trainable_parameters": trainable,
        "warm_up_widths": widths,
        "train_loss": round(float(history.history["loss"][-1]), 4),
        "dev_accuracy": round(accuracy, 4)}
    log(f"{name}: {out['examples_per_second']} examples/s, dev {accuracy:.4f}, "
        f"{trainable:,} trainable")
    return out


def run_worker(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Variant `name` in its own process (its backend); a failure is recorded, not raised."""
    env = {**os.environ, "KERAS_BACKEND": VARIANTS[name]["backend"]}
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "out.json")
        command = [sys.executable, os.path.abspath(__file__), "--worker", name, "--out", out,
                   *args.passthrough]
        proc = subprocess.run(command, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not os.path.isfile(out):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-12:]
            log(f"{name} failed (exit status {proc.returncode}): " + " | ".join(tail))
            return {"variant": name, **VARIANTS[name], "failed": True,
                    "exit_status": proc.returncode, "error_tail": tail}
        with open(out, encoding="utf-8") as f:
            return json.load(f)


def time_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """The Distiller's input pipeline alone (bucketing, tokenizing, padding): examples/s."""
    import keras
    import tensorflow as tf

    from keras_bertopt.data import dynamic_padding
    from keras_bertopt.distillation import Distiller, shrink

    teacher = load_teacher(args)
    keras.utils.set_random_seed(0)  # as in run_variant: the same batches in the same order
    student = shrink(teacher, num_layers=STUDENT_LAYERS)
    dynamic_padding(student)

    # What Distiller.fit puts in front of the step: its preprocess_samples, mapped in parallel.
    prepare = tf.autograph.experimental.do_not_convert(
        Distiller(teacher, student).preprocess_samples)
    pipeline = training_data(student, args).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    widths: dict[int, int] = {}
    start = time.perf_counter()
    for x, _ in pipeline:
        width = int(x["token_ids"].shape[1])
        widths[width] = widths.get(width, 0) + 1
    seconds = time.perf_counter() - start
    total = args.warmup + args.steps
    return {"examples_per_second": round(total * BATCH_SIZE / seconds, 1),
            "batches": total, "widths": {str(k): v for k, v in sorted(widths.items())}}


def _paired(rounds: list[dict[str, dict]], name: str) -> list[float]:
    """examples/s of `name` over plain's, in each round that has both."""
    return [round(r[name]["examples_per_second"] / r["plain"]["examples_per_second"], 3)
            for r in rounds if name in r and "plain" in r
            and not r[name].get("failed") and not r["plain"].get("failed")]


def summarize(rounds: list[dict[str, dict]], names: list[str]) -> dict[str, Any]:
    out = {}
    for name in names:
        runs = [r[name] for r in rounds if name in r]
        ok = [r for r in runs if not r.get("failed")]
        out[name] = {**VARIANTS[name], "runs": runs}
        paired = _paired(rounds, name)
        if ok and paired:
            out[name].update({
                "examples_per_second_median": round(statistics.median(
                    r["examples_per_second"] for r in ok), 2),
                "ratio_to_plain": round(statistics.median(paired), 3),
                "ratio_to_plain_per_round": paired,
                "dev_accuracy": [r["dev_accuracy"] for r in ok],
                "trainable_parameters": ok[0]["trainable_parameters"]})
    return out


def print_table(summary: dict[str, Any]) -> None:
    print(f"{'variant':<20}{'examples/s':>12}{'x plain':>9}  dev accuracy   trainable",
          flush=True)
    for name, row in summary.items():
        if "ratio_to_plain" not in row:
            print(f"{name:<20}{'failed':>12}", flush=True)
            continue
        print(f"{name:<20}{row['examples_per_second_median']:>12}{row['ratio_to_plain']:>9}"
              f"  {row['dev_accuracy']}   {row['trainable_parameters']:,}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=16,
                        help="steps of the fit not timed (multiple of 8)")
    parser.add_argument("--steps", type=int, default=96, help="timed steps (multiple of 8)")
    parser.add_argument("--jax-rounds", type=int, default=1,
                        help="rounds that include the JAX variants (the first ones)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--variants",
                        default="plain,frozen,spe8,frozen_spe8,nodrop,frozen_spe8_nodrop,jax_plain")
    parser.add_argument("--teacher", default=None)
    parser.add_argument("--logits", default=None)
    parser.add_argument("--limit", type=int, default=None, help="SST-2 train sentences")
    parser.add_argument("--dev-limit", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="smoke run (not a result)")
    parser.add_argument("--result", default="recovery_speed",
                        help="name of the JSON file in benchmarks/results")
    parser.add_argument("--worker", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.warmup, args.steps, args.rounds = 8, 16, 2
        args.limit, args.dev_limit = args.limit or 2048, args.dev_limit or 64
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS] + ([] if "plain" in names else ["plain?"])
    if unknown or args.warmup % 8 or args.steps % 8 or args.warmup < 8:
        parser.error(f"--variants: known {sorted(VARIANTS)} with plain among them; --warmup "
                     ">= 8 and --steps multiples of 8 (steps_per_execution 8)")
    args.passthrough = list(argv if argv is not None else sys.argv[1:])
    if args.worker:
        from keras_bertopt.files import write_text

        return write_text(args.out, json.dumps(run_variant(args.worker, args)))
    run(args, names)


def run(args: argparse.Namespace, names: list[str]) -> None:
    """Interleaved rounds; the JSON is rewritten after every variant (``partial`` until done)."""
    import keras

    start = time.perf_counter()
    rounds: list[dict[str, dict]] = []
    pipelines: list[dict] = []
    for r in range(args.rounds):
        names_r = [n for n in names if r < args.jax_rounds or VARIANTS[n]["backend"] != "jax"]
        order = names_r if r % 2 == 0 else names_r[::-1]
        log(f"round {r + 1}/{args.rounds}: {order}")
        pipelines.append(time_pipeline(args))
        log(f"input pipeline alone: {pipelines[-1]}")
        rounds.append({})
        for name in order:
            same = VARIANTS[name]["backend"] == keras.backend.backend()
            rounds[-1][name] = run_variant(name, args) if same else run_worker(name, args)
            write(args, names, rounds, pipelines, start, partial=True)
        print_table(summarize(rounds, names))
    write(args, names, rounds, pipelines, start, partial=False)


def write(args: argparse.Namespace, names: list[str], rounds: list[dict[str, dict]],
          pipelines: list[dict], start: float, partial: bool) -> None:
    seconds = time.perf_counter() - start
    examples = (args.warmup + args.steps) * BATCH_SIZE
    versions = {}
    for module in ("jax", "jaxlib"):
        try:
            versions[f"{module}_version"] = __import__(module).__version__
        except ImportError:
            versions[f"{module}_version"] = None
    common.write_result(args.result + ("_quick" if args.quick else ""), {
        "description": __doc__.split("\n\n")[0],
        "command": "flock /tmp/kbo_bench.lock python benchmarks/recovery_speed.py "
                   + " ".join(sys.argv[1:]),
        "budget": f"{args.rounds} round(s) of {len(names)} variants (JAX ones in the first "
                  f"{args.jax_rounds}), each one batch per padded width + {args.warmup} "
                  f"untimed + {args.steps} timed steps of {BATCH_SIZE} (about {examples} "
                  f"examples per variant and round, {args.steps * BATCH_SIZE} timed); 4-layer "
                  f"student, logit KD from cached logits, peak lr {args.lr}",
        **({"partial": f"{len(rounds)} of {args.rounds} rounds begun"} if partial else {}),
        "student_layers": STUDENT_LAYERS, "teacher": teacher_path(args),
        "logits": logits_path(args), "variants": summarize(rounds, names),
        "input_pipeline": pipelines, "wall_seconds": round(seconds, 1),
        "hours": round(seconds / 3600, 3), **versions})


if __name__ == "__main__":
    main()
