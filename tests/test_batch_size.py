"""Batch-size finder and gradient accumulation through create_optimizer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bertopt as kb
from keras_bertopt.batch_size import accumulation_plan, find_batch_size


def _compiled(optimizer="adamw"):
    model = kb.models.build_classifier(
        kb.models.TinyConfig(dropout=0.0, seed=0), 2, sequence_length=16, dropout=0.0
    )
    model.compile(
        optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


def _values(model):
    return [keras.ops.convert_to_numpy(v).copy() for v in model.weights]


def test_finder_stops_at_the_limit_reports_and_restores_the_model():
    model = _compiled()
    before = _values(model)
    report = find_batch_size(model, 16, start=2, limit=12, steps=1)
    assert [t.batch_size for t in report.trials] == [2, 4, 8]  # 16 would pass the limit
    assert all(t.fits for t in report.trials) and report.stopped == "limit"
    assert report.largest == 8
    rates = {t.batch_size: t.tokens_per_second for t in report.trials}
    assert report.fastest == max(rates, key=rates.get)  # the best measured rate, not the last
    for t in report.trials:
        assert t.tokens_per_second == pytest.approx(t.examples_per_second * 16)
        assert t.examples_per_second == pytest.approx(t.batch_size / t.seconds_per_step)
    text = str(report)
    assert "stopped: limit" in text and "largest that ran: 8" in text
    assert report.to_dict()["trials"][2]["batch_size"] == 8
    for a, b in zip(before, _values(model), strict=True):
        np.testing.assert_array_equal(a, b)  # trials did not train the model
    assert int(model.optimizer.iterations) == 0


def test_finder_stops_at_the_first_size_out_of_memory():
    model = _compiled()
    tried = []

    def step(model, features, labels):
        # Stands in for a device with room for 4 examples: larger batches fail to
        # allocate the way TensorFlow reports it.
        tried.append(len(labels))
        if len(labels) > 4:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
        keras.Model.train_on_batch(model, features, labels)

    report = find_batch_size(model, 16, start=1, limit=64, steps=1, step_fn=step)
    assert [(t.batch_size, t.fits) for t in report.trials] == [
        (1, True), (2, True), (4, True), (8, False)]
    assert report.stopped == "out of memory" and report.choose("largest") == 4
    assert max(tried) == 8  # nothing beyond the failing size was tried
    assert "out of memory" in str(report)


def test_finder_rejects_bad_arguments_before_running():
    model = _compiled()
    with pytest.raises(ValueError, match="`limit`"):
        find_batch_size(model, 16, start=8, limit=4)
    with pytest.raises(ValueError, match="`sequence_length`"):
        find_batch_size(model, 0)
    uncompiled = kb.models.build_classifier(kb.models.TinyConfig(), 2, 16)
    uncompiled.optimizer = None
    with pytest.raises(ValueError, match="compiled"):
        find_batch_size(uncompiled, 16)


def test_accumulation_plan_splits_into_equal_micro_batches():
    assert accumulation_plan(256, 64).steps == 4
    plan = accumulation_plan(96, 40)
    assert (plan.micro_batch_size, plan.steps) == (32, 3)
    assert plan.optimizer_kwargs == {"gradient_accumulation_steps": 3}
    assert accumulation_plan(16, 32).optimizer_kwargs == {}
    with pytest.raises(ValueError, match="`max_batch_size`"):
        accumulation_plan(16, 0)


def test_gradient_accumulation_equals_one_large_batch_step():
    """Two optimizer steps: batches of 16 vs four micro-batches of 8 with accumulation 2.

    Same initial weights, dropout 0, AdamW + weight decay + clipping + a decaying
    schedule (indexed by optimizer steps, not micro-batches). Adam's epsilon is
    1.0 so its update stays near-linear in the gradient: with a tiny epsilon,
    Adam divides a near-zero gradient by its own size and float summation noise
    (the only difference between the two runs) could flip whole updates. Keras
    3.15 alone fails this: it evaluates the schedule at the micro-batch count
    (`create_optimizer`'s optimizers evaluate it at the optimizer step).
    """
    texts, labels = kb.data.demo_examples("train", 32)
    texts, labels = np.array(texts), np.array(labels)

    def optimizer(**kwargs):
        return kb.optimizers.create_optimizer(
            0.5, total_steps=4, warmup_steps=0, weight_decay=0.01, epsilon=1.0, **kwargs
        )

    keras.utils.set_random_seed(0)
    large = _compiled(optimizer())
    keras.utils.set_random_seed(0)
    accumulated = _compiled(optimizer(gradient_accumulation_steps=2))
    start = _values(accumulated)
    for a, b in zip(_values(large), start, strict=True):
        np.testing.assert_array_equal(a, b)

    for step in range(2):
        batch = slice(16 * step, 16 * step + 16)
        before = _values(accumulated)
        large.train_on_batch(texts[batch], labels[batch])
        accumulated.train_on_batch(texts[batch][:8], labels[batch][:8])
        for a, b in zip(before, _values(accumulated), strict=True):
            np.testing.assert_array_equal(a, b)  # first micro-batch: no update yet
        accumulated.train_on_batch(texts[batch][8:], labels[batch][8:])
        diff = max(float(np.max(np.abs(a - b)))
                   for a, b in zip(_values(large), _values(accumulated), strict=True))
        assert diff < 1e-5, diff
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(start, _values(large), strict=True))
    assert moved > 1e-4  # the steps really changed the weights (30x the tolerance)
    assert int(accumulated.optimizer.iterations) == int(large.optimizer.iterations) == 2
