"""Structured pruning: importance scores, physical removal, the smaller model end to end."""

import re

import numpy as np
import pytest

SEQ = 16
TEXTS = ["a good movie", "bad film and boring", "great fun", "awful acting", "fine", "dull"]
LABELS = np.array([1, 0, 1, 0, 1, 0])


def _model(num_layers=2, num_heads=4, hidden_dim=32, intermediate_dim=64, dropout=0.0):
    from keras_bertopt.models import TinyConfig, build_classifier

    config = TinyConfig(num_layers=num_layers, num_heads=num_heads, hidden_dim=hidden_dim,
                        intermediate_dim=intermediate_dim, dropout=dropout, seed=1)
    return build_classifier(config, num_classes=2, sequence_length=SEQ, dropout=dropout)


def _tokens(model, texts=TEXTS):
    out = model.preprocessor(texts)
    return out[0] if isinstance(out, tuple) else out


def _attention(model, layer):
    return model.backbone.transformer_layers[layer]._self_attention_layer


def _ffn(model, layer):
    enc = model.backbone.transformer_layers[layer]
    return enc._feedforward_intermediate_dense, enc._feedforward_output_dense


def test_magnitude_scores_match_hand_values():
    from keras_bertopt.pruning import importance_scores

    model = _model()
    att = _attention(model, 0)
    # Zero every weight the scores read in layer 0, then give head h the value 1 + h
    # in its value kernel slice (32 x 8 entries): score = (1 + h) * sqrt(256).
    for dense in (att._query_dense, att._key_dense, att._value_dense, att._output_dense):
        dense.kernel.assign(np.zeros(dense.kernel.shape))
        dense.bias.assign(np.zeros(dense.bias.shape))
    value = np.zeros((32, 4, 8), "float32")
    for h in range(4):
        value[:, h, :] = 1 + h
    att._value_dense.kernel.assign(value)
    att._output_dense.kernel.assign(np.zeros((4, 8, 32)))
    inter, out = _ffn(model, 0)
    # Neuron j: column of 32 twos, bias 3, row of 32 zeros -> sqrt(32 * 4 + 9) = sqrt(137).
    inter.kernel.assign(np.full((32, 64), 2.0))
    inter.bias.assign(np.full((64,), 3.0))
    out.kernel.assign(np.zeros((64, 32)))
    scores = importance_scores(model, "magnitude")
    np.testing.assert_allclose(scores.heads[0], [16.0, 32.0, 48.0, 64.0], rtol=1e-6)
    np.testing.assert_allclose(scores.intermediate[0], np.full(64, np.sqrt(137.0)), rtol=1e-6)
    np.testing.assert_allclose(
        scores.layers[0], np.sqrt(256 * (1 + 4 + 9 + 16) + 64 * 137.0), rtol=1e-6
    )
    assert scores.heads[1].shape == (4,) and scores.intermediate[1].shape == (64,)
    assert scores.method == "magnitude" and scores.to_dict()["layers"][0] == scores.layers[0]


def _loss(model, scale_slices):
    """Loss on the test batch with kernel slices multiplied (restored after)."""
    import keras

    saved = []
    for variable, index, factor in scale_slices:
        w = variable.numpy()
        saved.append((variable, w.copy()))
        w[index] *= factor
        variable.assign(w)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
        LABELS, model(_tokens(model), training=False))
    for variable, w in saved:
        variable.assign(w)
    return float(loss)


def test_taylor_scores_are_the_gate_gradient():
    """|dL/dxi| where xi scales a head's output, a neuron, or all of a layer's units."""
    from keras_bertopt.pruning import importance_scores

    model = _model()
    # Larger logits make the loss sensitive enough for float32 finite differences.
    model.output_dense.kernel.assign(model.output_dense.kernel.numpy() * 300.0)
    scores = importance_scores(model, "taylor", data=(TEXTS, LABELS))
    assert scores.batches == 1
    eps = 1e-2

    def derivative(slices):
        up = _loss(model, [(v, i, 1 + eps) for v, i in slices])
        down = _loss(model, [(v, i, 1 - eps) for v, i in slices])
        return abs(up - down) / (2 * eps)

    att = _attention(model, 1)
    inter, out = _ffn(model, 0)
    for h in range(4):
        expected = derivative([(att._output_dense.kernel, np.s_[h])])
        np.testing.assert_allclose(scores.heads[1][h], expected, rtol=0.05, atol=1e-5)
    for j in (0, 7, 63):
        expected = derivative([(out.kernel, np.s_[j])])
        np.testing.assert_allclose(scores.intermediate[0][j], expected, rtol=0.05, atol=1e-5)
    layer0 = [(_attention(model, 0)._output_dense.kernel, np.s_[:]), (out.kernel, np.s_[:])]
    np.testing.assert_allclose(scores.layers[0], derivative(layer0), rtol=0.05, atol=1e-5)
    assert max(float(scores.heads[1].max()), float(scores.layers[0])) > 1e-3  # not all ~0


