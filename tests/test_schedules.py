"""LR schedules: boundary values, tf.function + int64 steps, serialization, .keras save/load."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_bertopt import schedules

PEAK = 1e-3
TOTAL = 100
WARMUP = 10

# kind -> (extra kwargs, expected rate at total_steps (and after), a function of
# steps-since-warm-up s giving the expected rate in the decay phase)
CASES = {
    "constant": ({}, PEAK, lambda s: PEAK),
    "linear": ({}, 0.0, lambda s: PEAK * (1 - s / 90)),
    "polynomial": (
        {"power": 2.0, "end_learning_rate": 1e-5},
        1e-5,
        lambda s: (PEAK - 1e-5) * (1 - s / 90) ** 2 + 1e-5,
    ),
    "cosine": (
        {"end_learning_rate": 1e-5},
        1e-5,
        lambda s: 1e-5 + (PEAK - 1e-5) * 0.5 * (1 + math.cos(math.pi * s / 90)),
    ),
    "exponential": (
        {"end_learning_rate": 1e-5},
        1e-5,
        lambda s: PEAK * (1e-5 / PEAK) ** (s / 90),
    ),
    "step": (
        {"boundaries": [50, 80], "factor": 0.5},
        PEAK * 0.25,
        lambda s: PEAK * (1.0 if s + WARMUP < 50 else 0.5 if s + WARMUP < 80 else 0.25),
    ),
    "inverse_sqrt": ({}, PEAK * math.sqrt(10 / 100), lambda s: PEAK * math.sqrt(10 / (s + 10))),
}


def make(kind, **override):
    kwargs, _, _ = CASES[kind]
    args = dict(peak_learning_rate=PEAK, total_steps=TOTAL, warmup_steps=WARMUP, **kwargs)
    args.update(override)
    return schedules.create(kind, **args)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_boundaries(kind):
    _, at_end, decay = CASES[kind]
    lr = make(kind)
    assert isinstance(lr, keras.optimizers.schedules.LearningRateSchedule)
    np.testing.assert_allclose(float(lr(0)), 0.0, atol=1e-12)
    np.testing.assert_allclose(float(lr(5)), PEAK / 2, rtol=1e-6)  # half-way up the ramp
    np.testing.assert_allclose(float(lr(WARMUP)), PEAK, rtol=1e-6)  # end of warm-up: peak
    for step in (WARMUP + 1, 49, 50, 79, 80, 99):
        np.testing.assert_allclose(float(lr(step)), decay(step - WARMUP), rtol=1e-5, atol=1e-12)
    for step in (TOTAL, TOTAL + 1, 10 * TOTAL):  # held after total_steps
        np.testing.assert_allclose(float(lr(step)), at_end, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_tf_function_and_int64_step(kind):
    lr = make(kind)
    step = tf.Variable(0, dtype=tf.int64)  # what optimizer.iterations is
    traced = tf.function(lambda: lr(step))
    for value in (0, WARMUP, 55, TOTAL, 3 * TOTAL):
        step.assign(value)
        np.testing.assert_allclose(float(traced()), float(lr(value)), rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(
            float(lr(tf.constant(value, tf.int32))), float(lr(value)), rtol=1e-6, atol=1e-12
        )


@pytest.mark.parametrize("kind", sorted(CASES))
def test_serialize_round_trip(kind):
    lr = make(kind)
    config = keras.saving.serialize_keras_object(lr)
    assert config["registered_name"] == "keras_bertopt>WarmUp"
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is schedules.WarmUp
    assert type(restored.after) is type(lr.after)
    for step in (0, 3, WARMUP, 37, 81, TOTAL, 500):
        assert float(restored(step)) == pytest.approx(float(lr(step)), rel=1e-7, abs=1e-12)
    # get_config -> from_config too
    again = schedules.WarmUp.from_config(lr.get_config())
    assert float(again(42)) == pytest.approx(float(lr(42)), rel=1e-7)


def test_inverse_sqrt_class_round_trip():
    lr = schedules.InverseSqrtDecay(0.01, timescale=4)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(lr))
    assert float(restored(12)) == pytest.approx(0.01 * math.sqrt(4 / 16), rel=1e-6)


def test_warmup_wraps_float_and_power():
    lr = schedules.WarmUp(0.5, warmup_steps=4, initial_learning_rate=0.1, power=2.0)
    np.testing.assert_allclose(float(lr(0)), 0.1, rtol=1e-6)
    np.testing.assert_allclose(float(lr(2)), 0.1 + 0.4 * 0.25, rtol=1e-6)
    np.testing.assert_allclose(float(lr(4)), 0.5, rtol=1e-6)
    np.testing.assert_allclose(float(lr(400)), 0.5, rtol=1e-6)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(lr))
    assert float(restored(3)) == pytest.approx(float(lr(3)))


def test_warmup_offsets_the_wrapped_schedule():
    # Hugging Face convention: the decay's clock starts when warm-up ends.
    decay = keras.optimizers.schedules.PolynomialDecay(1.0, 10, end_learning_rate=0.0)
    lr = schedules.WarmUp(decay, warmup_steps=5)
    assert float(lr(5)) == pytest.approx(1.0)
    assert float(lr(10)) == pytest.approx(0.5)
    assert float(lr(15)) == pytest.approx(0.0, abs=1e-7)


def test_warmup_ratio():
    lr = schedules.create("linear", peak_learning_rate=1.0, total_steps=95, warmup_ratio=0.1)
    assert lr.warmup_steps == 10  # ceil(9.5)
    assert float(lr(10)) == pytest.approx(1.0)
    assert float(lr(95)) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_compiled_model_survives_keras_save_load(kind, tmp_path):
    lr = make(kind)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=lr), loss="mse")
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 1), "float32")
    model.fit(x, y, batch_size=2, epochs=6, verbose=0)  # 12 steps: past the warm-up
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    restored = loaded.optimizer._learning_rate
    assert type(restored) is schedules.WarmUp
    assert int(loaded.optimizer.iterations.numpy()) == 12
    for step in (0, WARMUP, 12, 60, TOTAL, 2 * TOTAL):
        assert float(restored(step)) == pytest.approx(float(lr(step)), rel=1e-7, abs=1e-12)
    assert float(loaded.optimizer.learning_rate) == pytest.approx(float(lr(12)), rel=1e-6)
    loaded.fit(x, y, batch_size=2, epochs=1, verbose=0)  # keeps training


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(kind="sawtooth"), "kind"),
        (dict(peak_learning_rate=-1e-3), "peak_learning_rate"),
        (dict(peak_learning_rate=0.0), "peak_learning_rate"),
        (dict(end_learning_rate=-1.0), "end_learning_rate"),
        (dict(end_learning_rate=1.0), "end_learning_rate"),  # above the peak
        (dict(total_steps=10), "total_steps"),  # == warmup_steps: ends before it begins
        (dict(total_steps=5), "total_steps"),
        (dict(warmup_steps=-1), "warmup_steps"),
        (dict(warmup_ratio=1.0, warmup_steps=0), "warmup_ratio"),
        (dict(warmup_ratio=0.1), "warmup_ratio"),  # together with warmup_steps=10
        (dict(kind="step"), "boundaries"),
        (dict(kind="step", boundaries=[5]), "boundaries"),  # inside the warm-up
        (dict(kind="step", boundaries=[60, 50]), "boundaries"),
        (dict(kind="exponential"), "decay_rate"),
        (dict(kind="constant", end_learning_rate=1e-5), "end_learning_rate"),
        (dict(kind="inverse_sqrt", warmup_steps=0), "timescale"),
        (dict(kind="linear", power=2.0), "power"),  # unknown keyword for the kind
    ],
)
def test_bad_input_raises_naming_the_argument(kwargs, argument):
    args = dict(kind="linear", peak_learning_rate=PEAK, total_steps=TOTAL, warmup_steps=WARMUP)
    args.update(kwargs)
    kind = args.pop("kind")
    with pytest.raises(ValueError, match=argument):
        schedules.create(kind, **args)


def test_warmup_bad_input():
    with pytest.raises(ValueError, match="warmup_steps"):
        schedules.WarmUp(1e-3, warmup_steps=-2)
    with pytest.raises(ValueError, match="initial_learning_rate"):
        schedules.WarmUp(1e-3, warmup_steps=2, initial_learning_rate=-1.0)
    with pytest.raises(ValueError, match="after"):
        schedules.WarmUp("fast", warmup_steps=2)
    with pytest.raises(ValueError, match="after"):
        schedules.WarmUp(-0.1, warmup_steps=2)
    with pytest.raises(ValueError, match="power"):
        schedules.WarmUp(1e-3, warmup_steps=2, power=0)
