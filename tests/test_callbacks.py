"""Metrics callbacks inside a real `model.fit` of the tiny BERT classifier."""

import csv
import json
import math
import os
import time
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from _models import compile_classifier

import keras_bertopt as kb
from keras_bertopt.callbacks import (
    LearningRateLogger,
    SparsityLogger,
    Throughput,
    ValidationMetrics,
)


def _binary_by_hand(labels, predictions):
    """Confusion matrix and the binary metrics from their definitions (positive class 1),
    written out here rather than taken from keras_bertopt.metrics, which the callback uses."""
    y, p = np.asarray(labels).astype(int), np.asarray(predictions).astype(int)
    tp, tn = int(np.sum((y == 1) & (p == 1))), int(np.sum((y == 0) & (p == 0)))
    fp, fn = int(np.sum((y == 0) & (p == 1))), int(np.sum((y == 1) & (p == 0)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    denominator = np.sqrt(float((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
    return np.array([[tn, fp], [fn, tp]]), {
        "accuracy": (tp + tn) / len(y),
        "precision": precision,
        "recall": recall,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0,
        "mcc": (tp * tn - fp * fn) / denominator if denominator else 0.0,
    }


def _real_tokens(model, texts):
    mask = model.preprocessor(np.array(texts))["padding_mask"]
    return int(np.sum(keras.ops.convert_to_numpy(mask)))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One fit of the tiny classifier with every callback (traced once, shared by tests)."""
    tmp_path = tmp_path_factory.mktemp("callbacks")
    model = kb.models.build_classifier(kb.models.TinyConfig(), num_classes=2, sequence_length=32)
    schedule = keras.optimizers.schedules.PolynomialDecay(1e-3, decay_steps=40)
    compile_classifier(model, schedule)
    texts, labels = kb.data.demo_examples("train", 96)
    train_raw = kb.data.from_examples(texts, labels, batch_size=16, shuffle=True, seed=1)
    val_texts, val_labels = kb.data.demo_examples("validation", 48)

    throughput = Throughput(warmup_steps=2, log_dir=str(tmp_path / "tb"), verbose=0)
    train = throughput.count_tokens(train_raw, model)
    metrics = ValidationMetrics(
        kb.data.from_examples(val_texts, val_labels, batch_size=16),
        output_dir=tmp_path / "cm",
        plot=True,
        class_names=["negative", "positive"],
        log_dir=str(tmp_path / "tb"),
    )
    callbacks = [
        throughput,
        LearningRateLogger(log_dir=str(tmp_path / "tb")),
        SparsityLogger(log_dir=str(tmp_path / "tb")),
        metrics,
        keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
        keras.callbacks.EarlyStopping(monitor="val_f1", mode="max", patience=5),
        keras.callbacks.ModelCheckpoint(
            str(tmp_path / "best.keras"), monitor="val_f1", mode="max", save_best_only=True
        ),
    ]
    start = time.perf_counter()
    history = model.fit(train, epochs=2, verbose=0, callbacks=callbacks)
    fit_seconds = time.perf_counter() - start
    return types.SimpleNamespace(
        fit_seconds=fit_seconds,
        model=model, history=history.history, throughput=throughput, metrics=metrics,
        schedule=schedule, texts=texts, val_texts=val_texts, val_labels=val_labels,
        path=tmp_path,
    )


@pytest.mark.slow  # shares one fit of the tiny model (~15-60 s)
def test_keys_reach_history_csvlogger_checkpoint_and_tensorboard(fitted):
    h, tmp_path = fitted.history, fitted.path
    for key in (
        "examples_per_second", "tokens_per_second", "learning_rate", "sparsity",
        "val_accuracy", "val_precision", "val_recall", "val_f1", "val_mcc",
        "val_f1_macro", "val_precision_macro", "val_recall_macro", "val_f1_micro",
    ):
        assert len(h[key]) == 2, key
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and "val_f1" in rows[0] and "tokens_per_second" in rows[0]
    assert os.path.exists(tmp_path / "best.keras")  # ModelCheckpoint saw val_f1
    events = [n for n in os.listdir(tmp_path / "tb") if n.startswith("events.out.tfevents")]
    assert events
    tags = set()
    for name in events:
        for event in tf.compat.v1.train.summary_iterator(str(tmp_path / "tb" / name)):
            tags.update(v.tag for v in event.summary.value)
    assert {"epoch_tokens_per_second", "epoch_learning_rate", "epoch_val_f1"} <= tags


@pytest.mark.slow  # shares one fit of the tiny model (~15-60 s)
def test_throughput_counts_real_tokens_and_skips_warmup(fitted):
    # 6 steps per epoch, 2 skipped in epoch 1; epoch 2 counts every example and
    # exactly the real (unpadded) tokens of the whole training set.
    throughput, h = fitted.throughput, fitted.history
    assert throughput.skipped_steps == 2
    first, second = throughput.epoch_rates
    assert first["steps"] == 4 and second["steps"] == 6
    assert second["examples"] == 96
    assert second["tokens"] == _real_tokens(fitted.model, fitted.texts)
    assert second["tokens"] < 96 * 32  # real tokens, not the padded length
    assert 0 < first["tokens"] < second["tokens"]
    # Both rates share the epoch's time: their ratio is the real tokens per example,
    # counted here from the preprocessor's padding mask.
    assert h["tokens_per_second"][1] / h["examples_per_second"][1] == pytest.approx(
        _real_tokens(fitted.model, fitted.texts) / 96
    )
    # The rate is the examples over the epoch's time, which lies inside the whole fit call.
    assert 96 / h["examples_per_second"][1] <= fitted.fit_seconds


@pytest.mark.slow  # shares one fit of the tiny model (~15-60 s)
def test_learning_rate_is_the_rate_of_the_last_step(fitted):
    # 6 steps per epoch: the last step of epoch 1 is step 5, of epoch 2 step 11.
    h, schedule = fitted.history, fitted.schedule
    assert h["learning_rate"][0] == pytest.approx(float(schedule(5)), rel=1e-6)
    assert h["learning_rate"][1] == pytest.approx(float(schedule(11)), rel=1e-6)
    assert h["sparsity"] == [0.0, 0.0]  # dense weights: no exact zeros


@pytest.mark.slow  # shares one fit of the tiny model (~15-60 s)
def test_validation_metrics_match_predict_by_hand(fitted):
    h, tmp_path = fitted.history, fitted.path
    logits = fitted.model.predict(np.array(fitted.val_texts), verbose=0)
    predictions = np.argmax(logits, axis=1)
    cm, expected = _binary_by_hand(fitted.val_labels, predictions)
    np.testing.assert_array_equal(fitted.metrics.confusion_matrix, cm)
    for key, value in expected.items():
        assert h["val_" + key][1] == pytest.approx(value), key
    assert h["val_f1_micro"][1] == pytest.approx(expected["accuracy"])  # single-label
    saved = json.loads((tmp_path / "cm" / "confusion_matrix.json").read_text())
    assert saved["matrix"] == cm.astype(int).tolist()
    assert saved["labels"] == ["negative", "positive"]
    assert (tmp_path / "cm" / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # shares one fit of the tiny model (~15-60 s)
def test_throughput_without_token_counting_and_per_step_logging(fitted):
    model = fitted.model  # already traced: no second compilation
    throughput = Throughput(warmup_steps=1, every_n_steps=2, verbose=0)
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append(dict(logs))
    )
    history = model.fit(
        kb.data.demo_dataset("train", 16, size=80), epochs=2, verbose=0,
        callbacks=[throughput, record],
    )
    # Examples come from Keras's own loss tracker: exact, including the last partial batch.
    assert throughput.epoch_rates[1]["examples"] == 80
    assert throughput.epoch_rates[0]["examples"] == 80 - 16
    assert all(math.isnan(v) for v in history.history["tokens_per_second"])
    logged = [("examples_per_second" in logs) for logs in seen[:5]]
    assert logged == [False, True, False, True, False]

    # A repeated dataset with steps_per_epoch: Keras keeps one iterator across
    # epochs, so epoch 2 trains on batches 3-5 and must count exactly their tokens.
    texts, labels = kb.data.demo_examples("train", 96)
    counted = Throughput(warmup_steps=0, verbose=0)
    data = kb.data.from_examples(texts, labels, batch_size=16).repeat()
    model.fit(counted.count_tokens(data, model), epochs=2, steps_per_epoch=3, verbose=0,
              callbacks=[counted])
    assert [r["tokens"] for r in counted.epoch_rates] == [
        _real_tokens(model, texts[:48]), _real_tokens(model, texts[48:])]
    assert [r["examples"] for r in counted.epoch_rates] == [48, 48]


def test_validation_metrics_on_tuple_data_and_single_score_output(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    x = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    cb = ValidationMetrics((x, y), threshold=0.5, batch_size=8)
    history = model.fit(x, y, epochs=1, verbose=0, callbacks=[cb])
    predictions = (model.predict(x, verbose=0).reshape(-1) > 0.5).astype(int)
    _, expected = _binary_by_hand(y, predictions)
    for key, value in expected.items():
        assert history.history["val_" + key][0] == pytest.approx(value), key


def test_sparsity_logger_measures_exact_zeros(tiny_classifier):
    from keras_bertopt.selection import TRANSFORMER_KERNELS, select_variables

    model = tiny_classifier
    kernels = select_variables(model, TRANSFORMER_KERNELS)
    query = kernels[0]
    value = keras.ops.convert_to_numpy(query).copy()
    value.reshape(-1)[: value.size // 4] = 0.0
    query.assign(value)
    logger = SparsityLogger(per_layer=True)
    logger.set_model(model)
    logs = {}
    logger.on_epoch_end(0, logs)
    total = sum(int(np.prod(v.shape)) for v in kernels)
    assert logs["sparsity"] == pytest.approx((value.size // 4) / total)
    assert logs[f"sparsity/{query.path}"] == pytest.approx((value.size // 4) / value.size)
    assert logger.layer_sparsity[kernels[1].path] == 0.0


def test_bad_arguments_fail_before_training(tiny_classifier):
    with pytest.raises(ValueError, match="warmup_steps"):
        Throughput(warmup_steps=-1)
    with pytest.raises(ValueError, match="every_n_steps"):
        LearningRateLogger(every_n_steps=0)
    with pytest.raises(ValueError, match="include"):
        SparsityLogger(include="transformer_(")
    with pytest.raises(ValueError, match="`data`"):
        ValidationMetrics([1, 2, 3])
    with pytest.raises(ValueError, match="plot"):
        ValidationMetrics(([0.0], [0]), plot=True)
    with pytest.raises(ValueError, match="dataset"):
        Throughput().count_tokens([1, 2])
    with pytest.raises(ValueError, match="padding_mask"):
        Throughput().count_tokens(kb.data.demo_dataset("validation"))
    model = compile_classifier(tiny_classifier)
    with pytest.raises(ValueError, match="matched no variable"):
        model.fit(
            kb.data.demo_dataset("train", 16, size=16), verbose=0,
            callbacks=[SparsityLogger(include="no_such_layer")],
        )


def test_callback_configs_round_trip():
    for cb in (
        Throughput(warmup_steps=5, every_n_steps=10),
        LearningRateLogger(every_n_steps=3),
        SparsityLogger(include=[r"query/kernel$"], per_layer=True),
    ):
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(cb))
        assert type(restored) is type(cb) and restored.get_config() == cb.get_config()
    vm = ValidationMetrics(([0.0], [0]), num_classes=3, prefix="dev_")
    again = ValidationMetrics.from_config(vm.get_config(), data=([1.0], [1]))
    assert again.get_config() == vm.get_config()
    with pytest.raises(ValueError, match="data"):
        ValidationMetrics.from_config(vm.get_config())


class _BatchLogs(keras.callbacks.Callback):
    """Copies each batch's logs after the callbacks before it have added to them."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(dict(logs or {}))


@pytest.mark.slow  # one short fit of the tiny model
def test_every_n_steps_and_per_group_rates_of_the_layerwise_optimizer(tiny_classifier):
    from keras_bertopt.callbacks import LearningRateLogger, SparsityLogger
    from keras_bertopt.data import demo_dataset
    from keras_bertopt.optimizers import create_optimizer
    from keras_bertopt.pruning import ConstantSparsity, MagnitudePruning

    model = tiny_classifier
    optimizer = create_optimizer(1e-3, total_steps=4, warmup_steps=0, layerwise_lr_decay=0.5,
                                 model=model)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    record = _BatchLogs()
    model.fit(demo_dataset("train", 16).take(4), epochs=1, verbose=0, callbacks=[
        MagnitudePruning(ConstantSparsity(0.5, begin_step=1, frequency=1)),
        LearningRateLogger(every_n_steps=2), SparsityLogger(every_n_steps=2), record])
    logged = [sorted(k for k in b if k.startswith(("learning_rate", "sparsity")))
              for b in record.batches]
    assert logged[0] == logged[2] == []  # only every 2nd step
    assert logged[1] == logged[3] and "learning_rate/embeddings" in logged[1]
    # Linear decay from 1e-3 to 0 over 4 steps; batch 2 applied step 1, batch 4 step 3.
    # Layer-wise decay 0.5, 2 layers: layer k x 0.5**(2-k), embeddings x 0.5**3, head x 1.
    for batch, lr in ((1, 7.5e-4), (3, 2.5e-4)):
        logs = record.batches[batch]
        assert logs["learning_rate"] == pytest.approx(lr, rel=1e-5)
        assert logs["learning_rate/head"] == pytest.approx(lr, rel=1e-5)
        assert logs["learning_rate/transformer_layer_0"] == pytest.approx(lr * 0.25, rel=1e-5)
        assert logs["learning_rate/transformer_layer_1"] == pytest.approx(lr * 0.5, rel=1e-5)
        assert logs["learning_rate/embeddings"] == pytest.approx(lr * 0.125, rel=1e-5)
        assert logs["sparsity"] == pytest.approx(0.5, abs=0.01)
