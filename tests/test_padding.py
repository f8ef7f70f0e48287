"""Batches padded to different widths (per-batch padding) joined and run everywhere."""

import numpy as np
import pytest

SEQ = 32


def _texts():
    """32 short sentences then 32 with a long one: two chunks of 32 pad to different widths."""
    from keras_bertopt.data import demo_examples

    texts, _ = demo_examples("validation", 64)
    short = sorted(texts, key=len)[:32]
    return short + texts[:31] + [" ".join(["a very good film"] * 10)]


def test_concatenate_padded_pads_on_the_right():
    from keras_bertopt.padding import concatenate_padded

    a = {"ids": np.array([[1, 2]]), "y": np.array([0])}
    b = {"ids": np.array([[3, 4, 5], [6, 0, 0]]), "y": np.array([1, 1])}
    out = concatenate_padded([a, b])
    np.testing.assert_array_equal(out["ids"], [[1, 2, 0], [3, 4, 5], [6, 0, 0]])
    np.testing.assert_array_equal(out["y"], [0, 1, 1])  # rank 1: joined as it is
    wide = concatenate_padded([a, b], width=4)
    assert wide["ids"].shape == (3, 4) and wide["ids"][0].tolist() == [1, 2, 0, 0]
    with pytest.raises(ValueError, match="cannot pad an array of length 3 to 2"):
        concatenate_padded([a, b], width=2)
    with pytest.raises(ValueError, match="`parts` must hold at least one batch"):
        concatenate_padded([])


@pytest.mark.slow
def test_dynamic_padding_keeps_predict_export_and_tflite_classifier_working(tmp_path):
    from keras_bertopt.data import dynamic_padding
    from keras_bertopt.export import TFLiteClassifier, to_tflite
    from keras_bertopt.models import TinyConfig, build_classifier

    model = build_classifier(TinyConfig(), num_classes=2, sequence_length=SEQ)
    texts = _texts()
    fixed_logits = np.asarray(model.predict(texts, batch_size=32, verbose=0))
    dynamic_padding(model)
    widths = {model.preprocessor(texts[:32])["token_ids"].shape[1],
              model.preprocessor(texts[32:])["token_ids"].shape[1]}
    assert len(widths) == 2 and max(widths) <= SEQ  # the two chunks differ in width
    np.testing.assert_allclose(model.predict(texts, batch_size=32, verbose=0), fixed_logits,
                               atol=1e-5)
    path = tmp_path / "fixed.tflite"
    report = to_tflite(model, path, length_buckets=None, metadata=False, sample_data=texts,
                       num_samples=64, latency_runs=0)
    assert report.layout == "fixed" and report.label_agreement == 1.0
    out = TFLiteClassifier(path, model.preprocessor).predict(texts)
    expected = np.exp(fixed_logits) / np.exp(fixed_logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)


def test_validation_metrics_and_teacher_cache_take_per_batch_padding():
    import keras_hub
    import tensorflow as tf

    from keras_bertopt.callbacks import ValidationMetrics
    from keras_bertopt.data import dynamic_padding
    from keras_bertopt.distillation import cache_teacher_logits
    from keras_bertopt.models import TinyConfig, build_classifier

    model = build_classifier(TinyConfig(), num_classes=2, sequence_length=SEQ)
    fixed = model.preprocessor
    bare = keras_hub.models.BertTextClassifier(model.backbone, 2, preprocessor=None)
    texts = _texts()
    labels = np.arange(64) % 2
    per_batch = dynamic_padding(fixed)
    data = tf.data.Dataset.from_tensor_slices((texts, labels)).batch(32).map(
        lambda x, y: (per_batch(x), y))
    reference = np.asarray(bare.predict(fixed(tf.constant(texts)), verbose=0))
    assert len({x["token_ids"].shape[1] for x, _ in data}) == 2  # batches differ in width
    cached = list(cache_teacher_logits(bare, data, batch_size=64))
    (x, (y, logits)), = cached
    np.testing.assert_allclose(logits.numpy(), reference, atol=1e-5)
    np.testing.assert_array_equal(y.numpy(), labels)
    callback = ValidationMetrics(data)
    callback.set_model(bare)
    accuracy = float(np.mean(reference.argmax(-1) == labels))
    assert callback.evaluate()["accuracy"] == pytest.approx(accuracy)
