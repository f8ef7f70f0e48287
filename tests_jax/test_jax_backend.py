"""The backend-agnostic parts in `model.fit` on Keras's JAX backend, with a tiny keras-hub BERT.

Schedules, `create_optimizer` (layer-wise LR decay), `apply_regularization`, the metrics
callbacks, `quantize_aware` and `MagnitudePruning`. TFLite export and tf.distribute are
TensorFlow-only and tested in `tests/`.
"""

import time

import keras
import numpy as np
import pytest

from keras_bertopt.data import demo_dataset, demo_examples
from keras_bertopt.models import TinyConfig, build_classifier

SEQ = 16


def _model():
    return build_classifier(TinyConfig(seed=0), num_classes=2, sequence_length=SEQ)


def _loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def test_the_models_run_on_jax():
    import jax

    model = _model()
    # The variables hold JAX arrays and a forward pass returns one (TensorFlow would give tf
    # tensors), whatever the environment variables say.
    assert all(isinstance(v.value, jax.Array) for v in model.weights)
    out = model(model.preprocessor(["a good film"]))
    assert isinstance(out, jax.Array) and out.shape == (1, 2)


def test_optimizer_schedule_regularizers_and_metrics_callbacks_in_fit():
    from keras_bertopt import schedules
    from keras_bertopt.callbacks import LearningRateLogger, Throughput, ValidationMetrics
    from keras_bertopt.optimizers import create_optimizer
    from keras_bertopt.regularizers import apply_regularization

    model = _model()
    attached = apply_regularization(model, keras.regularizers.L2(1e-3))
    assert attached and all(p.endswith("kernel") for p in attached)
    kernels = {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}
    by_hand = sum(1e-3 * float(np.sum(np.square(kernels[p]))) for p in attached)
    assert float(keras.ops.sum(keras.ops.stack(model.losses))) == pytest.approx(by_hand, rel=1e-5)
    steps = 6
    optimizer = create_optimizer(1e-3, total_steps=steps, warmup_steps=2,
                                 layerwise_lr_decay=0.5, model=model)
    model.compile(optimizer=optimizer, loss=_loss(), metrics=["accuracy"])
    before = [keras.ops.convert_to_numpy(v).copy() for v in model.trainable_variables]
    val_texts, val_labels = demo_examples("validation", 32)
    start = time.perf_counter()
    history = model.fit(
        demo_dataset("train", 16).take(steps), epochs=1, verbose=0,
        callbacks=[LearningRateLogger(), Throughput(warmup_steps=1, verbose=0),
                   ValidationMetrics((np.asarray(val_texts), np.asarray(val_labels)))],
    ).history
    fit_seconds = time.perf_counter() - start
    moved = [np.abs(keras.ops.convert_to_numpy(v) - b).max()
             for v, b in zip(model.trainable_variables, before, strict=True)]
    assert min(moved) > 0.0  # every trainable variable was updated
    # The rate of the last step taken (step 5 of 0..5): 2 warm-up steps, then linear decay
    # over 4 steps: 1e-3 * (1 - 3/4). Layer-wise decay 0.5 with 2 layers: layer k gets
    # x 0.5**(2-k), the embeddings x 0.5**3, the head x 1.
    lr = 1e-3 * (1 - 3 / 4)
    np.testing.assert_allclose(history["learning_rate"][-1], lr, rtol=1e-5)
    np.testing.assert_allclose(history["learning_rate/transformer_layer_0"][-1], lr * 0.25,
                               rtol=1e-5)
    np.testing.assert_allclose(history["learning_rate/transformer_layer_1"][-1], lr * 0.5,
                               rtol=1e-5)
    np.testing.assert_allclose(history["learning_rate/embeddings"][-1], lr * 0.125, rtol=1e-5)
    assert float(schedules.create("linear", peak_learning_rate=1e-3, total_steps=steps,
                                  warmup_steps=2)(5)) == pytest.approx(lr)
    # 5 steps of 16 counted after 1 warm-up step, in a time inside the whole fit call.
    assert 5 * 16 / history["examples_per_second"][-1] <= fit_seconds
    predicted = np.argmax(model.predict(np.asarray(val_texts), verbose=0), axis=-1)
    np.testing.assert_allclose(history["val_accuracy"][-1],
                               np.mean(predicted == np.asarray(val_labels)), atol=1e-6)


def test_quantize_aware_trains_its_ranges_in_fit():
    from keras_bertopt.quantization import quantize_aware

    qat = quantize_aware(_model())
    initial = qat.activation_ranges()
    qat.compile(optimizer=keras.optimizers.Adam(1e-3), loss=_loss())
    history = qat.fit(demo_dataset("train", 16).take(3), epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][-1])
    assert qat.qat_step == 3
    assert qat.activation_ranges() != initial
    out = qat.predict(["a good film", "a bad film"], verbose=0)
    assert out.shape == (2, 2) and np.all(np.isfinite(out))


class _ZerosAfterEveryStep(keras.callbacks.Callback):
    """Records, after each batch, the weights the next step starts from."""

    def __init__(self, pruning):
        super().__init__()
        self.pruning = pruning
        self.regrown = []
        self.masked = []
        self.snapshots = []

    def on_train_batch_end(self, batch, logs=None):
        # MagnitudePruning does no per-batch work: bring fit's state into the variables here.
        self.model.jax_state_sync()
        weights = [keras.ops.convert_to_numpy(v) for v in self.pruning.variables]
        masks = [keras.ops.convert_to_numpy(m) for m in self.pruning.state.masks]
        pairs = zip(weights, masks, strict=True)
        self.regrown.append(sum(int(np.count_nonzero(w[m == 0])) for w, m in pairs))
        self.masked.append(sum(int(m.size - np.count_nonzero(m)) for m in masks))
        self.snapshots.append(weights[0].copy())


def test_magnitude_pruning_keeps_zeros_after_every_step_and_restores_masks(tmp_path):
    from keras_bertopt.pruning import MagnitudePruning, PolynomialSparsity, strip_pruning

    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=_loss())
    pruning = MagnitudePruning(PolynomialSparsity(0.0, 0.5, begin_step=0, end_step=4,
                                                  frequency=2))
    check = _ZerosAfterEveryStep(pruning)
    model.fit(demo_dataset("train", 16).take(8), epochs=1, verbose=0,
              callbacks=[pruning, check])
    assert check.masked[0] == 0 and check.masked[-1] > 0  # masks grew on schedule
    assert check.regrown == [0] * 8  # Adam (lr 1e-2) would regrow them without the masks
    assert not np.array_equal(check.snapshots[-2], check.snapshots[-1])  # still training
    assert pruning.current_sparsity() == pytest.approx(0.5, abs=0.01)

    path = str(tmp_path / "pruned.weights.h5")
    model.save_weights(path)
    fresh = _model()
    again = MagnitudePruning(PolynomialSparsity(0.0, 0.5, begin_step=0, end_step=4,
                                                frequency=2))
    again.set_model(fresh)
    fresh.load_weights(path)
    for saved, loaded in zip(pruning.state.masks, again.state.masks, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(saved),
                                      keras.ops.convert_to_numpy(loaded))
    assert int(keras.ops.convert_to_numpy(again.state.step)) == 8
    stripped = strip_pruning(model)
    kernel = keras.ops.convert_to_numpy(pruning.variables[0])
    assert stripped is model and np.mean(kernel == 0) == pytest.approx(0.5, abs=0.01)
