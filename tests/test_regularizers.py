"""apply_regularization, L2SP and set_dropout on a built keras-hub BERT classifier."""

import keras
import numpy as np
import pytest

from keras_bertopt import regularizers
from keras_bertopt.models import TinyConfig, build_classifier

TEXTS = ["the movie was good", "the plot was bad and dull", "great fun", "not good"] * 2
LABELS = np.array([1, 0, 1, 0] * 2)


def compiled(model, learning_rate=0.0, optimizer=None):
    model.compile(
        optimizer=optimizer or keras.optimizers.SGD(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def eval_loss(model):
    return model.evaluate(TEXTS, LABELS, batch_size=8, verbose=0, return_dict=True)["loss"]


def fit_loss(model):
    """Loss `fit` reports for one batch of all 8 examples."""
    return model.fit(TEXTS, LABELS, batch_size=8, epochs=1, verbose=0).history["loss"][0]


@pytest.fixture
def quiet_classifier():
    """The tiny classifier without dropout, so fit's loss is deterministic."""
    return build_classifier(TinyConfig(dropout=0.0), 2, sequence_length=16, dropout=0.0)


def test_default_selection_is_transformer_kernels(tiny_classifier):
    model = tiny_classifier
    paths = regularizers.apply_regularization(model, keras.regularizers.L2(1e-3))
    expected = [
        v.path for v in model.trainable_weights
        if v.path.startswith("transformer_layer_") and v.path.endswith("/kernel")
    ]
    assert paths == expected and len(paths) == 12  # 2 layers x (q, k, v, out, ff in, ff out)
    assert len(model.losses) == 12
    by_hand = sum(1e-3 * float(np.sum(np.square(v.numpy()))) for v in model.trainable_weights
                  if v.path in paths)
    assert float(sum(keras.ops.convert_to_numpy(x) for x in model.losses)) == pytest.approx(
        by_hand, rel=1e-5
    )
    assert regularizers.regularization_penalty(model) == pytest.approx(by_hand, rel=1e-5)


def test_penalty_shows_up_in_fit_loss(quiet_classifier):
    model = compiled(quiet_classifier)  # SGD(0): weights never change
    without = fit_loss(model)  # traced without regularizers
    paths = regularizers.apply_regularization(
        model, keras.regularizers.L1L2(l1=1e-3, l2=1e-2), include=r"kernel$", exclude=r"^logits/"
    )
    assert "pooled_dense/kernel" in paths and "logits/kernel" not in paths
    penalty = regularizers.regularization_penalty(model)
    assert penalty > 1e-3
    with_penalty = fit_loss(model)  # the same model's fit, traced again
    assert with_penalty - without == pytest.approx(penalty, rel=1e-4)
    assert regularizers.remove_regularization(model) == paths
    assert model.losses == [] and regularizers.regularization_penalty(model) == 0.0


def test_l2sp_is_zero_at_start_and_grows_as_weights_move(quiet_classifier):
    model = quiet_classifier
    alpha = 1e-3
    paths = regularizers.apply_regularization(model, regularizers.L2SP(alpha))
    start = {v.path: v.numpy().copy() for v in model.trainable_weights if v.path in paths}
    assert regularizers.regularization_penalty(model) == 0.0
    assert [float(keras.ops.convert_to_numpy(x)) for x in model.losses] == [0.0] * len(paths)
    compiled(model, optimizer=keras.optimizers.Adam(1e-2))
    penalties = []
    for _ in range(3):
        fit_loss(model)
        penalties.append(regularizers.regularization_penalty(model))
    assert 0.0 < penalties[0] < penalties[2]
    by_hand = sum(
        alpha * float(np.sum(np.square(v.numpy() - start[v.path])))
        for v in model.trainable_weights if v.path in paths
    )
    assert penalties[-1] == pytest.approx(by_hand, rel=1e-4)


def test_l2sp_serialization():
    reg = regularizers.L2SP(0.25)
    config = keras.saving.serialize_keras_object(reg)
    assert config["registered_name"] == "keras_bertopt>L2SP"
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, regularizers.L2SP) and restored.alpha == 0.25
    with pytest.raises(ValueError, match="starting weights"):
        restored(keras.ops.ones((2,)))
    variable = keras.Variable(np.array([1.0, 2.0], "float32"))
    bound = restored.bound_to(variable)
    variable.assign([2.0, 0.0])
    assert float(bound(variable.value)) == pytest.approx(0.25 * (1 + 4))


def test_bad_input(tiny_classifier):
    model = tiny_classifier
    with pytest.raises(ValueError, match="include"):
        regularizers.apply_regularization(model, keras.regularizers.L2(), include=r"no_such_layer")
    with pytest.raises(ValueError, match="regularizer"):
        regularizers.apply_regularization(model, 3.0)
    with pytest.raises(ValueError, match="regularizer"):
        regularizers.apply_regularization(model, "not_a_regularizer")
    with pytest.raises(ValueError, match="alpha"):
        regularizers.L2SP(-1.0)
    regularizers.apply_regularization(model, "l2", include=r"^logits/kernel$")
    with pytest.raises(ValueError, match="overwrite"):
        regularizers.apply_regularization(model, keras.regularizers.L1(), include=r"^logits/")
    assert model.get_layer("logits").bias.regularizer is None  # nothing attached on error
    assert regularizers.apply_regularization(
        model, keras.regularizers.L1(), include=r"^logits/", overwrite=True
    ) == ["logits/kernel", "logits/bias"]


def dropout_rates(model):
    return sorted(
        (layer.name, layer.rate)
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.Dropout)
    )