def test_nothing_removed_gives_equal_outputs():
    from keras_bertopt.pruning import PrunedBertBackbone, prune_structure

    model = _model(dropout=0.1)
    small = prune_structure(model)
    assert isinstance(small.backbone, PrunedBertBackbone)
    assert type(small) is type(model) and small.preprocessor is model.preprocessor
    x = _tokens(model)
    np.testing.assert_allclose(small(x), model(x), rtol=1e-6, atol=1e-6)
    assert small.count_params() == model.count_params()


def test_explicit_removal_shapes_and_exact_copies():
    from keras_bertopt.pruning import prune_structure

    model = _model(num_layers=3)
    small = prune_structure(model, heads=[[1], [0, 3], []], intermediate={0: range(32)},
                            layers=[1])
    backbone = small.backbone
    assert backbone.num_heads == [3, 4] and backbone.intermediate_dim == [32, 64]
    assert backbone.key_dim == 8 and len(backbone.transformer_layers) == 2
    att0 = _attention(small, 0)
    assert tuple(att0._query_dense.kernel.shape) == (32, 3, 8)
    assert tuple(att0._output_dense.kernel.shape) == (3, 8, 32)
    inter, out = _ffn(small, 0)
    assert tuple(inter.kernel.shape) == (32, 32) and tuple(out.kernel.shape) == (32, 32)
    # Surviving weights are the original's: layer 0 keeps heads 0, 2, 3 and neurons 32..63;
    # the new layer 1 is the original layer 2.
    np.testing.assert_array_equal(
        att0._key_dense.kernel.numpy(),
        _attention(model, 0)._key_dense.kernel.numpy()[:, [0, 2, 3]],
    )
    np.testing.assert_array_equal(inter.kernel.numpy(), _ffn(model, 0)[0].kernel.numpy()[:, 32:])
    np.testing.assert_array_equal(out.bias.numpy(), _ffn(model, 0)[1].bias.numpy())
    np.testing.assert_array_equal(
        _ffn(small, 1)[1].kernel.numpy(), _ffn(model, 2)[1].kernel.numpy()
    )
    assert small.count_params() < model.count_params()


def test_removed_units_that_were_zero_change_nothing():
    """Zeroing a head's value/output slices or a neuron equals removing it: outputs agree."""
    from keras_bertopt.pruning import prune_structure

    model = _model()
    att = _attention(model, 0)
    for variable, index in ((att._value_dense.kernel, np.s_[:, 2]), (att._value_dense.bias, 2),
                            (att._output_dense.kernel, 2)):
        w = variable.numpy()
        w[index] = 0
        variable.assign(w)
    inter, out = _ffn(model, 1)
    dropped = [3, 10, 40]
    for variable, index in ((inter.kernel, np.s_[:, dropped]), (inter.bias, dropped),
                            (out.kernel, dropped)):
        w = variable.numpy()
        w[index] = 0
        variable.assign(w)
    small = prune_structure(model, heads={0: [2]}, intermediate={1: dropped})
    x = _tokens(model)
    np.testing.assert_allclose(small(x), model(x), rtol=1e-5, atol=1e-6)


