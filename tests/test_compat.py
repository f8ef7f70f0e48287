"""keras_bertopt._compat: each private Keras access answers as the public behaviour says,
and a Keras where one moved gets an error naming it."""

import keras
import numpy as np
import pytest

from keras_bertopt import _compat


def _model():
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(2, name="head")(inputs)
    return keras.Model(inputs, outputs)


def test_optimizer_variable_key_and_weight_decay_follow_the_public_rules():
    model = _model()
    optimizer = keras.optimizers.AdamW(weight_decay=0.1)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    optimizer.build(model.trainable_variables)
    kernel, bias = model.get_layer("head").kernel, model.get_layer("head").bias
    assert _compat.uses_weight_decay(optimizer, kernel)
    assert not _compat.uses_weight_decay(optimizer, bias)  # excluded by its name
    keys = {_compat.optimizer_variable_key(optimizer, v) for v in (kernel, bias)}
    assert len(keys) == 2
    assert _compat.optimizer_variable_key(optimizer, kernel) == \
        _compat.optimizer_variable_key(optimizer, kernel.value)


def test_a_private_name_keras_dropped_is_named():
    class Bare:
        pass

    with pytest.raises(AttributeError, match=r"Bare\._var_key is not there in Keras"):
        _compat.optimizer_variable_key(Bare(), None)
    with pytest.raises(ImportError, match="Bare has no _apply_weight_decay"):
        _compat.check_overrides(Bare, ("_apply_weight_decay",))
    _compat.check_overrides(keras.optimizers.Optimizer, _compat.OPTIMIZER_OVERRIDES)


def test_custom_objects_load_on_demand():
    from keras.src.saving import object_registration

    asked = []
    _compat.load_custom_objects_on_demand(asked.append)
    try:
        registry = object_registration.GLOBAL_CUSTOM_OBJECTS
        assert "kbo_test>Nothing" not in registry and asked == ["kbo_test>Nothing"]
        assert keras.saving.get_registered_object("kbo_test>Other") is None
        assert asked[-1] == "kbo_test>Other"
    finally:
        from keras_bertopt import _registry

        _compat.load_custom_objects_on_demand(_registry._on_lookup)


def test_keras_hub_utilities_are_what_bert_backbone_builds_with():
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=16)
    block = backbone.get_layer("transformer_layer_0")
    assert block.activation is _compat.bert_activation()
    initializer = keras.initializers.TruncatedNormal(stddev=0.02, seed=3)
    clone = _compat.clone_initializer(initializer)
    assert clone is not initializer and clone.get_config() == initializer.get_config()
    assert isinstance(backbone.get_layer("position_embedding"), keras_hub.layers.PositionEmbedding)


def test_attention_parts_recompute_multi_head_attention_by_its_own_equations():
    import numpy as np

    layer = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.25)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    mask = np.ones((2, 5, 5), dtype=bool)
    mask[:, :, 3:] = False  # the last two keys hidden
    expected = np.asarray(layer(x, x, attention_mask=mask))
    parts = _compat.attention_parts(layer)
    assert parts.dropout == 0.25 and parts.dropout_layer.rate == 0.25
    q, k, v = (np.asarray(getattr(layer, name)(x))
               for name in ("query_dense", "key_dense", "value_dense"))
    scores = np.einsum(parts.dot_product_equation, k, q * float(parts.inverse_sqrt_key_dim))
    # By hand: a softmax over the visible keys only, then the heads combined.
    scores = np.where(mask[:, None], scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    context = np.einsum(parts.combine_equation, weights, v)
    np.testing.assert_allclose(np.asarray(layer.output_dense(context)), expected, atol=1e-5)
    assert len(parts.attention_axes) == 1
    probabilities = np.asarray(parts.softmax(np.zeros((1, 2, 1, 3), "float32")))
    np.testing.assert_allclose(probabilities, np.full((1, 2, 1, 3), 1 / 3), atol=1e-6)

    class Moved:
        pass

    with pytest.raises(AttributeError, match=r"Moved\._inverse_sqrt_key_dim is not there"):
        _compat.attention_parts(Moved())


def test_call_context_training_is_the_enclosing_calls_flag():
    seen = []

    class Probe(keras.layers.Layer):
        def call(self, inputs):  # no `training` argument, like LayerNormalization
            seen.append(_compat.call_context_training(self))
            return inputs

    class Outer(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.probe = Probe()

        def call(self, inputs, training=None):
            return self.probe(inputs)

    outer = Outer()
    outer(keras.ops.ones((1, 2)))  # builds (Keras may trace the call once to do so)
    seen.clear()
    outer(keras.ops.ones((1, 2)), training=True)
    outer(keras.ops.ones((1, 2)), training=False)
    assert seen == [True, False]


def _train_counting_traces(steps_traced):
    """A seeded tiny classifier fit for 8 shuffled steps, then evaluated; the train step's
    Python body runs once per trace, so `steps_traced` counts the traces."""
    from _models import compile_classifier

    from keras_bertopt.data import demo_dataset
    from keras_bertopt.models import TinyConfig, build_classifier

    keras.utils.set_random_seed(0)
    model = compile_classifier(build_classifier(TinyConfig(), num_classes=2,
                                                sequence_length=16), 3e-3)
    step = model.train_step

    def counted(data):
        steps_traced.append(1)
        return step(data)

    model.train_step = counted
    model.fit(demo_dataset("train", size=256, seed=3), epochs=1, verbose=0)
    return model.get_weights(), model.evaluate(demo_dataset("validation"), verbose=0)


@pytest.mark.slow
def test_build_before_tracing_traces_once_and_trains_to_kerass_own_weights():
    deferred_traces, built_traces = [], []
    try:
        _compat.build_before_tracing(enabled=False)        # Keras's own deferred build
        deferred_weights, deferred_eval = _train_counting_traces(deferred_traces)
        _compat.build_before_tracing()
        built_weights, built_eval = _train_counting_traces(built_traces)
    finally:
        _compat.build_before_tracing()                      # the suite's setting
    # tf.function traces a function twice when its first call creates variables (the
    # optimizer's slots, the metrics' totals); built beforehand, once.
    assert (len(deferred_traces), len(built_traces)) == (2, 1)
    # Same variables, same shuffled data order, same dropout draws: the same training.
    for got, want in zip(built_weights, deferred_weights, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(built_eval, deferred_eval)


def test_traced_once_turns_the_build_on_inside_and_restores_what_was_there():
    on = _compat.builds_before_tracing
    try:
        for before in (False, True):
            _compat.build_before_tracing(enabled=before)
            with _compat.traced_once():
                assert on()
            assert on() is before
        with pytest.raises(RuntimeError), _compat.traced_once():
            _compat.build_before_tracing(enabled=False)
            raise RuntimeError("a failing stage")
        assert on()  # restored to the setting before the block, even after an error
    finally:
        _compat.build_before_tracing()                      # the suite's setting
