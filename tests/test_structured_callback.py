"""StructuredPruning in fit: masks on a schedule, BackupAndRestore, strip, then the rest."""

import numpy as np
import pytest

SEQ = 16
TEXTS = ["a good movie", "bad film and boring", "great fun", "awful acting"] * 4
LABELS = np.array([1, 0, 1, 0] * 4)


def _model():
    import keras

    from keras_bertopt.models import TinyConfig, build_classifier

    config = TinyConfig(num_layers=2, num_heads=4, hidden_dim=32, intermediate_dim=64,
                        dropout=0.0, seed=3)
    model = build_classifier(config, num_classes=2, sequence_length=SEQ, dropout=0.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _tokens(model):
    out = model.preprocessor(TEXTS[:4])
    return out[0] if isinstance(out, tuple) else out


def test_masks_follow_the_schedule_and_strip_gives_the_same_model():
    from keras_bertopt.pruning import (
        PolynomialSparsity,
        StructuredPruning,
        get_state,
        removed_units,
        strip_structure,
    )

    model = _model()
    # 2 batches per epoch; fraction 0.5 reached at step 4, pruning every 2 steps.
    pruning = StructuredPruning(
        {"heads": PolynomialSparsity(0.0, 0.5, 0, 4, frequency=2),
         "intermediate": PolynomialSparsity(0.0, 0.25, 0, 4, frequency=2)})
    history = model.fit(np.array(TEXTS), LABELS, batch_size=8, epochs=3,
                        callbacks=[pruning], verbose=0)
    assert history.history["pruned_heads"][-1] == 0.5
    assert history.history["pruned_intermediate"][-1] == 0.25
    assert 0 < history.history["pruned_heads"][0] < 0.5  # gradual: part way after epoch 1
    removed = removed_units(model)
    assert [len(r) for r in removed["heads"]] == [2, 2]
    assert [len(r) for r in removed["intermediate"]] == [16, 16]
    assert get_state(model) is None  # magnitude pruning's state is untouched
    # Masked weights are exactly zero after training went on.
    att = model.backbone.transformer_layers[0]._self_attention_layer
    for h in removed["heads"][0]:
        assert not np.any(att._value_dense.kernel.numpy()[:, h])
        assert not np.any(att._output_dense.kernel.numpy()[h])
    small = strip_structure(model)
    assert small.backbone.num_heads == [2, 2] and small.backbone.intermediate_dim == [48, 48]
    x = _tokens(model)
    np.testing.assert_allclose(small(x), model(x), rtol=1e-5, atol=1e-5)


def test_lowest_magnitude_units_are_masked():
    from keras_bertopt.pruning import ConstantSparsity, StructuredPruning, removed_units

    model = _model()
    att = model.backbone.transformer_layers[1]._self_attention_layer
    w = att._query_dense.kernel.numpy()
    w[:, 1] *= 1e-3  # head 1's query slice nearly zero -> the smallest head
    att._query_dense.kernel.assign(w)
    for dense in (att._key_dense, att._value_dense):
        dense.kernel.assign(dense.kernel.numpy() * np.array([1, 1e-3, 1, 1])[None, :, None])
    att._output_dense.kernel.assign(att._output_dense.kernel.numpy()
                                    * np.array([1, 1e-3, 1, 1])[:, None, None])
    pruning = StructuredPruning({"heads": ConstantSparsity(0.25, begin_step=0, frequency=1)})
    model.fit(np.array(TEXTS[:8]), LABELS[:8], batch_size=8, epochs=1, callbacks=[pruning],
              verbose=0)
    assert removed_units(model)["heads"][1] == [1]
    assert removed_units(model)["intermediate"] == [[], []]


def test_bad_arguments():
    from keras_bertopt.pruning import PolynomialSparsity, StructuredPruning

    with pytest.raises(ValueError, match="`schedule` must be"):
        StructuredPruning({"layers": PolynomialSparsity(0.0, 0.5, 0, 4)})
    with pytest.raises(ValueError, match="needs `data`"):
        StructuredPruning(PolynomialSparsity(0.0, 0.5, 0, 4), importance="taylor")
    with pytest.raises(ValueError, match="`importance` must be"):
        StructuredPruning(PolynomialSparsity(0.0, 0.5, 0, 4), importance="l1")


def test_config_round_trip():
    import keras

    from keras_bertopt.pruning import PolynomialSparsity, StructuredPruning

    pruning = StructuredPruning({"heads": PolynomialSparsity(0.0, 0.5, 0, 40, frequency=5)})
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(pruning))
    assert set(again.schedules) == {"heads"}
    assert again.schedules["heads"](40) == pruning.schedules["heads"](40)


