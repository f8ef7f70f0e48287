"""Pruning masks inside the compiled JAX train step (`keras_bertopt.pruning.masking`).

The model is the tiny keras-hub BERT classifier fed token ids (no preprocessor), trained
with `keras.Model.fit` on NumPy arrays: the JAX path without tf.data in the loop.
"""

import keras
import numpy as np
import pytest

from keras_bertopt.data import demo_examples
from keras_bertopt.models import TinyConfig, build_classifier
from keras_bertopt.pruning import (
    MagnitudePruning,
    PolynomialSparsity,
    StructuredPruning,
    device_masks,
    get_state,
    masks,
    removed_units,
    strip_pruning,
    strip_structure,
)
from keras_bertopt.pruning.masking import masked_step_installed

SEQ = 16


def _model(dropout=0.0):
    model = build_classifier(TinyConfig(seed=0, dropout=dropout), num_classes=2,
                             sequence_length=SEQ, dropout=dropout)
    texts, labels = demo_examples("train", 32)
    x = {k: keras.ops.convert_to_numpy(v) for k, v in model.preprocessor(texts).items()}
    model.preprocessor = None
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, x, np.asarray(labels)


def _fit(model, x, y, **kwargs):
    return keras.Model.fit(model, x, y, batch_size=8, epochs=1, verbose=0, shuffle=False,
                           **kwargs)


def _numpy(v):
    return np.asarray(keras.ops.convert_to_numpy(v))


def test_the_pruning_callbacks_do_no_per_batch_end_work():
    # Any on_train_batch_end hook makes Keras read the logs every step (no async dispatch).
    base = keras.callbacks.Callback.on_train_batch_end
    assert MagnitudePruning.on_train_batch_end is base
    assert StructuredPruning.on_train_batch_end is base


def test_the_step_keeps_zeros_at_zero_and_matches_a_hand_masked_reference():
    model, x, y = _model()
    pruning = MagnitudePruning(PolynomialSparsity(0.0, 0.5, begin_step=0, end_step=2,
                                                  frequency=1))
    pruning.set_model(model)
    pruning.update_masks(0.5)
    mask_values = [_numpy(m) for m in pruning.state.masks]
    reference, _, _ = _model()
    by_path = {v.path: v for v in model.weights}
    for v in reference.weights:
        v.assign(_numpy(by_path[v.path]).copy())  # a copy: fit donates its buffers
    # No callback at all: the masks installed in the step must hold by themselves.
    _fit(model, x, y)
    assert masked_step_installed(model)
    # Reference: plain fit one batch at a time, masks applied by hand in NumPy after each.
    pruned = {v.path: i for i, v in enumerate(pruning.variables)}
    ref_vars = [v for v in reference.trainable_variables if v.path in pruned]
    for start in range(0, len(y), 8):
        _fit(reference, {k: a[start:start + 8] for k, a in x.items()}, y[start:start + 8])
        for v in ref_vars:
            v.assign(_numpy(v) * mask_values[pruned[v.path]])
    ref = {v.path: _numpy(v) for v in reference.trainable_variables}
    for v in model.trainable_variables:
        np.testing.assert_allclose(_numpy(v), ref[v.path], rtol=1e-4, atol=1e-6)
    for v, mask in zip(pruning.variables, mask_values, strict=True):
        assert np.count_nonzero(_numpy(v)[mask == 0]) == 0
        assert np.count_nonzero(_numpy(v)[mask == 1]) == np.count_nonzero(mask)
    assert int(_numpy(get_state(model).step)) == len(y) // 8  # counted inside the step
    strip_pruning(model)
    assert not masked_step_installed(model) and "train_step" not in vars(model)