def test_fractions_and_counts_remove_lowest_scoring_units():
    from keras_bertopt.pruning import ImportanceScores, plan_structure, prune_structure

    model = _model(num_layers=3)
    scores = ImportanceScores(
        heads=[np.array([4.0, 1, 3, 2]), np.array([1.0, 2, 3, 4]), np.array([9.0, 0, 0, 9])],
        intermediate=[np.arange(64.0)[::-1], np.arange(64.0), np.arange(64.0)],
        layers=np.array([3.0, 1.0, 2.0]), method="magnitude")
    plan = plan_structure(model, heads=0.5, intermediate=16, layers=1, scores=scores)
    assert plan.keep_layers == [0, 2]
    assert plan.keep_heads == {0: [0, 2], 2: [0, 3]}
    assert plan.keep_neurons[0] == list(range(48)) and plan.keep_neurons[2] == list(range(16, 64))
    small = prune_structure(model, heads=0.5, intermediate=16, layers=1, importance=scores)
    assert small.backbone.num_heads == [2, 2] and small.backbone.intermediate_dim == [48, 48]
    # floor(0.3 * 4) = 1 head per layer.
    assert prune_structure(model, heads=0.3).backbone.num_heads == [3, 3, 3]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"heads": 1.0}, "in [0, 1)"),
        ({"intermediate": -0.1}, "in [0, 1)"),
        ({"heads": 4}, "remove all 4 heads"),
        ({"heads": [[0, 1, 2, 3], []]}, "remove all 4 heads"),
        ({"heads": [[0], [4]]}, "index 4 is out of range"),
        ({"heads": {2: [0]}}, "layer key 2 is out of range"),
        ({"heads": [[0]]}, "one list per layer"),
        ({"intermediate": {0: [64]}}, "out of range"),
        ({"layers": 2}, "remove all 2 transformer layers"),
        ({"layers": [0, 1]}, "remove all 2 transformer layers"),
        ({"layers": [5]}, "out of range"),
        ({"heads": "half"}, "`heads` must be"),
        ({"importance": "random"}, "`importance` must be"),
        ({"heads": 0.5, "importance": "taylor"}, "needs `data`"),
    ],
)
def test_bad_input_raises_before_work(kwargs, message):
    from keras_bertopt.pruning import prune_structure

    class Untouchable:
        def __iter__(self):
            raise AssertionError("data was read before the arguments were checked")

    model = _model()
    if kwargs.get("importance") != "taylor":
        kwargs = {"importance": "taylor", "data": Untouchable(), **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        prune_structure(model, **kwargs)


@pytest.mark.slow
def test_smaller_model_saves_loads_fits_and_exports(tmp_path):
    import keras

    from keras_bertopt.export import inspect_tflite, to_tflite
    from keras_bertopt.pruning import PrunedBertBackbone, prune_structure

    model = _model()
    small = prune_structure(model, heads=[[0, 1], [3]], intermediate=[range(16), range(32)],
                            importance="taylor", data=(TEXTS, LABELS))
    path = str(tmp_path / "small.keras")
    small.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded.backbone, PrunedBertBackbone)
    assert loaded.backbone.num_heads == [2, 3] and loaded.backbone.intermediate_dim == [48, 32]
    x = _tokens(model)
    np.testing.assert_allclose(loaded(x), small(x), atol=1e-6)
    loaded.compile(optimizer=keras.optimizers.Adam(1e-2),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = loaded.evaluate(np.array(TEXTS), LABELS, verbose=0)
    loaded.fit(np.array(TEXTS * 4), np.tile(LABELS, 4), batch_size=8, epochs=3, verbose=0)
    assert loaded.evaluate(np.array(TEXTS), LABELS, verbose=0) < before

    shapes = {}
    for name, m in (("dense", model), ("small", loaded)):
        file = str(tmp_path / f"{name}.tflite")
        report = to_tflite(m, file, quantization="dynamic", sample_data=TEXTS, latency_runs=0)
        assert report.label_agreement == 1.0
        shapes[name] = sorted(tuple(w["shape"]) for w in inspect_tflite(file)["weights"])
    # TFLite FULLY_CONNECTED weights are [out, in]: q/k/v of 2 and 3 heads x 8, the
    # attention output from 16 / 24 inputs, feed-forward 48 / 32 wide.
    for shape in [(16, 32), (24, 32), (32, 16), (32, 24), (48, 32), (32, 48), (32, 32)]:
        assert shape in shapes["small"], (shape, shapes["small"])
    assert (64, 32) in shapes["dense"] and (64, 32) not in shapes["small"]
    assert sum(np.prod(s) for s in shapes["small"]) < sum(np.prod(s) for s in shapes["dense"])
