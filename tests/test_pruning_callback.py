"""MagnitudePruning inside model.fit on the tiny BERT: masks, schedule, state, strip."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from _models import compile_classifier
from _processes import TEST_PROCESS_SETTINGS

from keras_bertopt.data import demo_dataset
from keras_bertopt.pruning import (
    ConstantSparsity,
    MagnitudePruning,
    MaskConstraint,
    PolynomialSparsity,
    PruningState,
    get_state,
    sparsity_report,
    strip_pruning,
)
from keras_bertopt.pruning import masks as M

KERNELS = r"transformer_layer_\d+/.*kernel$"


def _compile(model, learning_rate=1e-2):
    return compile_classifier(model, learning_rate, optimizer=keras.optimizers.Adam)


def _train(steps, batch_size=16):
    return demo_dataset("train", batch_size=batch_size, size=steps * batch_size, shuffle=False)


def _np(v):
    return np.asarray(keras.ops.convert_to_numpy(v))


class Recorder(keras.callbacks.Callback):
    """Snapshots pruned weights and masks after every batch (only the optimizer step ran)."""

    def __init__(self, pruning):
        super().__init__()
        self.pruning = pruning
        self.records = []

    def on_train_batch_end(self, batch, logs=None):
        self.record()

    def record(self):
        state = get_state(self.model)
        self.records.append(
            (
                int(_np(state.step)),
                [_np(v) for v in self.pruning.variables],
                [_np(m) for m in state.masks],
            )
        )


class NextStepRecorder(Recorder):
    """Snapshots what the next step starts from: after the pruning callback evaluated the
    schedule (before the next batch, and at the end for the last step)."""

    def on_train_batch_end(self, batch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        if int(_np(get_state(self.model).step)) > 0:
            self.record()

    def on_train_end(self, logs=None):
        self.record()


@pytest.mark.slow
def test_masks_follow_schedule_and_zeros_stay_zero_after_every_step(tiny_classifier, tmp_path):
    model = _compile(tiny_classifier)
    n_weights = len(model.weights)
    schedule = PolynomialSparsity(0.0, 0.6, begin_step=2, end_step=10, power=3, frequency=4)
    pruning = MagnitudePruning(schedule, include=KERNELS)
    before = Recorder(pruning)  # at each batch end: only the optimizer step (and masks) ran
    after = NextStepRecorder(pruning)
    history = model.fit(_train(12), epochs=1, callbacks=[before, pruning, after], verbose=0)

    sizes = [int(np.prod(v.shape)) for v in pruning.variables]
    assert len(sizes) == 12
    previous_masks = None
    for step, weights, masks in after.records:
        should, target = schedule(step)
        for w, m, size in zip(weights, masks, sizes, strict=True):
            assert np.all(w[m == 0] == 0)
            if should:
                assert int((m == 0).sum()) == round(target * size)
        if previous_masks is not None and not should:
            for m, prev in zip(masks, previous_masks, strict=True):
                np.testing.assert_array_equal(m, prev)  # masks change only on schedule steps
        previous_masks = masks
    assert [r[0] for r in after.records] == list(range(1, 13))
    # Before the callback runs at a batch end, only the optimizer update (and its
    # constraint) happened: pruned weights are already zero after every update.
    for _step, weights, masks in before.records[6:]:  # masks non-trivial from step 6
        assert any((m == 0).any() for m in masks)
        for w, m in zip(weights, masks, strict=True):
            assert np.all(w[m == 0] == 0)
    # Adam's moments of pruned weights are not zero: the constraint is what holds them.
    moments = [v for v in model.optimizer.variables if "query_kernel_momentum" in v.path]
    assert moments and np.abs(_np(moments[0])[after.records[-1][2][0] == 0]).max() > 0
    assert history.history["sparsity"][-1] == pytest.approx(
        sum(round(0.6 * s) for s in sizes) / sum(sizes)
    )

    assert len(model.weights) == n_weights + 1 + 12  # step + one mask per kernel
    plain = strip_pruning(model)
    assert plain is model and len(model.weights) == n_weights
    assert get_state(model) is None
    assert all(v.constraint is None for v in model.weights)
    report = sparsity_report(model, include=KERNELS)
    assert report.zeros == sum(round(0.6 * s) for s in sizes)
    assert report.nonzero == report.size - report.zeros
    assert report[pruning.variables[0].path].sparsity == pytest.approx(
        round(0.6 * sizes[0]) / sizes[0]
    )
    text = str(report)
    assert "transformer_layer_0/feedforward_output_dense/kernel" in text and "nonzero" in text
    full = sparsity_report(model)
    assert full.size > report.size and full.zeros == report.zeros

    # A stripped model is an ordinary model: it saves, loads in safe mode and
    # trains on without the mask (no constraint left in the train step).
    path = str(tmp_path / "pruned.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert len(loaded.weights) == n_weights
    assert sparsity_report(loaded, include=KERNELS).zeros == report.zeros
    texts = ["a great film", "an awful movie"]
    np.testing.assert_allclose(
        model.predict(texts, verbose=0), loaded.predict(texts, verbose=0), atol=1e-5
    )


def _check_pattern(pruning, kwargs):
    weights = [_np(v) for v in pruning.variables]
    views = pruning._views
    q = [i for i, v in enumerate(pruning.variables) if v.path.endswith("attention_output/kernel")][
        0
    ]
    assert views[q].shape == (2, 16, 32) and (views[q].rows, views[q].cols) == (32, 32)
    if kwargs["pattern"] == "block":
        for w, view in zip(weights, views, strict=True):
            blocks = (view.to_2d(w) == 0).reshape(view.rows // 4, 4, view.cols)
            assert np.all(blocks.all(axis=1) == blocks.any(axis=1))  # whole blocks only
            assert int(blocks.all(axis=1).sum()) == round(0.5 * view.rows * view.cols / 4)
    elif kwargs["pattern"] == "2:4":
        for w, view in zip(weights, views, strict=True):
            groups = (view.to_2d(w) == 0).reshape(view.rows // 4, 4, view.cols)
            np.testing.assert_array_equal(groups.sum(axis=1), 2)
    else:
        total = sum(w.size for w in weights)
        zeros = [int((w == 0).sum()) for w in weights]
        assert sum(zeros) == round(0.5 * total)
        assert len(set(round(z / w.size, 3) for z, w in zip(zeros, weights, strict=True))) > 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pattern": "block", "block_shape": (4, 1)},
        {"pattern": "unstructured", "scope": "global"},
        {"pattern": "2:4"},
    ],
    ids=["block4x1", "global", "n2m4"],
)
def test_patterns_on_bert_kernels(tiny_classifier, kwargs):
    pruning = MagnitudePruning(ConstantSparsity(0.5), include=KERNELS, **kwargs)
    pruning.set_model(tiny_classifier)
    pruning.update_masks(0.5)
    _check_pattern(pruning, kwargs)


@pytest.mark.slow
def test_n_m_pattern_in_fit(tiny_classifier):
    model = _compile(tiny_classifier)
    kwargs = {"pattern": "2:4"}
    pruning = MagnitudePruning(
        ConstantSparsity(0.5, begin_step=1, frequency=3), include=KERNELS, **kwargs
    )
    model.fit(_train(4), epochs=1, callbacks=[pruning], verbose=0)
    _check_pattern(pruning, kwargs)


def test_bad_input_raises_before_training(tiny_classifier):
    model = _compile(tiny_classifier)
    schedule = ConstantSparsity(0.5)
    with pytest.raises(ValueError, match="include.*matched no variable"):
        model.fit(
            _train(2), callbacks=[MagnitudePruning(schedule, include=r"no_such/kernel")], verbose=0
        )
    with pytest.raises(ValueError, match="block_shape.*must divide.*query/kernel"):
        model.fit(
            _train(2),
            callbacks=[
                MagnitudePruning(schedule, include=KERNELS, pattern="block", block_shape=(1, 5))
            ],
            verbose=0,
        )
    with pytest.raises(ValueError, match="multiple of m"):
        model.fit(
            _train(2),
            callbacks=[MagnitudePruning(schedule, include=KERNELS, pattern="n:m", n_m=(2, 3))],
            verbose=0,
        )
    assert int(_np(model.optimizer.iterations)) == 0
    assert get_state(model) is None
    with pytest.raises(ValueError, match="1 <= n <= m"):
        MagnitudePruning(schedule, pattern="4:2")
    with pytest.raises(ValueError, match="pattern"):
        MagnitudePruning(schedule, pattern="diagonal")
    with pytest.raises(ValueError, match="scope"):
        MagnitudePruning(schedule, scope="everything")
    with pytest.raises(ValueError, match="schedule.*callable"):
        MagnitudePruning(0.5)
    with pytest.raises(ValueError, match="sparsity 1.0.*\\[0, 1\\)"):
        MagnitudePruning(lambda step: (True, 1.0))
    with pytest.raises(ValueError, match="end_step"):
        PolynomialSparsity(0.0, 0.5, begin_step=100, end_step=50)
    with pytest.raises(ValueError, match="final_sparsity"):
        PolynomialSparsity(0.0, 1.2, begin_step=0, end_step=50)


BACKUP = textwrap.dedent(
    """
    import sys
    import keras, numpy as np, tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    from keras_bertopt.data import demo_dataset
    from keras_bertopt.models import TinyConfig, build_classifier
    from keras_bertopt.pruning import (MagnitudePruning, PolynomialSparsity, get_state,
                                       sparsity_report)
    KERNELS = r"transformer_layer_\\d+/.*kernel$"
    schedule = PolynomialSparsity(0.0, 0.7, begin_step=1, end_step=12, frequency=2)
    backup = sys.argv[1]

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("interrupted")

    def run(callbacks):
        keras.utils.set_random_seed(1)
        model = build_classifier(TinyConfig(dropout=0.0), 2, sequence_length=32, dropout=0.0)
        model.compile(optimizer=keras.optimizers.Adam(3e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        pruning = MagnitudePruning(schedule, include=KERNELS)
        data = demo_dataset("train", batch_size=16, size=64, shuffle=False)
        try:
            # The pruning callback comes first on purpose: its state must exist
            # (set_model) before BackupAndRestore loads in on_train_begin.
            model.fit(data, epochs=3, callbacks=[pruning] + callbacks, verbose=0)
        except RuntimeError as err:
            assert "interrupted" in str(err)
        return model, pruning

    reference, ref_pruning = run([])
    broken, _ = run([keras.callbacks.BackupAndRestore(backup), Interrupt()])
    assert int(get_state(broken).step.numpy()) == 8
    assert 0 < sparsity_report(broken, include=KERNELS).sparsity < 0.7
    resumed, pruning = run([keras.callbacks.BackupAndRestore(backup)])
    assert int(get_state(resumed).step.numpy()) == 12
    for a, b in zip(get_state(reference).masks, get_state(resumed).masks):
        assert np.array_equal(a.numpy(), b.numpy())
    for a, b in zip(ref_pruning.variables, pruning.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    ref = sparsity_report(reference, include=KERNELS)
    res = sparsity_report(resumed, include=KERNELS)
    assert ref.zeros == res.zeros and abs(ref.sparsity - 0.7) < 1e-3, (ref.zeros, res.zeros)
    print("BACKUP_OK", res.zeros)
    """
)


@pytest.mark.slow
def test_backup_and_restore_resumes_with_same_masks(tmp_path):
    # A subprocess with op determinism and no dropout: the uninterrupted and the
    # resumed run must agree bit for bit, which multithreaded CPU kernels (and
    # dropout's random state, not part of the checkpoint) do not promise otherwise.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    proc = subprocess.run(
        [sys.executable, "-c", TEST_PROCESS_SETTINGS + BACKUP, str(tmp_path / "backup")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "BACKUP_OK" in proc.stdout


def test_serialization_of_callback_and_constraint():
    pruning = MagnitudePruning(
        PolynomialSparsity(0.0, 0.5, 0, 100),
        include=[KERNELS],
        pattern="block",
        block_shape=(1, 4),
        scope="global",
    )
    config = keras.saving.serialize_keras_object(pruning)
    back = keras.saving.deserialize_keras_object(config, safe_mode=True)
    assert isinstance(back, MagnitudePruning) and back.get_config() == pruning.get_config()
    constraint = MaskConstraint(
        keras.Variable(np.array([1.0, 0.0]), trainable=False), inner=keras.constraints.NonNeg()
    )
    np.testing.assert_array_equal(_np(constraint(keras.ops.array([-1.0, 2.0]))), [0.0, 0.0])
    np.testing.assert_array_equal(_np(constraint(keras.ops.array([3.0, 2.0]))), [3.0, 0.0])
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(constraint), safe_mode=True
    )
    assert isinstance(restored.inner, keras.constraints.NonNeg)
    with pytest.raises(ValueError, match="not bound"):
        restored(keras.ops.array([1.0, 1.0]))
    state = PruningState(["a/kernel", "b/kernel"], [(4, 2), (3,)])
    copy = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(state), safe_mode=True
    )
    assert copy.variable_paths == state.variable_paths and copy.shapes == [(4, 2), (3,)]
    assert [tuple(m.shape) for m in copy.masks] == [(4, 2), (3,)] and not copy.trainable_weights
    with pytest.raises(ValueError, match="cannot be serialized"):
        MagnitudePruning(lambda step: (False, 0.0)).get_config()


TFMOT_SCHEDULE = textwrap.dedent(
    """
    import keras, numpy as np
    from keras_bertopt.pruning import MagnitudePruning, get_state
    import tensorflow_model_optimization as tfmot
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, name="hidden"),
                              keras.layers.Dense(1, name="out")])
    model.compile("adam", "mse")
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.75, begin_step=1, end_step=5,
                                                    frequency=2)
    pruning = MagnitudePruning(schedule, include="hidden/kernel")
    x = np.random.default_rng(0).normal(size=(64, 16)).astype("float32")
    model.fit(x, x[:, :1], batch_size=8, epochs=1, callbacks=[pruning], verbose=0)
    kernel = keras.ops.convert_to_numpy(model.get_layer("hidden").kernel)
    assert int((kernel == 0).sum()) == round(0.75 * kernel.size), int((kernel == 0).sum())
    print("TFMOT_SCHEDULE_OK")
    """
)


@pytest.mark.slow
def test_tfmot_schedule_objects_work_unchanged():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    proc = subprocess.run(
        [sys.executable, "-c", TFMOT_SCHEDULE], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TFMOT_SCHEDULE_OK" in proc.stdout


def test_einsum_view_used_for_block_and_n_m_errors_name_the_variable(tiny_classifier):
    pruning = MagnitudePruning(
        ConstantSparsity(0.5), include=r"attention_output/kernel", pattern="n:m", n_m=(1, 4)
    )
    pruning.set_model(tiny_classifier)
    assert all((v.rows, v.cols) == (32, 32) for v in pruning._views)
    pruning.update_masks(0.5)  # sparsity value fixed by n:m: 3 of 4 zero
    for v, view in zip(pruning.variables, pruning._views, strict=True):
        groups = (view.to_2d(_np(v)) == 0).reshape(8, 4, 32)
        np.testing.assert_array_equal(groups.sum(axis=1), 3)
    assert M.kernel_view((2, 16, 32), (0, 1)).perm == (0, 1, 2)
