"""Shared test set-up: TensorFlow backend, quiet logs, no network, the tiny model fixture."""

import gc
import os

from _processes import GC_THRESHOLDS, tune_garbage_collector

gc.set_threshold(*GC_THRESHOLDS)  # before the libraries' imports (tests/_processes.py)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _offline import OFFLINE_ENV, block_outbound  # noqa: E402

os.environ.update(OFFLINE_ENV)  # before any library reads it; subprocesses inherit it

import json  # noqa: E402

import pytest  # noqa: E402

#: Seconds each test took in a full run, written by pytest-split's ``--store-durations``
#: (the command is in pyproject.toml); only the order work is handed out in depends on it.
DURATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "durations.json")


def _recorded_seconds() -> dict[str, float]:
    """Test id -> seconds from the durations file (none when it is missing)."""
    try:
        with open(DURATIONS, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The order `-n N` hands test files to its workers (pyproject's ``--dist loadfile
    --no-loadscope-reorder``: a file runs whole on one worker, in collection order).

    Files are sorted longest first, by the seconds their tests took in the recorded run (a
    test not recorded counts 1 s), so the long ones start early instead of running alone at
    the end while the other workers idle. A file's tests keep their order.
    """
    seconds = _recorded_seconds()
    weight: dict[str, float] = {}
    for item in items:
        unit = item.nodeid.split("::")[0]
        weight[unit] = weight.get(unit, 0.0) + seconds.get(item.nodeid, 1.0)
    items.sort(key=lambda item: -weight[item.nodeid.split("::")[0]])


@pytest.fixture(scope="session", autouse=True)
def _no_graph_rewrites():
    """TensorFlow's Grappler off in the test processes: it rewrites each traced function for
    speed before its first run (fusions, constant folding, layout), which costs seconds per
    function and buys nothing for a tiny model's few steps; results are the same ops' results.
    The TFLite converter keeps its defaults; processes tests start take the same setting from
    tests/_processes.py where they train."""
    import tensorflow as tf

    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


@pytest.fixture(scope="module", autouse=True)
def _garbage_collector_tuned():
    """As each test file starts (tests/_processes.py says why): the libraries' long-lived
    objects, the test modules' imports and whatever earlier files left alive are collected
    once and frozen out of every later full collection."""
    tune_garbage_collector()


@pytest.fixture(scope="session", autouse=True)
def _trace_once():
    """Each model's first `fit` / `evaluate` step traced once, not twice: Keras builds the
    optimizer and metric variables before tracing, as it does under a tf.distribute strategy
    (`_compat.build_before_tracing`; test_compat checks that training gives the same weights
    either way). The recipe turns the same on for its own run (`_compat.traced_once`), so the
    CLI processes tests start get it too; the MirroredStrategy process keeps Keras's own."""
    from keras_bertopt._compat import build_before_tracing

    build_before_tracing()


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Every test: a Python connection or name lookup to another host fails at once."""
    block_outbound(monkeypatch)


@pytest.fixture
def tiny_classifier():
    """A fresh 2-layer BERT classifier on the demo vocabulary (sequence length 32)."""
    from _models import tiny_classifier_model

    return tiny_classifier_model()


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory):
    """A factory of the tiny classifier (TinyConfig(), 2 classes) fine-tuned on 1024 demo
    sentences (one epoch, batch 32, AdamW 3e-3), trained once per test process.

    Each call builds a fresh compiled model with those weights, so a test may train, prune or
    quantize it without touching another test's copy::

        model = trained_tiny()                    # sequence length 32
        short = trained_tiny(sequence_length=16)  # the same weights, a shorter preprocessor
    """
    from _models import compile_classifier

    from keras_bertopt.data import demo_dataset
    from keras_bertopt.models import TinyConfig, build_classifier

    def compiled(model):
        return compile_classifier(model, 3e-3)

    model = compiled(build_classifier(TinyConfig(), num_classes=2, sequence_length=32))
    model.fit(demo_dataset("train", batch_size=32, size=1024), epochs=1, verbose=0)
    path = str(tmp_path_factory.mktemp("trained_tiny") / "model.weights.h5")
    model.save_weights(path)

    def build(sequence_length: int = 32):
        fresh = build_classifier(TinyConfig(), num_classes=2, sequence_length=sequence_length)
        fresh.load_weights(path)
        return compiled(fresh)

    return build


@pytest.fixture
def example_configs(tmp_path):
    """Every examples/*.yaml|yml|json copied to tmp_path/repo/examples/, with each relative
    data file it names written at the same relative place (demo rows, the config's columns).

    So the example configs validate as written (every key, type and path) on a fresh clone
    without ../shared/data. Returns the copied config paths.
    """
    import shutil

    import yaml

    from keras_bertopt.data import demo_examples

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folder = tmp_path / "repo" / "examples"
    folder.mkdir(parents=True)
    copies = []
    for name in sorted(os.listdir(os.path.join(repo, "examples"))):
        if not name.endswith((".yaml", ".yml", ".json")):
            continue
        shutil.copy(os.path.join(repo, "examples", name), folder / name)
        copies.append(str(folder / name))
        with open(folder / name, encoding="utf-8") as f:
            data = (yaml.safe_load(f) or {}).get("data") or {}
        texts, labels = demo_examples("validation", 64)
        for split in ("train", "validation", "test"):
            path = data.get(split)
            if not path or os.path.isabs(path):
                continue
            target = os.path.normpath(os.path.join(folder, path))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            sep = "," if target.endswith(".csv") else "\t"
            with open(target, "w", encoding="utf-8") as f:
                f.write(f"{data.get('text_column', 'sentence')}{sep}"
                        f"{data.get('label_column', 'label')}\n")
                f.writelines(f"{t}{sep}{y}\n" for t, y in zip(texts, labels, strict=True))
    return copies


@pytest.fixture
def package_log(caplog):
    """`caplog` receiving the ``keras_bertopt`` logger's INFO records (directly: the CLI's
    console setup stops that logger from propagating to the root logger)."""
    import logging

    log = logging.getLogger("keras_bertopt")
    level, propagate = log.level, log.propagate
    log.addHandler(caplog.handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield caplog
    finally:
        log.removeHandler(caplog.handler)
        log.setLevel(level)
        log.propagate = propagate
