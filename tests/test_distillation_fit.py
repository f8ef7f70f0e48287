"""Distillation in `fit` on the demo data: a student learns from the teacher alone, pruning
and QAT under KD, cached logits, callbacks, BackupAndRestore, save/load and TFLite export."""

import keras
import numpy as np
import pytest

import keras_bertopt as kb
from keras_bertopt.distillation import Distiller, cache_teacher_logits, shrink
from keras_bertopt.models import TinyConfig, build_classifier

KERNELS = r"transformer_layer_\d+/.*kernel$"
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.fixture(scope="module")
def teacher():
    """A 2-layer tiny BERT trained on the demo data (validation accuracy checked below)."""
    model = build_classifier(TinyConfig(num_layers=2, dropout=0.0), 2, sequence_length=32,
                             dropout=0.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=LOSS, metrics=["accuracy"])
    model.fit(kb.data.demo_dataset("train", 32, size=1024), epochs=2, verbose=0)
    return model


def _snapshot(model):
    return [np.array(v) for v in model.weights]


def _unchanged(before, model):
    return all(np.array_equal(a, np.asarray(v)) for a, v in zip(before, model.weights,
                                                                strict=True))


def _accuracy(model, split="validation"):
    texts, labels = kb.data.demo_examples(split)
    predictions = np.argmax(model.predict(texts, batch_size=64, verbose=0), axis=-1)
    return float(np.mean(predictions == np.asarray(labels)))


@pytest.mark.slow
def test_student_learns_from_soft_targets_alone(teacher, tmp_path):
    teacher_accuracy = _accuracy(teacher)
    assert teacher_accuracy >= 0.8
    before = _snapshot(teacher)
    # A fresh, randomly initialised 1-layer student, and labels that are all 0:
    # alpha=1 ignores them, so whatever the student learns comes from the teacher.
    student = build_classifier(TinyConfig(num_layers=1, seed=7, dropout=0.0), 2,
                               sequence_length=32, dropout=0.0)
    assert _accuracy(student) < 0.65
    texts, _ = kb.data.demo_examples("train", 1024)
    wrong = kb.data.from_examples(texts, [0] * len(texts), 32, shuffle=True)
    distiller = Distiller(teacher, student, temperature=2.0, alpha=1.0)
    distiller.compile(optimizer=keras.optimizers.Adam(2e-3), metrics=["accuracy"])
    history = distiller.fit(
        wrong, epochs=3, verbose=0,
        callbacks=[kb.callbacks.Throughput(warmup_steps=1), kb.callbacks.LearningRateLogger()],
    )
    logs = history.history
    assert {"examples_per_second", "learning_rate", "distillation_loss", "student_loss"} <= set(
        logs)
    assert logs["distillation_loss"][-1] < logs["distillation_loss"][0]
    assert _unchanged(before, teacher)  # frozen, inference mode
    accuracy = _accuracy(distiller.student)
    assert accuracy >= 0.7, accuracy  # chance is 0.5; the labels it saw were all 0

    # The student is a plain keras-hub classifier: .keras in safe_mode, TFLite export.
    path = str(tmp_path / "student.keras")
    student.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(teacher)
    sample = ["a good film", "not a good film", "dull and bad"]
    np.testing.assert_allclose(loaded.predict(sample, verbose=0),
                               student.predict(sample, verbose=0), atol=1e-5)
    report = kb.export.to_tflite(loaded, str(tmp_path / "student.tflite"), sample_data=sample,
                                 num_samples=3, latency_runs=0)
    assert report.label_agreement == 1.0


