"""Distillation without training: students from `shrink`, the loss math, argument errors."""

import keras
import numpy as np
import pytest

from keras_bertopt.distillation import (
    Distiller,
    attention_loss,
    bert_forward,
    evenly_spaced,
    hidden_state_loss,
    shrink,
)
from keras_bertopt.models import TinyConfig, build_classifier


@pytest.fixture(scope="module")
def teacher():
    """An untrained 4-layer tiny BERT (what matters here is structure, not skill)."""
    return build_classifier(TinyConfig(num_layers=4, dropout=0.0), 2, sequence_length=16)


def _weights(layer):
    return [np.asarray(w) for w in layer.get_weights()]


def _same(a, b):
    wa, wb = _weights(a), _weights(b)
    return len(wa) == len(wb) and all(np.array_equal(x, y) for x, y in zip(wa, wb, strict=True))


def test_evenly_spaced_matches_distilbert():
    assert evenly_spaced(12, 6) == [0, 2, 4, 7, 9, 11]  # DistilBERT's initialisation
    assert evenly_spaced(6, 3) == [0, 3, 5]
    assert evenly_spaced(6, 1) == [5]
    assert evenly_spaced(4, 4) == [0, 1, 2, 3]


def test_shrink_copies_the_chosen_layers_exactly(teacher):
    student = shrink(teacher, keep_layers=[1, 3])
    tb, sb = teacher.backbone, student.backbone
    assert sb.num_layers == 2 and tb.num_layers == 4
    assert student.preprocessor is teacher.preprocessor
    assert _same(tb.transformer_layers[1], sb.transformer_layers[0])
    assert _same(tb.transformer_layers[3], sb.transformer_layers[1])
    assert not _same(tb.transformer_layers[0], sb.transformer_layers[0])
    for name in ("token_embedding", "position_embedding", "segment_embedding",
                 "embeddings_layer_norm", "pooled_dense"):
        assert _same(tb.get_layer(name), sb.get_layer(name)), name
    assert _same(teacher.output_dense, student.output_dense)
    # New variables, not shared ones: training the student leaves the teacher alone.
    assert {id(v) for v in student.weights}.isdisjoint({id(v) for v in teacher.weights})
    # Default: half the layers, evenly spaced (first and last).
    default = shrink(teacher)
    assert default.backbone.num_layers == 2
    assert _same(tb.transformer_layers[0], default.backbone.transformer_layers[0])
    assert _same(tb.transformer_layers[3], default.backbone.transformer_layers[1])
    # A frozen teacher (a Distiller sets trainable=False) still gives a trainable student.
    teacher.trainable = False
    frozen_copy = shrink(teacher, num_layers=2)
    teacher.trainable = True
    assert len(frozen_copy.trainable_weights) == len(default.trainable_weights) > 20
    # All layers kept: the same function.
    x = teacher.preprocessor(["a good film", "not a bad film"])
    full = shrink(teacher, num_layers=4)
    np.testing.assert_allclose(full(x), teacher(x), atol=1e-6)


def test_shrink_bad_arguments_name_the_argument(teacher):
    with pytest.raises(ValueError, match=r"`keep_layers`.*out of range \[4\].*4 transformer"):
        shrink(teacher, keep_layers=[0, 4])
    with pytest.raises(ValueError, match="`keep_layers`.*out of range"):
        shrink(teacher, keep_layers=[-1])
    with pytest.raises(ValueError, match="`keep_layers`.*repeats"):
        shrink(teacher, keep_layers=[1, 1])
    with pytest.raises(ValueError, match="`num_layers` must be between 1 and"):
        shrink(teacher, num_layers=5)
    with pytest.raises(ValueError, match="`num_layers` must be between 1 and"):
        shrink(teacher, num_layers=0)
    with pytest.raises(ValueError, match="not both"):
        shrink(teacher, num_layers=2, keep_layers=[0, 1])
    with pytest.raises(ValueError, match="`model` must be a keras-hub BERT classifier"):
        shrink(keras.Sequential([keras.layers.Dense(2)]))


