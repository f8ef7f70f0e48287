"""Keras's own distribution API on JAX: `keras.distribution.DataParallel` over four virtual
CPU devices (tests_jax/conftest.py) with pruning, QAT and distillation, each compared with
the same training on one device; and `Distiller` in `fit` on token ids (no tf.data).
"""

import contextlib

import jax
import keras
import numpy as np
import pytest

from keras_bertopt.data import demo_examples
from keras_bertopt.distillation import Distiller
from keras_bertopt.models import TinyConfig, build_classifier
from keras_bertopt.pruning import MagnitudePruning, PolynomialSparsity, get_state
from keras_bertopt.quantization import quantize_aware

SEQ = 16
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _numpy(v):
    return np.asarray(keras.ops.convert_to_numpy(v))


def _data(n=32):
    model = build_classifier(TinyConfig(seed=0), num_classes=2, sequence_length=SEQ)
    texts, labels = demo_examples("train", n)
    x = {k: _numpy(v) for k, v in model.preprocessor(texts).items()}
    return x, np.asarray(labels)


def _model(seed=0, num_layers=2):
    model = build_classifier(TinyConfig(seed=seed, dropout=0.0, num_layers=num_layers),
                             num_classes=2, sequence_length=SEQ, dropout=0.0)
    model.preprocessor = None
    return model


def _on(devices, train):
    """`train()` under DataParallel over `devices` (None: no distribution, one device)."""
    scope = (keras.distribution.DataParallel(devices=devices).scope() if devices
             else contextlib.nullcontext())
    with scope:
        return train()


def _close(one, many):
    assert one.keys() == many.keys()
    for key in one:
        # Summation order differs across devices; Adam (lr 1e-2 moves weights by ~1e-2 a
        # step) turns that into ~1e-5 on a few weights: far below one step.
        np.testing.assert_allclose(many[key], one[key], rtol=2e-4, atol=2e-5, err_msg=key)


def test_four_virtual_devices_are_there():
    assert len(jax.devices("cpu")) == 4


def _pruned():
    x, y = _data()
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=LOSS)
    pruning = MagnitudePruning(PolynomialSparsity(0.0, 0.5, begin_step=0, end_step=4,
                                                  frequency=2))
    keras.Model.fit(model, x, y, batch_size=8, epochs=1, verbose=0, shuffle=False,
                    callbacks=[pruning])
    masks = [_numpy(m) for m in get_state(model).masks]
    for v, m in zip(pruning.variables, masks, strict=True):
        assert np.count_nonzero(_numpy(v)[m == 0]) == 0 and (m == 0).any()
    return {v.path: _numpy(v) for v in model.weights}


def test_data_parallel_pruning_equals_one_device():
    _close(_on(None, _pruned), _on(jax.devices("cpu"), _pruned))


def _qat():
    x, y = _data()
    qat = quantize_aware(_model())
    qat.compile(optimizer=keras.optimizers.Adam(1e-3), loss=LOSS)
    keras.Model.fit(qat, x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    assert qat.qat_step == 4
    return {v.path: _numpy(v) for v in qat.weights}


def test_data_parallel_qat_equals_one_device():
    _close(_on(None, _qat), _on(jax.devices("cpu"), _qat))


def _distilled():
    x, y = _data()
    teacher, student = _model(seed=1), _model(seed=2, num_layers=1)
    distiller = Distiller(teacher, student, temperature=2.0, alpha=0.5)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    distiller.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    return {v.path: _numpy(v) for v in student.weights}


def test_data_parallel_distillation_equals_one_device():
    _close(_on(None, _distilled), _on(jax.devices("cpu"), _distilled))


def test_distiller_on_token_ids_matches_a_hand_computed_loss():
    x, y = _data()
    teacher, student = _model(seed=1), _model(seed=2, num_layers=1)
    for model, scale in ((teacher, 300.0), (student, 100.0)):  # logits of order 1, not 1e-3
        head = model.output_dense.kernel
        head.assign(_numpy(head) * scale)
    t_before = [_numpy(v) for v in teacher.weights]
    s_before = [_numpy(v) for v in student.trainable_weights]
    distiller = Distiller(teacher, student, temperature=2.0, alpha=1.0)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3))
    logs = distiller.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    # Hinton's loss by hand: T**2 * KL(softmax(t/T) || softmax(s/T)), mean over the batch.
    t = _numpy(teacher.predict(x, verbose=0)) / 2.0
    s = _numpy(student.predict(x, verbose=0)) / 2.0
    p = np.exp(t - t.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    log_q = s - s.max(-1, keepdims=True)
    log_q -= np.log(np.exp(log_q).sum(-1, keepdims=True))
    kl = 4.0 * np.mean(np.sum(p * (np.log(p) - log_q), axis=-1))
    assert logs["distillation_loss"] == pytest.approx(kl, rel=1e-4)
    history = distiller.fit(x, y, batch_size=8, epochs=3, verbose=0).history
    assert history["distillation_loss"][-1] < history["distillation_loss"][0]
    assert all(np.array_equal(a, _numpy(v)) for a, v in zip(t_before, teacher.weights,
                                                                strict=True))
    assert any(not np.array_equal(a, _numpy(v))
               for a, v in zip(s_before, student.trainable_weights, strict=True))
