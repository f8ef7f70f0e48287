"""create_optimizer: the BERT recipe, weight-decay exclusion by path, layer-wise LR decay."""

import os
import re
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_bertopt import optimizers, schedules
from keras_bertopt.models import TinyConfig, build_classifier

LR = 1e-2


def snapshot(model):
    return {v.path: np.array(v.numpy(), copy=True) for v in model.trainable_weights}


def expected_decayed(path, decay_embeddings=True):
    """Written independently of selection.NO_DECAY: kernels and (optionally) embedding tables."""
    if path.endswith("/kernel"):
        return True
    return decay_embeddings and path.endswith("/embeddings")


def test_recipe_defaults():
    opt = optimizers.create_optimizer(5e-5, total_steps=1000)
    assert isinstance(opt, optimizers.BertAdamW)
    assert isinstance(opt, keras.optimizers.AdamW)
    assert opt.weight_decay == pytest.approx(0.01)
    assert opt.epsilon == pytest.approx(1e-6)
    assert opt.global_clipnorm == pytest.approx(1.0) and opt.clipnorm is None
    lr = opt._learning_rate
    assert isinstance(lr, schedules.WarmUp) and lr.warmup_steps == 100  # 10% warm-up
    assert float(lr(0)) == 0.0
    assert float(lr(100)) == pytest.approx(5e-5)
    assert float(lr(1000)) == pytest.approx(0.0, abs=1e-12)
    assert isinstance(optimizers.create_optimizer(1e-3, 10, 0, kind="lamb"), keras.optimizers.Lamb)
    assert isinstance(optimizers.create_optimizer(1e-3, 10, 0, kind="adam"), keras.optimizers.Adam)


@pytest.mark.parametrize("kind", ["adamw", "lamb", "adam"])
def test_zero_gradient_step_decays_exactly_the_expected_variables(tiny_classifier, kind):
    model = tiny_classifier
    wd = 0.1
    opt = optimizers.create_optimizer(
        LR, total_steps=100, warmup_steps=0, kind=kind, weight_decay=wd
    )
    before = snapshot(model)
    opt.apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_weights])
    assert len(opt.variables) == 1 + 2 * len(model.trainable_weights)  # iteration + m, v
    changed = {p for p, old in before.items() if not np.array_equal(old, snapshot(model)[p])}
    expected = {p for p in before if expected_decayed(p)}
    assert changed == expected
    assert any("layer_norm" in p for p in before) and any(p.endswith("bias") for p in before)
    assert set(opt.decayed_variable_paths(model.trainable_weights)) == expected
    after = snapshot(model)
    if kind in ("adamw", "lamb"):  # decoupled: w <- w * (1 - lr * wd); zero Adam/LAMB update
        for path in expected:
            np.testing.assert_allclose(after[path], before[path] * (1 - LR * wd), rtol=1e-6)
    else:  # coupled L2 (torch Adam): the gradient is g = wd * w, then a first Adam step
        for path in expected:
            g = wd * before[path]
            c = np.sqrt(1 - 0.999)  # Keras Adam: lr * sqrt(1-b2) * m / ((1-b1) (sqrt(v) + eps))
            step = LR * c * g / (c * np.abs(g) + 1e-6)
            np.testing.assert_allclose(before[path] - after[path], step, rtol=1e-3, atol=2e-7)


def test_decay_embeddings_false_and_custom_exclusion(tiny_classifier):
    model = tiny_classifier
    opt = optimizers.create_optimizer(
        LR, 100, 0, weight_decay=0.1, decay_embeddings=False,
        exclude_from_weight_decay=[r"layer_norm", r"bias$", r"^logits/"],
    )
    before = snapshot(model)
    opt.apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_weights])
    after = snapshot(model)
    changed = {p for p in before if not np.array_equal(before[p], after[p])}
    expected = {p for p in before if expected_decayed(p, decay_embeddings=False)} - {
        "logits/kernel"
    }
    assert changed == expected


def test_keras_exclude_from_weight_decay_is_kept(tiny_classifier):
    model = tiny_classifier
    opt = optimizers.create_optimizer(LR, 100, 0, weight_decay=0.1)
    opt.exclude_from_weight_decay(var_names=["pooled_dense"])  # Keras's own API, by name
    before = snapshot(model)
    opt.apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_weights])
    assert len(opt.variables) == 1 + 2 * len(model.trainable_weights)
    after = snapshot(model)
    assert np.array_equal(before["pooled_dense/kernel"], after["pooled_dense/kernel"])
    assert not np.array_equal(before["logits/kernel"], after["logits/kernel"])


