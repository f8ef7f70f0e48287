"""Recovery options of keras_bertopt.compress: frozen embedding tables, steps per execution,
dropout, hidden-state distillation, bfloat16 training."""

import numpy as np
import pytest

from keras_bertopt import recipe
from keras_bertopt.compress import Candidate, RecoverySettings, recover_candidate, teacher_logits
from keras_bertopt.compress.recover import EMBEDDING_TABLES

TABLES = EMBEDDING_TABLES
TRAINED = ("embeddings_layer_norm", "pooled_dense")


def _weights(model, name):
    return [np.array(w) for w in model.backbone.get_layer(name).get_weights()]


def _recover(model, cached=True, **settings):
    from keras_bertopt.data import demo_examples

    texts, labels = demo_examples("train", 64)
    logits = teacher_logits(model, texts) if cached else None
    options = RecoverySettings(epochs=1, batch_size=16, importance_batches=2,
                               learning_rate=1e-2, **settings)
    return recover_candidate(model, Candidate(1, 2, 32), texts, labels, logits, options)


@pytest.fixture(scope="module")
def plain():
    """The tiny classifier's recovery with every option at its default (float32, embeddings
    trained, one step per call, the model's dropout, logits only), made once for this file:
    the tests below compare an option's recovery against it."""
    from _models import tiny_classifier_model

    return _recover(tiny_classifier_model())


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_embeddings_keeps_the_tables_bit_identical(tiny_classifier, plain, freeze):
    before = {name: _weights(tiny_classifier, name) for name in TABLES + TRAINED}
    head = np.array(tiny_classifier.output_dense.kernel)
    # freeze_embeddings=False is the default: the plain recovery.
    student = _recover(tiny_classifier, freeze_embeddings=True) if freeze else plain
    for name in TABLES:
        after = _weights(student, name)
        same = all(np.array_equal(a, b) for a, b in zip(before[name], after, strict=True))
        assert same == freeze, name
        # Trainable again afterwards: a saved student fine-tunes as any other model.
        assert student.backbone.get_layer(name).trainable
    # Everything above the tables trained in both cases.
    for name in TRAINED:
        assert not np.allclose(before[name][0], _weights(student, name)[0]), name
    assert not np.allclose(head, np.array(student.output_dense.kernel))