def test_bert_forward_gives_the_task_logits_and_inner_states(teacher):
    x = teacher.preprocessor(["a good film", "bad"])
    out = bert_forward(teacher, x, attentions=True)
    np.testing.assert_allclose(out["logits"], teacher(x), atol=1e-6)
    assert len(out["hidden_states"]) == 5 and len(out["attentions"]) == 4
    assert tuple(out["attentions"][0].shape) == (2, 2, 16, 16)
    rows = np.asarray(out["attentions"][2]).sum(-1)
    np.testing.assert_allclose(rows, np.ones_like(rows), atol=1e-5)  # probabilities
    # Padding keys get no attention.
    pad = ~np.asarray(x["padding_mask"]).astype(bool)
    assert np.all(np.asarray(out["attentions"][0])[0][:, :, pad[0]] < 1e-6)


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_kd_loss_equals_hand_computation(teacher, alpha):
    temperature = 3.0
    student = shrink(teacher, num_layers=1)
    distiller = Distiller(teacher, student, temperature=temperature, alpha=alpha)
    distiller.compile(optimizer="sgd")
    t = np.array([[2.0, -1.0], [0.5, 0.3], [-3.0, 4.0]], "float32")
    s = np.array([[0.0, 1.0], [1.0, -1.0], [0.2, 0.1]], "float32")
    labels = np.array([0, 1, 1])
    # Cached teacher logits as targets: no model runs, only the loss.
    loss = float(distiller.compute_loss(y=(labels, t), y_pred=s))

    pt, ps = _softmax(t / temperature), _softmax(s / temperature)
    soft = temperature**2 * np.mean(np.sum(pt * np.log(pt / ps), axis=-1))
    hard = -np.mean(np.log(_softmax(s)[np.arange(3), labels]))
    expected = alpha * soft + (1 - alpha) * hard
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_feature_losses_equal_hand_computation():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(2, 3, 4)).astype("float32")
    s = rng.normal(size=(2, 3, 4)).astype("float32")
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    per_token = ((t - s) ** 2).mean(-1)
    expected = (per_token * mask).sum() / mask.sum()
    np.testing.assert_allclose(float(hidden_state_loss(t, s, mask)), expected, rtol=1e-5)

    # A mixed_bfloat16 student's hidden states against a float32 teacher: the loss is the
    # float32 MSE of the bfloat16-rounded values (it used to be computed, and returned, in
    # bfloat16, which a float32 total cannot add).
    import keras

    s16 = keras.ops.cast(s, "bfloat16")
    rounded = np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(s16, "float32")))
    loss16 = hidden_state_loss(t, s16, mask)
    assert keras.backend.standardize_dtype(loss16.dtype) == "float32"
    expected16 = (((t - rounded) ** 2).mean(-1) * mask).sum() / mask.sum()
    np.testing.assert_allclose(float(loss16), expected16, rtol=1e-5)

    ta = _softmax(rng.normal(size=(2, 2, 3, 3))).astype("float32")
    sa = _softmax(rng.normal(size=(2, 2, 3, 3))).astype("float32")
    kl = (ta * np.log(ta / sa)).sum(-1)  # [batch, heads, query]
    expected = (kl * mask[:, None, :]).sum() / (mask.sum() * 2)
    np.testing.assert_allclose(float(attention_loss(ta, sa, mask)), expected, rtol=1e-5)


def test_distiller_bad_arguments_name_the_argument(teacher):
    student = shrink(teacher, num_layers=2)
    for alpha in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"`alpha`.*must be in \[0, 1\]"):
            Distiller(teacher, student, alpha=alpha)
    for temperature in (0, -1.0):
        with pytest.raises(ValueError, match="`temperature` must be > 0"):
            Distiller(teacher, student, temperature=temperature)
    with pytest.raises(ValueError, match="`temperature` must be a number"):
        Distiller(teacher, student, temperature="hot")
    with pytest.raises(ValueError, match="`hidden_weight` must be >= 0"):
        Distiller(teacher, student, hidden_weight=-1)
    with pytest.raises(ValueError, match=r"`layer_map` pair \(1, 4\) is out of range"):
        Distiller(teacher, student, hidden_weight=1.0, layer_map={0: 0, 1: 4})
    three = build_classifier(TinyConfig(num_layers=1), 3, sequence_length=16)
    with pytest.raises(ValueError, match="`student` has 3 classes but `teacher` has 2"):
        Distiller(teacher, three)
    other_vocab = build_classifier(
        TinyConfig(vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "film"],
                   num_layers=1), 2, sequence_length=16)
    with pytest.raises(ValueError, match="`student`'s vocabulary .* differs from `teacher`'s"):
        Distiller(teacher, other_vocab)
    narrow = build_classifier(TinyConfig(num_layers=1, hidden_dim=16, num_heads=1,
                                         intermediate_dim=32), 2, sequence_length=16)
    with pytest.raises(ValueError, match="hidden size 16 differs from `teacher`'s 32"):
        Distiller(teacher, narrow, hidden_weight=1.0, projection=False)
    with pytest.raises(ValueError, match="`student` has 1 heads, `teacher` 2"):
        Distiller(teacher, narrow, attention_weight=1.0)
    softmax = build_classifier(TinyConfig(num_layers=1), 2, sequence_length=16,
                               activation="softmax")
    with pytest.raises(ValueError, match="`student` must output logits"):
        Distiller(teacher, softmax)
    # A narrower student is fine with learned projections (TinyBERT).
    projected = Distiller(teacher, narrow, hidden_weight=1.0, layer_map=[3])
    assert projected.layer_map == [(0, 3)]
    assert [tuple(p.kernel.shape) for p in projected.projections] == [(16, 32)]