def test_set_dropout_takes_effect_in_traced_fit(tiny_classifier):
    model = compiled(tiny_classifier)  # dropout 0.1 everywhere, SGD(0)
    reference = eval_loss(model)
    assert fit_loss(model) != pytest.approx(reference, abs=1e-6)  # dropout active in fit
    changed = regularizers.set_dropout(model, hidden=0.0, attention=0.0, classifier=0.0)
    assert changed == {"hidden": 5, "attention": 2, "classifier": 1}
    assert all(rate == 0.0 for _, rate in dropout_rates(model))
    assert fit_loss(model) == pytest.approx(reference, abs=1e-6)  # the new trace sees 0
    assert model.backbone.get_config()["dropout"] == 0.0
    assert model.get_config()["dropout"] == 0.0


def test_set_dropout_from_zero_and_separate_rates(quiet_classifier):
    model = compiled(quiet_classifier)
    reference = eval_loss(model)
    assert fit_loss(model) == pytest.approx(reference, abs=1e-6)
    weights_before = [(w.path, tuple(w.shape)) for w in model.weights]
    regularizers.set_dropout(model, hidden=0.3, attention=0.2, classifier=0.5)
    rates = dict(dropout_rates(model))
    assert rates["classifier_dropout"] == 0.5
    assert rates["embeddings_dropout"] == rates["feedforward_dropout"] == 0.3
    attention = [
        layer for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.MultiHeadAttention)
    ]
    assert [layer.dropout for layer in attention] == [0.2, 0.2]
    assert fit_loss(model) != pytest.approx(reference, abs=1e-4)  # layers built at 0 now drop
    # Dropout has no weights: the model's variables are the same ones, in the same order.
    assert [(w.path, tuple(w.shape)) for w in model.weights] == weights_before


def test_set_dropout_bad_input(tiny_classifier):
    with pytest.raises(ValueError, match="hidden"):
        regularizers.set_dropout(tiny_classifier, hidden=1.0)
    with pytest.raises(ValueError, match="classifier"):
        regularizers.set_dropout(tiny_classifier, classifier=-0.1)
    inputs = keras.Input((3,))
    plain = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    with pytest.raises(ValueError, match="attention"):
        regularizers.set_dropout(plain, attention=0.1)
