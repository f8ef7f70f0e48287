"""In-stage checkpoints: a `fit` stopped at any step and resumed equals the one never stopped."""

import os

import numpy as np
import pytest


class Interrupt(Exception):
    pass


def _stop_at(step):
    """A callback that raises after `step` training steps (a kill, as far as fit can tell)."""
    import keras

    class StopAt(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.done = 0

        def on_train_batch_end(self, batch, logs=None):
            self.done += 1
            if self.done == step:
                raise Interrupt(step)

    return StopAt()


def _dense_model(seed=3, dropout=0.3):
    import keras

    keras.utils.set_random_seed(seed)
    # Functional, as the recipe's classifiers are: a Sequential model does not track the
    # pruning state MagnitudePruning attaches, so its masks would not be checkpointed.
    inputs = keras.Input((6,))
    hidden = keras.layers.Dropout(dropout)(keras.layers.Dense(16, activation="relu")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(hidden))
    schedule = keras.optimizers.schedules.PolynomialDecay(3e-2, decay_steps=15)
    model.compile(keras.optimizers.Adam(schedule),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _dense_data(shuffle=True):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 1).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(40, seed=5, reshuffle_each_iteration=True)
    return ds.batch(8), (x[:16], y[:16])  # 5 batches per pass


def _state(model):
    return [v.numpy() for v in model.variables] + [v.numpy() for v in model.optimizer.variables]


def _pruning():
    from keras_bertopt import pruning

    schedule = pruning.PolynomialSparsity(initial_sparsity=0.0, final_sparsity=0.6,
                                          begin_step=0, end_step=12, frequency=3)
    return pruning.MagnitudePruning(schedule=schedule, include=r"kernel$")


def _fit(tmp_path, name, stop_at=None, every=3, epochs=3, steps=5, prune=False):
    from keras_bertopt.recipe.checkpoints import StepCheckpoint, resumable_fit

    model = _dense_model()
    _, val = _dense_data()
    checkpoint = StepCheckpoint(tmp_path / f"{name}.npz", every=every)
    extra = [_pruning()] if prune else []
    extra += [] if stop_at is None else [_stop_at(stop_at)]
    history = resumable_fit(model, lambda: _dense_data()[0].repeat(), epochs=epochs,
                            steps_per_epoch=steps, checkpoint=checkpoint, callbacks=extra,
                            validation_data=val, verbose=0)
    return model, history, checkpoint


@pytest.mark.parametrize("stop_at", [4, 7, 10, 14])
def test_a_fit_stopped_at_any_step_resumes_to_the_same_weights(tmp_path, stop_at):
    """Stops before/after a checkpoint, at an epoch end, in the last epoch; each resume (a
    new model and checkpoint object, as a new process has) ends bit-identical to the
    uninterrupted fit, optimizer state, dropout stream and data order included."""
    reference, ref_history, _ = _fit(tmp_path, "reference")
    with pytest.raises(Interrupt):
        _fit(tmp_path, "run", stop_at=stop_at)
    saved = (stop_at // 3) * 3
    from keras_bertopt.recipe.checkpoints import StepCheckpoint

    assert StepCheckpoint(tmp_path / "run.npz").step == saved  # at most `every` steps redone
    resumed, history, checkpoint = _fit(tmp_path, "run")
    for a, b in zip(_state(reference), _state(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(resumed.optimizer.iterations.numpy()) == 15
    # Validation is computed on the final weights of each epoch: identical too.
    assert history["val_loss"] == ref_history["val_loss"] and len(history["val_loss"]) == 3
    assert checkpoint.step == 15 and checkpoint.exists
    checkpoint.remove()
    assert not os.path.exists(tmp_path / "run.npz")


@pytest.mark.parametrize("stop_at", [4, 7])
def test_a_pruning_schedule_resumes_on_the_step_it_was_due(tmp_path, stop_at):
    """Checkpoints at steps 3 and 6 fall on mask updates (every 3 steps): the resumed fit
    neither skips nor repeats the update, so masks and weights equal the uninterrupted."""
    reference, _, _ = _fit(tmp_path, "reference", prune=True)
    with pytest.raises(Interrupt):
        _fit(tmp_path, "run", stop_at=stop_at, prune=True)
    resumed, _, _ = _fit(tmp_path, "run", prune=True)
    zeros = float(np.mean(reference.layers[1].kernel.numpy() == 0))
    assert 0.5 < zeros < 0.7  # pruned to about the target (0.6)
    for a, b in zip(_state(reference), _state(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # two fits and a resume (~30 s on 2 cores)
def test_without_skipping_the_data_a_resume_would_differ(tmp_path):
    """The check above is sensitive: replaying data from the start (what a plain restart
    with restored weights does) gives other weights."""
    import keras

    from keras_bertopt.recipe.checkpoints import StepCheckpoint

    reference, _, _ = _fit(tmp_path, "reference")
    with pytest.raises(Interrupt):
        _fit(tmp_path, "run", stop_at=7)
    model = _dense_model()
    data, val = _dense_data()
    checkpoint = StepCheckpoint(tmp_path / "run.npz", every=3)
    model.fit(data.repeat(), initial_epoch=1, epochs=3, steps_per_epoch=5, verbose=0,
              callbacks=[checkpoint, keras.callbacks.Callback()])
    assert not np.array_equal(reference.layers[1].kernel.numpy(), model.layers[1].kernel.numpy())


def test_epoch_checkpoints_agree_with_keras_backup_and_restore(tmp_path):
    """At epoch granularity Keras's own BackupAndRestore resumes a fit too; on data read in a
    fixed order, with no dropout, it and `resumable_fit` give the uninterrupted weights."""
    import keras

    from keras_bertopt.recipe.checkpoints import StepCheckpoint, resumable_fit

    class StopAtEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise Interrupt(epoch)

    data, _ = _dense_data(shuffle=False)
    keras_model = _dense_model(dropout=0.0)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(Interrupt):
        keras_model.fit(data, epochs=4, callbacks=[backup, StopAtEpoch()], verbose=0)
    keras_model = _dense_model(dropout=0.0)
    keras_model.fit(data, epochs=4, callbacks=[backup], verbose=0)

    ours = _dense_model(dropout=0.0)
    with pytest.raises(Interrupt):
        resumable_fit(ours, data.repeat, epochs=4, steps_per_epoch=5, verbose=0,
                      checkpoint=StepCheckpoint(tmp_path / "ours.npz", every=5),
                      callbacks=[StopAtEpoch()])
    ours = _dense_model(dropout=0.0)
    resumable_fit(ours, data.repeat, epochs=4, steps_per_epoch=5, verbose=0,
                  checkpoint=StepCheckpoint(tmp_path / "ours.npz", every=5))

    plain = _dense_model(dropout=0.0)
    plain.fit(data, epochs=4, verbose=0)
    for a, b, c in zip(_state(keras_model), _state(ours), _state(plain), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(b, c)


def test_a_finished_checkpoint_restores_without_training(tmp_path):
    reference, ref_history, _ = _fit(tmp_path, "done")
    model, history, checkpoint = _fit(tmp_path, "done")  # a kill after fit, before saving
    assert history == ref_history and checkpoint.step == 15
    for a, b in zip(_state(reference), _state(model), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_checkpoint_of_other_training_is_refused(tmp_path):
    import keras

    from keras_bertopt.recipe.checkpoints import StepCheckpoint

    with pytest.raises(Interrupt):
        _fit(tmp_path, "run", stop_at=7)
    other = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    other.compile("adam", "mse")
    with pytest.raises(ValueError, match=r"holds 5 model variables, this model has 2 \(variable 0: "
                                         r"float32\[6, 16\] there, float32\[6, 3\] here\)"):
        StepCheckpoint(tmp_path / "run.npz").restore(other)
    with pytest.raises(ValueError, match="past this training's 5 steps"):
        _fit(tmp_path, "run", epochs=1)


@pytest.mark.parametrize("kwargs, message", [
    ({"every": 0}, "`every` must be an integer >= 1, got 0"),
    ({"every": 2.5}, "`every` must be an integer >= 1"),
    ({"path_name": "ckpt.h5"}, "`path` must end in .npz"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    from keras_bertopt.recipe.checkpoints import StepCheckpoint

    path = tmp_path / kwargs.pop("path_name", "c.npz")
    with pytest.raises(ValueError, match=message):
        StepCheckpoint(path, **kwargs)


def test_reset_seed_generators_makes_dropout_independent_of_history(tiny_classifier):
    """A model whose dropout stream advanced in an earlier stage and a fresh copy of it draw
    the same masks once both are reset with the same seed."""
    import keras

    from keras_bertopt.models import TinyConfig, build_classifier
    from keras_bertopt.recipe.checkpoints import reset_seed_generators

    fresh = build_classifier(TinyConfig(), num_classes=2, sequence_length=32)
    fresh.set_weights(tiny_classifier.get_weights())
    texts = ["a good film", "a bad film"]
    inputs = tiny_classifier.preprocessor(texts)
    tiny_classifier.backbone(inputs, training=True)  # advances its dropout stream
    assert reset_seed_generators(tiny_classifier, 11) == reset_seed_generators(fresh, 11) > 0
    a = keras.ops.convert_to_numpy(tiny_classifier.backbone(inputs, training=True)["pooled_output"])
    b = keras.ops.convert_to_numpy(fresh.backbone(inputs, training=True)["pooled_output"])
    np.testing.assert_array_equal(a, b)
    reset_seed_generators(fresh, 12)
    c = keras.ops.convert_to_numpy(fresh.backbone(inputs, training=True)["pooled_output"])
    assert not np.array_equal(a, c)