@pytest.mark.slow
def test_cached_teacher_logits_replace_the_teacher_pass(teacher):
    data = kb.data.demo_dataset("train", 16, size=64, shuffle=False)
    cached = cache_teacher_logits(teacher, data)
    (x, (y, logits)), = cached.take(1)
    np.testing.assert_allclose(logits, teacher.predict(x, verbose=0), atol=1e-5)
    np.testing.assert_array_equal(y, next(iter(data))[1])

    # Targets carrying other logits than the teacher's: the loss must follow them.
    student = shrink(teacher, num_layers=1)
    distiller = Distiller(teacher, student, temperature=1.0, alpha=1.0)
    distiller.compile(optimizer="sgd")
    texts = ["a good film", "a bad film"]
    fake = np.array([[4.0, -4.0], [4.0, -4.0]], "float32")
    got = distiller.evaluate(texts, (np.array([1, 0]), fake), verbose=0, return_dict=True)
    s = np.asarray(student.predict(texts, verbose=0))
    ps = np.exp(s) / np.exp(s).sum(-1, keepdims=True)
    pt = np.exp(fake) / np.exp(fake).sum(-1, keepdims=True)
    np.testing.assert_allclose(got["distillation_loss"],
                               np.mean(np.sum(pt * np.log(pt / ps), -1)), rtol=1e-4)
    history = distiller.fit(cached, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    with pytest.raises(ValueError, match="cached teacher logits carry no hidden states"):
        feature = Distiller(teacher, shrink(teacher, num_layers=1), hidden_weight=1.0)
        feature.compile(optimizer="sgd")
        feature.fit(cached, epochs=1, verbose=0)


@pytest.mark.slow
def test_pruning_and_qat_student_under_kd_keep_zeros_and_train_ranges(teacher, tmp_path):
    from keras_bertopt.quantization import quantize_aware

    before = _snapshot(teacher)
    qat = quantize_aware(shrink(teacher, num_layers=1))
    ranges = qat.activation_ranges()
    pruning = kb.pruning.MagnitudePruning(
        kb.pruning.ConstantSparsity(0.5, begin_step=0, frequency=1), include=KERNELS)
    # Logits, hidden states and attention maps from one student pass.
    distiller = Distiller(teacher, qat, alpha=0.5, hidden_weight=1.0, attention_weight=1.0)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    history = distiller.fit(kb.data.demo_dataset("train", 16, size=96), epochs=1, verbose=0,
                            callbacks=[pruning])
    assert {"hidden_state_loss", "attention_loss"} <= set(history.history)
    assert _unchanged(before, teacher)
    assert qat.qat_step == 96 // 16  # ranges updated once per step: one student pass
    moved = [k for k, r in qat.activation_ranges().items() if r != ranges[k]]
    assert len(moved) == len(ranges)
    kernels = kb.selection.select_variables(qat, KERNELS)
    for v in kernels:  # exact zeros, kept after the last optimizer step
        zeros = float(np.mean(np.asarray(v) == 0))
        assert abs(zeros - 0.5) < 0.02, (v.path, zeros)
    teacher_kernels = kb.selection.select_variables(teacher, KERNELS, trainable_only=False)
    assert all(float(np.mean(np.asarray(v) == 0)) < 0.01 for v in teacher_kernels)
    report = kb.export.to_tflite(qat, str(tmp_path / "qat.tflite"), quantization="int8",
                                 sample_data=["a good film", "bad"], num_samples=2,
                                 latency_runs=0)
    assert report.int8_ops > 0 and report.weight_sparsity > 0.3


@pytest.mark.slow
def test_backup_and_restore_resumes_distillation(teacher, tmp_path):
    backup = str(tmp_path / "backup")
    data = kb.data.demo_dataset("train", 16, size=64, shuffle=False)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise RuntimeError("interrupted")

    class FirstBatch(keras.callbacks.Callback):
        weights = None

        def on_train_batch_begin(self, batch, logs=None):
            if self.weights is None:
                self.weights = [np.array(v) for v in self.model.student.weights]

    def run(callbacks):
        student = shrink(teacher, num_layers=1)
        pruning = kb.pruning.MagnitudePruning(
            kb.pruning.PolynomialSparsity(0.0, 0.6, begin_step=0, end_step=8, frequency=2),
            include=KERNELS)
        distiller = Distiller(teacher, student, alpha=0.5)
        distiller.compile(optimizer=keras.optimizers.Adam(1e-3))
        try:
            distiller.fit(data, epochs=2, verbose=0, callbacks=[pruning] + callbacks)
        except RuntimeError as err:
            assert "interrupted" in str(err)
        return distiller, pruning

    broken, _ = run([keras.callbacks.BackupAndRestore(backup), Interrupt()])
    saved = [np.array(v) for v in broken.student.weights]
    first = FirstBatch()
    resumed, pruning = run([keras.callbacks.BackupAndRestore(backup), first])
    # The resumed run started from the interrupted student, not from the fresh copy.
    assert all(np.array_equal(a, b) for a, b in zip(saved, first.weights, strict=True))
    assert int(np.asarray(pruning.state.step)) == 8  # 4 steps before + 4 after the restart
    assert abs(pruning.current_sparsity() - 0.6) < 0.02