def test_layerwise_multipliers_formula():
    paths = ["token_embedding/embeddings", "embeddings_layer_norm/gamma"]
    paths += [f"transformer_layer_{k}/feedforward_output_dense/kernel" for k in range(3)]
    paths += ["pooled_dense/kernel", "logits/bias"]
    m = optimizers.layerwise_multipliers(paths, 0.8)
    assert m["logits/bias"] == m["pooled_dense/kernel"] == 1.0
    assert m["transformer_layer_2/feedforward_output_dense/kernel"] == pytest.approx(0.8)
    assert m["transformer_layer_1/feedforward_output_dense/kernel"] == pytest.approx(0.8**2)
    assert m["transformer_layer_0/feedforward_output_dense/kernel"] == pytest.approx(0.8**3)
    assert m["token_embedding/embeddings"] == m["embeddings_layer_norm/gamma"]
    assert m["token_embedding/embeddings"] == pytest.approx(0.8**4)


def expected_multiplier(path, decay, num_layers=2):
    match = re.search(r"transformer_layer_(\d+)/", path)
    if match:
        return decay ** (num_layers - int(match.group(1)))
    if "embedding" in path:
        return decay ** (num_layers + 1)
    return 1.0


def test_layerwise_step_sizes_adam_first_step(tiny_classifier):
    # Adam's first step moves each coordinate by lr * multiplier * g / (|g| + eps'):
    # with |g| = 1 that is lr * multiplier to ~1e-5.
    model = tiny_classifier
    decay = 0.5
    opt = optimizers.create_optimizer(
        LR, 100, 0, weight_decay=0.0, clipnorm=None, layerwise_lr_decay=decay
    )
    before = snapshot(model)
    opt.apply_gradients([(tf.ones_like(v), v) for v in model.trainable_weights])
    after = snapshot(model)
    for path in before:
        step = before[path] - after[path]
        np.testing.assert_allclose(step, LR * expected_multiplier(path, decay), rtol=1e-4)
        assert opt.learning_rate_multiplier(path) == pytest.approx(expected_multiplier(path, decay))


def one_fit_step(optimizer):
    """Weights before and after one traced `fit` step of a fresh, dropout-free tiny model."""
    model = build_classifier(TinyConfig(dropout=0.0), 2, sequence_length=16, dropout=0.0)
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def loss(y, logits):  # scaled so non-zero gradient coordinates are >> Adam's epsilon
        return 1e4 * cross_entropy(y, logits)

    model.compile(optimizer=optimizer, loss=loss)
    texts = ["the movie was good", "the plot was bad and dull", "great fun", "not good"] * 2
    before = snapshot(model)
    model.fit(texts, np.array([1, 0, 1, 0] * 2), batch_size=8, epochs=1, verbose=0)
    return before, snapshot(model)


@pytest.mark.slow
def test_layerwise_step_sizes_inside_fit():
    # Adam's first step is linear in the learning rate, so each variable's step
    # under layer-wise decay must be its multiplier times plain Keras Adam's step
    # on the identical model and batch (TinyConfig's seed makes the weights equal).
    # Comparing with Keras's own Adam also covers the sparse embedding gradients,
    # whose first step Keras does not bound by lr.
    decay = 0.5
    ours = optimizers.create_optimizer(
        LR, 100, 0, weight_decay=0.0, clipnorm=None, epsilon=1e-7, layerwise_lr_decay=decay
    )
    before, after = one_fit_step(ours)
    plain_before, plain_after = one_fit_step(keras.optimizers.Adam(LR, epsilon=1e-7))
    moved = 0
    for path in before:
        np.testing.assert_array_equal(before[path], plain_before[path])
        step, plain_step = before[path] - after[path], plain_before[path] - plain_after[path]
        multiplier = expected_multiplier(path, decay)
        # atol: float32 rounding of w - w' for |w| ~ 0.1
        np.testing.assert_allclose(step, multiplier * plain_step, rtol=1e-3, atol=5e-8)
        moved += int(np.abs(plain_step).max() > 0.1 * LR)  # all but e.g. the key bias
    assert moved >= len(before) - 3


def test_weight_decay_is_scaled_by_layer_multiplier(tiny_classifier):
    model = tiny_classifier
    opt = optimizers.create_optimizer(LR, 100, 0, weight_decay=0.1, layerwise_lr_decay=0.5)
    before = snapshot(model)
    opt.apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_weights])
    after = snapshot(model)
    for path in ("logits/kernel", "transformer_layer_0/self_attention_layer/query/kernel",
                 "token_embedding/embeddings"):
        factor = 1 - LR * 0.1 * expected_multiplier(path, 0.5)
        np.testing.assert_allclose(after[path], before[path] * factor, rtol=1e-6)