@pytest.mark.slow
def test_backup_and_restore_keeps_masks_and_step(tmp_path):
    import keras

    from keras_bertopt.pruning import PolynomialSparsity, StructuredPruning
    from keras_bertopt.pruning.structured_callback import get_structure_state

    backup = str(tmp_path / "backup")

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("interrupted")

    class Capture(keras.callbacks.Callback):
        seen = None

        def on_train_batch_begin(self, batch, logs=None):
            if self.seen is None:
                state = get_structure_state(self.model)
                self.seen = (int(state.step.numpy()),
                             [m.numpy().copy() for m in state.masks("heads")])

    def run(extra):
        model = _model()
        pruning = StructuredPruning(PolynomialSparsity(0.0, 0.5, 0, 8, frequency=2))
        try:
            model.fit(np.array(TEXTS), LABELS, batch_size=8, epochs=4,
                      callbacks=[pruning, keras.callbacks.BackupAndRestore(backup)] + extra,
                      verbose=0)
        except RuntimeError as err:
            assert "interrupted" in str(err)
        return model

    broken = run([Interrupt()])
    state = get_structure_state(broken)
    assert int(state.step.numpy()) == 4
    masks_at_break = [m.numpy().copy() for m in state.masks("heads")]
    assert 0 < sum(int((m == 0).sum()) for m in masks_at_break) < 4
    capture = Capture()
    resumed = run([capture])
    step, masks = capture.seen
    assert step == 4  # resumed where it stopped, not from 0
    for a, b in zip(masks, masks_at_break, strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(get_structure_state(resumed).step.numpy()) == 8
    final = get_structure_state(resumed).masks("heads")
    assert sum(int((m.numpy() == 0).sum()) for m in final) == 4


@pytest.mark.slow
def test_pruned_model_then_magnitude_pruning_qat_and_int8_export(tmp_path):
    import keras

    from keras_bertopt.export import inspect_tflite, to_tflite
    from keras_bertopt.pruning import (
        ConstantSparsity,
        MagnitudePruning,
        StructuredPruning,
        sparsity_report,
        strip_pruning,
        strip_structure,
    )
    from keras_bertopt.quantization import quantize_aware
    from keras_bertopt.selection import TRANSFORMER_KERNELS

    model = _model()
    model.fit(np.array(TEXTS), LABELS, batch_size=8, epochs=1, verbose=0,
              callbacks=[StructuredPruning(ConstantSparsity(0.5, begin_step=0, frequency=1))])
    small = strip_structure(model)
    small.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    small.fit(np.array(TEXTS), LABELS, batch_size=8, epochs=2, verbose=0,
              callbacks=[MagnitudePruning(ConstantSparsity(0.5, begin_step=0, frequency=1))])
    small = strip_pruning(small)
    assert abs(sparsity_report(small, include=TRANSFORMER_KERNELS).sparsity - 0.5) < 0.01
    qat = quantize_aware(small)
    qat.compile(optimizer=keras.optimizers.Adam(1e-4),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(np.array(TEXTS), LABELS, batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / "int8.tflite")
    report = to_tflite(qat, path, quantization="int8", sample_data=TEXTS, latency_runs=0)
    assert report.label_agreement >= 0.75
    info = inspect_tflite(path)
    assert info["ops"]["FULLY_CONNECTED"].get("int8", 0) >= 8
    shapes = {tuple(w["shape"]) for w in info["weights"]}
    assert (16, 32) in shapes and (32, 32) in shapes and (64, 32) not in shapes


@pytest.mark.slow  # a 3-epoch fit scoring by gradients every 2 steps (~15 s)
def test_taylor_importance_in_fit_masks_a_dead_head_first_and_masks_only_grow():
    import keras
    import tensorflow as tf

    from keras_bertopt.pruning import PolynomialSparsity, StructuredPruning, removed_units
    from keras_bertopt.pruning.structured_callback import get_structure_state

    model = _model()
    att = model.backbone.transformer_layers[0]._self_attention_layer
    # Head 3 of layer 0 contributes nothing: its value and output slices are zero, so
    # |weight x gradient| over its weights is exactly 0, the lowest Taylor score there is.
    att._value_dense.kernel.assign(att._value_dense.kernel.numpy()
                                   * np.array([1, 1, 1, 0])[None, :, None])
    att._output_dense.kernel.assign(att._output_dense.kernel.numpy()
                                    * np.array([1, 1, 1, 0])[:, None, None])
    data = tf.data.Dataset.from_tensor_slices((TEXTS, LABELS)).batch(8).map(
        lambda x, y: (model.preprocessor(x), y))
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            state = get_structure_state(self.model)
            if state is not None:
                seen.append([m.numpy().copy() for t in ("heads", "intermediate")
                             for m in state.masks(t)])

    pruning = StructuredPruning(
        {"heads": PolynomialSparsity(0.0, 0.5, 0, 4, frequency=2),
         "intermediate": PolynomialSparsity(0.0, 0.5, 0, 4, frequency=2)},
        importance="taylor", data=data, batches=2)
    model.fit(np.array(TEXTS), LABELS, batch_size=8, epochs=3, callbacks=[pruning, Record()],
              verbose=0)
    removed = removed_units(model)
    assert [len(r) for r in removed["heads"]] == [2, 2]  # floor(0.5 x 4) per layer
    assert [len(r) for r in removed["intermediate"]] == [32, 32]
    first = next(masks for masks in seen if (masks[0] == 0).any())
    assert np.flatnonzero(first[0] == 0).tolist() == [3]  # the dead head went first
    assert len({tuple(np.concatenate(m).tolist()) for m in seen}) >= 3  # gradual
    for before, after in zip(seen[:-1], seen[1:], strict=True):  # never unmasked again
        for a, b in zip(before, after, strict=True):
            assert np.all(b <= a)
