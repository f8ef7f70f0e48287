"""keras_bertopt._compat: each private Keras access answers as the public behaviour says,
and a Keras where one moved gets an error naming it."""

import keras
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