def test_lr_multipliers_pairs(tiny_classifier):
    model = tiny_classifier
    opt = optimizers.create_optimizer(
        LR, 100, 0, weight_decay=0.0, clipnorm=None, lr_multipliers=[(r"^logits/", 3.0)],
        model=model,
    )
    assert opt.built
    before = snapshot(model)
    opt.apply_gradients([(tf.ones_like(v), v) for v in model.trainable_weights])
    after = snapshot(model)
    np.testing.assert_allclose(before["logits/bias"] - after["logits/bias"], 3 * LR, rtol=1e-4)
    np.testing.assert_allclose(
        before["pooled_dense/bias"] - after["pooled_dense/bias"], LR, rtol=1e-4
    )


def test_compiled_model_with_recipe_survives_keras_save_load(tmp_path):
    # A plain functional model named like BERT: keras-hub Tasks override compile(),
    # so Keras does not restore their optimizer on load (it warns and asks to recompile).
    tokens = keras.Input((4,), dtype="int32")
    x = keras.layers.Embedding(10, 8, name="token_embedding")(tokens)
    x = keras.layers.LayerNormalization(name="embeddings_layer_norm")(x)
    x = keras.layers.Dense(8, name="transformer_layer_0")(x)
    x = keras.layers.Dense(8, name="transformer_layer_1")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(tokens, keras.layers.Dense(2, name="logits")(x))
    opt = optimizers.create_optimizer(
        1e-3, 20, warmup_steps=2, layerwise_lr_decay=0.8, decay_embeddings=False
    )
    model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x_data = np.arange(16, dtype="int32").reshape(4, 4) % 10
    y_data = np.array([1, 0, 1, 0])
    model.fit(x_data, y_data, batch_size=2, epochs=1, verbose=0)
    assert opt.learning_rate_multiplier("transformer_layer_0/kernel") == pytest.approx(0.8**2)
    path = str(tmp_path / "recipe.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    restored = loaded.optimizer
    assert type(restored) is optimizers.BertAdamW
    assert restored.layerwise_lr_decay == pytest.approx(0.8)
    assert restored.exclude_from_weight_decay_paths == opt.exclude_from_weight_decay_paths
    assert int(restored.iterations.numpy()) == 2
    assert restored.learning_rate_multipliers == opt.learning_rate_multipliers
    assert float(restored._learning_rate(7)) == pytest.approx(float(opt._learning_rate(7)))
    # Adam moments came back too
    for old, new in zip(opt.variables, restored.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(old), np.asarray(new))
    loaded.fit(x_data, y_data, batch_size=2, epochs=1, verbose=0)
    assert int(restored.iterations.numpy()) == 4


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(kind="sgd"), "kind"),
        (dict(weight_decay=-0.1), "weight_decay"),
        (dict(clipnorm=0.0), "clipnorm"),
        (dict(layerwise_lr_decay=1.5), "layerwise_lr_decay"),
        (dict(layerwise_lr_decay=0.0), "layerwise_lr_decay"),
        (dict(peak_learning_rate=-1.0), "peak_learning_rate"),
        (dict(total_steps=10, warmup_steps=10), "total_steps"),
        (dict(schedule="zigzag"), "kind"),
        (dict(lr_multipliers=[("logits", -1.0)]), "lr_multipliers"),
        (dict(epsilon=0.0), "epsilon"),
    ],
)
def test_bad_input(kwargs, argument):
    args = dict(peak_learning_rate=1e-3, total_steps=100)
    args.update(kwargs)
    with pytest.raises(ValueError, match=argument):
        optimizers.create_optimizer(**args)


def test_patterns_matching_nothing_raise_with_model():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(inputs))
    with pytest.raises(ValueError, match="layerwise_lr_decay"):
        optimizers.create_optimizer(1e-3, 100, layerwise_lr_decay=0.9, model=model)
    with pytest.raises(ValueError, match="lr_multipliers"):
        optimizers.create_optimizer(1e-3, 100, lr_multipliers=[("nothing_here", 2.0)], model=model)


@pytest.mark.slow
def test_example_script_reduced():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
    try:
        import finetune_bert_recipe
    finally:
        sys.path.pop(0)
    accuracy = finetune_bert_recipe.main(
        ["--epochs", "1", "--steps-per-epoch", "80", "--learning-rate", "5e-3",
         "--layerwise-decay", "0.95"]
    )
    assert 0.8 <= accuracy <= 1.0  # chance is 0.5
