"""The metrics callbacks on JAX without per-step host syncs, with steps_per_execution > 1."""

import keras
import numpy as np
import pytest

from keras_bertopt.callbacks import LearningRateLogger, SparsityLogger, Throughput
from keras_bertopt.data import demo_examples
from keras_bertopt.models import TinyConfig, build_classifier


def test_async_safe_unless_asked_for_per_step_logs():
    # Keras dispatches steps asynchronously only if every callback with an
    # on_train_batch_end hook says it is async-safe.
    for cls in (Throughput, LearningRateLogger, SparsityLogger):
        assert cls().async_safe is True
        assert cls(every_n_steps=2).async_safe is False


def test_rates_and_logs_with_steps_per_execution():
    model = build_classifier(TinyConfig(seed=0, dropout=0.0), num_classes=2, sequence_length=16)
    texts, labels = demo_examples("train", 72)  # 9 batches of 8: 5 executions of 2, the last 1
    x = {k: np.asarray(keras.ops.convert_to_numpy(v)) for k, v in model.preprocessor(texts).items()}
    model.preprocessor = None
    schedule = keras.optimizers.schedules.PolynomialDecay(1e-3, decay_steps=20)
    model.compile(optimizer=keras.optimizers.Adam(schedule), steps_per_execution=2,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    throughput = Throughput(warmup_steps=3, verbose=0)
    history = keras.Model.fit(model, x, np.asarray(labels), batch_size=8, epochs=2, verbose=0,
                              shuffle=False,
                              callbacks=[throughput, LearningRateLogger(), SparsityLogger()])
    # Warm-up ends at the first execution boundary at or after 3 steps: step 4.
    assert throughput.skipped_steps == 4
    first, second = throughput.epoch_rates
    assert (first["steps"], first["examples"]) == (5, 72 - 4 * 8)
    assert (second["steps"], second["examples"]) == (9, 72)
    assert history.history["examples_per_second"][1] == pytest.approx(72 / second["seconds"])
    # The rate of the last step taken: step 17 of 0..17, linear decay over 20 steps from
    # 1e-3 to PolynomialDecay's default end 1e-4.
    assert history.history["learning_rate"][-1] == pytest.approx(
        (1e-3 - 1e-4) * (1 - 17 / 20) + 1e-4, rel=1e-5)
    assert history.history["sparsity"][-1] == 0.0