def test_steps_per_execution_reaches_compile_and_trains_the_same(tiny_classifier, plain,
                                                                 monkeypatch):
    from keras_bertopt.distillation import Distiller

    seen = []
    real_compile = Distiller.compile

    def compile_spy(self, *args, **kwargs):
        seen.append(kwargs.get("steps_per_execution"))
        return real_compile(self, *args, **kwargs)

    monkeypatch.setattr(Distiller, "compile", compile_spy)
    four = _recover(tiny_classifier, steps_per_execution=4)
    assert seen == [4]
    # Same seed, same batches, same steps: 4 steps per call end where the plain recovery's
    # one step per call ends.
    for a, b in zip(plain.get_weights(), four.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("settings, argument", [
    ({"freeze_embeddings": "yes"}, "freeze_embeddings"),
    ({"freeze_embeddings": 1}, "freeze_embeddings"),
    ({"steps_per_execution": 0}, "steps_per_execution"),
    ({"steps_per_execution": 2.0}, "steps_per_execution"),
    ({"steps_per_execution": True}, "steps_per_execution"),
    ({"dropout": 1.0}, "dropout"),
    ({"dropout": -0.1}, "dropout"),
    ({"dropout": "0"}, "dropout"),
    ({"dtype_policy": "bfloat16"}, "dtype_policy"),  # bfloat16 weights: not a recovery
    ({"dtype_policy": "float16"}, "dtype_policy"),
])
def test_bad_recovery_options_are_refused_naming_them(settings, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        RecoverySettings(**settings)


def test_recovery_settings_say_what_the_student_learns_from():
    assert RecoverySettings().describe_distillation() == "logit distillation (T 2.0, alpha 0.7)"
    hidden = RecoverySettings(temperature=4.0, alpha=0.5, hidden_weight=1.5)
    assert hidden.describe_distillation() == (
        "logit distillation (T 4.0, alpha 0.5) + hidden states (weight 1.5, teacher live)")


@pytest.mark.parametrize("target, key", [
    ({"freeze_embeddings": "yes"}, "target.freeze_embeddings"),
    ({"steps_per_execution": 0}, "target.steps_per_execution"),
    ({"dropout": 1.0}, "target.dropout"),
    ({"dtype_policy": "mixed_float16"}, "target.dtype_policy"),
])
def test_recipe_target_recovery_options_checked(target, key):
    base = {"finetune": {"epochs": 1}, "prune": {"enabled": False}, "qat": {"enabled": False},
            "target": {"latency": 0.5, "max_accuracy_drop": 1.0}}
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        recipe.load_config({**base, "target": {**base["target"], **target}})
    good = recipe.load_config({**base, "target": {**base["target"], "freeze_embeddings": True,
                                                  "steps_per_execution": 8, "dropout": 0.0}})
    assert good.target.freeze_embeddings is True and good.target.steps_per_execution == 8
    assert good.target.dropout == 0.0


def test_recovery_dropout_is_set_for_the_fit_and_restored(tiny_classifier, monkeypatch):
    import keras

    from keras_bertopt import _compat, regularizers
    from keras_bertopt.distillation import Distiller

    seen = {}
    real_fit = Distiller.fit

    def fit_spy(self, *args, **kwargs):
        seen["rates"] = sorted({layer.rate for layer in _compat.flatten_layers(self.student)
                                if isinstance(layer, keras.layers.Dropout)})
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(Distiller, "fit", fit_spy)
    student = _recover(tiny_classifier, dropout=0.0)
    # Every Dropout of the student (hidden, attention, classifier) was off during the fit...
    assert seen["rates"] == [0.0]
    # ...and has the model's rate (TinyConfig: 0.1) again afterwards, configs included.
    rates = {layer.rate for layer in _compat.flatten_layers(student)
             if isinstance(layer, keras.layers.Dropout)}
    assert rates == {0.1}
    assert student.backbone.dropout == 0.1 and student.dropout == 0.1
    # Without the option nothing is changed.
    monkeypatch.setattr(regularizers, "set_dropout", None)
    _recover(tiny_classifier)
    assert seen["rates"] == [0.1]


def _hidden_gap(teacher, student, texts):
    """Mean over real tokens of the squared gap between the two last layers' outputs."""
    x = teacher.preprocessor(texts)
    t = np.asarray(teacher.backbone(x)["sequence_output"])
    s = np.asarray(student.backbone(x)["sequence_output"])
    mask = np.asarray(x["padding_mask"]).astype(bool)
    return float(np.mean(np.square(t - s)[mask]))


@pytest.mark.slow
def test_hidden_weight_pulls_the_students_hidden_states_to_the_teachers(tiny_classifier, plain):
    from keras_bertopt.data import demo_examples

    texts = demo_examples("validation", 64)[0]
    # Teacher live, and the student in mixed_bfloat16 (the example's fast recovery step): the
    # hidden-state loss of bfloat16 student states against float32 teacher ones is float32.
    hidden = _recover(tiny_classifier, cached=False, hidden_weight=10.0,
                      dtype_policy="mixed_bfloat16")
    # One student layer learns from the teacher's last one: the gap, computed here from
    # the two backbones, shrinks only when the hidden-state loss is on.
    assert _hidden_gap(tiny_classifier, hidden, texts) < 0.5 * _hidden_gap(
        tiny_classifier, plain, texts)
    with pytest.raises(ValueError, match="`hidden_weight`"):
        RecoverySettings(hidden_weight=-1.0)
    with pytest.raises(ValueError, match="`logits`"):  # no cache and no teacher pass
        _recover(tiny_classifier, cached=False)
    target = {"latency": 0.5, "max_accuracy_drop": 1.0}
    with pytest.raises(ValueError, match=r"target\.hidden_weight"):
        recipe.load_config({"target": {**target, "hidden_weight": -1}})
    config = recipe.load_config({"target": {**target, "hidden_weight": 1}})
    assert config.target.hidden_weight == 1


def _accuracy(model, texts, labels):
    return float(np.mean(np.argmax(model.predict(texts, verbose=0), -1) == np.asarray(labels)))


@pytest.mark.slow
def test_mixed_bfloat16_recovery_trains_in_bfloat16_and_returns_a_float32_model(
        tiny_classifier, plain):
    import keras

    from keras_bertopt.data import demo_examples

    bf16 = _recover(tiny_classifier, dtype_policy="mixed_bfloat16")
    # Returned in float32, like any recovered student (the file to export).
    assert bf16.backbone.dtype_policy.name == "float32"
    assert bf16.predict(["a fine film"], verbose=0).dtype == np.float32
    assert {w.dtype for w in bf16.weights} == {"float32"}
    # Same seed and batches as the float32 recovery: only bfloat16 rounding in the matmuls
    # sets them apart, so the weights differ (they would be equal if the policy were
    # ignored) and stay close.
    pairs = list(zip(plain.get_weights(), bf16.get_weights(), strict=True))
    assert any(not np.array_equal(a, b) for a, b in pairs)
    for a, b in pairs:
        np.testing.assert_allclose(a, b, atol=0.05)
    # And it learned as much: agreement with the labels on the training sentences.
    texts, labels = demo_examples("train", 64)
    assert _accuracy(bf16, texts, labels) >= _accuracy(plain, texts, labels) - 0.1
    config = recipe.load_config({"target": {"latency": 0.5, "max_accuracy_drop": 1.0,
                                            "dtype_policy": "mixed_bfloat16"}})
    assert config.target.dtype_policy == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"  # nothing global was changed