class _MaskSparsityAtBatchBegin(keras.callbacks.Callback):
    def __init__(self, pruning):
        super().__init__()
        self.pruning, self.seen = pruning, []

    def on_train_batch_begin(self, batch, logs=None):
        self.model.jax_state_sync()
        values = [_numpy(m) for m in self.pruning.state.masks]
        self.seen.append((batch, sum(int(np.sum(m == 0)) for m in values)
                          / sum(m.size for m in values)))


def test_schedule_runs_between_executions_with_steps_per_execution():
    model, x, y = _model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), steps_per_execution=2,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # Steps 1..4 in two executions of 2; linear schedule: sparsity 0.25 due at step 2,
    # 0.5 at step 4 (the epoch's last step: applied at the epoch's end).
    pruning = MagnitudePruning(PolynomialSparsity(0.0, 0.5, begin_step=0, end_step=4,
                                                  frequency=2, power=1))
    seen = _MaskSparsityAtBatchBegin(pruning)
    history = _fit(model, x, y, callbacks=[pruning, seen]).history
    assert [b for b, _ in seen.seen] == [0, 2]
    assert seen.seen[0][1] == 0.0 and seen.seen[1][1] == pytest.approx(0.25, abs=0.01)
    assert int(_numpy(pruning.state.step)) == 4
    assert history["sparsity"] == [pytest.approx(0.5, abs=0.01)]
    for v, m in zip(pruning.variables, pruning.state.masks, strict=True):
        mask = _numpy(m)
        assert int(np.sum(mask == 0)) == masks.num_pruned(mask.size, 0.5)
        assert np.count_nonzero(_numpy(v)[mask == 0]) == 0


def _tied_weights(shape, seed):
    # Integer magnitudes: many exact ties, so the index tie-break is tested too.
    return np.random.default_rng(seed).integers(-4, 5, size=shape).astype("float32")


@pytest.mark.parametrize("shape,axes", [((8, 12), None), ((16, 2, 4), (0,)),
                                        ((2, 4, 16), (0, 1))])
def test_device_masks_equal_the_numpy_reference(shape, axes):
    w = _tied_weights(shape, seed=len(shape))
    view = masks.kernel_view(shape, axes)
    dev = keras.ops.convert_to_tensor(w)
    np.testing.assert_array_equal(_numpy(device_masks.magnitude_mask(dev, 0.4)),
                                  masks.magnitude_mask(w, 0.4))
    np.testing.assert_array_equal(_numpy(device_masks.block_mask(dev, 0.5, (2, 4), view)),
                                  masks.block_mask(w, 0.5, (2, 4), view))
    np.testing.assert_array_equal(_numpy(device_masks.n_m_mask(dev, 2, 4, view)),
                                  masks.n_m_mask(w, 2, 4, view))
    other = _tied_weights((8, 4), seed=9)
    for block in (None, (2, 2)):
        views = [view, masks.kernel_view(other.shape)]
        got = device_masks.global_masks([dev, keras.ops.convert_to_tensor(other)], 0.6,
                                        block, views)
        want = masks.global_masks([w, other], 0.6, block, views)
        for g, r in zip(got, want, strict=True):
            np.testing.assert_array_equal(_numpy(g), r)


def test_structured_pruning_in_fit_equals_its_stripped_model():
    model, x, y = _model()
    pruning = StructuredPruning(PolynomialSparsity(0.0, 0.5, begin_step=0, end_step=2,
                                                   frequency=1))
    history = _fit(model, x, y, callbacks=[pruning]).history
    assert history["pruned_heads"] == [0.5] and history["pruned_intermediate"] == [0.5]
    removed = removed_units(model)
    assert [len(r) for r in removed["heads"]] == [1, 1]
    _fit(model, x, y)  # again without the callback: the step keeps the units masked
    small = strip_structure(model)
    np.testing.assert_allclose(_numpy(keras.Model.predict(model, x, verbose=0)),
                               _numpy(keras.Model.predict(small, x, verbose=0)),
                               rtol=1e-4, atol=1e-5)
    assert small.backbone.count_params() < model.backbone.count_params()
