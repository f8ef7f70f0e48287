"""The default file: one dynamic-length signature with MediaPipe metadata, run in MediaPipe,
LiteRT and TFLiteClassifier at each sentence's own length; inputs longer than the position
table cut inside the file; the static layouts on request."""

import numpy as np
import pytest

SEQ = 32
LABELS = ["negative", "positive"]
#: Over 200 word pieces: longer than the tiny model's 128-row position table.
LONG_TEXT = " ".join(["a dull and tedious film, not good"] * 30) + " but a wonderful end"


@pytest.fixture(scope="module")
def trained():
    """The tiny classifier after a few training steps, and 40 held-out demo sentences."""
    import keras

    from keras_bertopt.data import demo_dataset, demo_examples
    from keras_bertopt.models import TinyConfig, build_classifier

    model = build_classifier(TinyConfig(), num_classes=2, sequence_length=SEQ)
    model.compile(optimizer=keras.optimizers.AdamW(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(demo_dataset("train", 32).take(30), epochs=1, verbose=0)
    texts, _ = demo_examples("validation", 40)
    return model, texts


def _full_ids(model, text):
    """[CLS] every word piece [SEP] of `text`, untruncated, as batch-1 int32 inputs."""
    tokenizer = model.preprocessor.tokenizer
    pieces = np.asarray(tokenizer(text), np.int32).reshape(-1)
    ids = np.concatenate([[tokenizer.token_to_id("[CLS]")], pieces,
                          [tokenizer.token_to_id("[SEP]")]]).astype(np.int32)[None]
    return {"token_ids": ids, "segment_ids": np.zeros_like(ids),
            "padding_mask": np.ones_like(ids)}


def _mediapipe_scores(path, texts):
    """MediaPipe TextClassifier's score per label for each text, as an (n, labels) array."""
    from mediapipe.tasks.python.core.base_options import BaseOptions
    from mediapipe.tasks.python.text import text_classifier

    options = text_classifier.TextClassifierOptions(
        base_options=BaseOptions(model_asset_path=str(path)))
    rows = []
    with text_classifier.TextClassifier.create_from_options(options) as classifier:
        for text in texts:
            categories = classifier.classify(text).classifications[0].categories
            scores = {c.category_name: c.score for c in categories}
            rows.append([scores[name] for name in LABELS])
    return np.asarray(rows)


def test_layout_rules(tiny_classifier):
    """`resolve_layout`: which layout and metadata each mode and argument gets (no conversion)."""
    import importlib.util

    import keras_hub

    from keras_bertopt.export.layout import DEFAULT_LENGTH_BUCKETS, resolve_layout

    pre = tiny_classifier.preprocessor
    has_mediapipe = importlib.util.find_spec("mediapipe") is not None
    for mode, qat in (("none", False), ("float16", False), ("dynamic", False),
                      ("dynamic", True), ("int8", True)):
        layout = resolve_layout(mode, qat, pre, 2)
        assert (layout.length_buckets, layout.dynamic_length) == (None, True), mode
        assert layout.metadata == has_mediapipe
        assert layout.labels == (["0", "1"] if has_mediapipe else None)
    ptq = resolve_layout("int8", False, pre, 2)  # calibrated per static shape: fixed
    assert (ptq.length_buckets, ptq.dynamic_length, ptq.metadata) == (None, False,
                                                                      has_mediapipe)
    integer = resolve_layout("int8", True, pre, 2, fully_integer=True)  # integer-only chips
    assert (integer.dynamic_length, integer.metadata) == (False, False)
    fixed = resolve_layout("none", False, pre, 2, length_buckets=None, labels=LABELS)
    assert not fixed.dynamic_length and fixed.labels == (LABELS if has_mediapipe else None)
    buckets = resolve_layout("none", False, pre, 2, length_buckets="default")
    assert buckets.length_buckets == list(DEFAULT_LENGTH_BUCKETS)
    assert not buckets.dynamic_length and not buckets.metadata  # MediaPipe: one signature
    assert not resolve_layout("none", False, pre, 2, batch_size=None).metadata
    assert not resolve_layout("none", False, pre, 2, metadata=False).metadata
    cased = keras_hub.models.BertTextClassifierPreprocessor(
        keras_hub.models.BertTokenizer(vocabulary=pre.tokenizer.get_vocabulary(),
                                       lowercase=False), sequence_length=SEQ)
    assert not resolve_layout("none", False, cased, 2).metadata
    with pytest.raises(ValueError, match="`dynamic_length` must be True, False or 'auto'"):
        resolve_layout("none", False, pre, 2, dynamic_length="yes")
    with pytest.raises(ValueError, match="`metadata` must be True, False or 'auto'"):
        resolve_layout("none", False, pre, 2, metadata=1)
    with pytest.raises(ValueError, match="with metadata=True only"):
        resolve_layout("none", False, pre, 2, metadata=False, labels=LABELS)
    with pytest.raises(ValueError, match="cannot be combined with dynamic_length=True"):
        resolve_layout("none", False, pre, 2, length_buckets="default", dynamic_length=True)


def test_long_inputs_are_cut_in_the_graph():
    """`keep_first_and_last` against the packer's truncation done by hand in NumPy."""
    from keras_bertopt.export.converter import keep_first_and_last

    ids = np.array([[101, 5, 6, 7, 8, 9, 102, 0], [101, 5, 6, 102, 0, 0, 0, 0]], np.int32)
    mask = (ids != 0).astype(np.int32)
    segments = np.array([[0, 0, 0, 0, 1, 1, 1, 0], [0] * 8], np.int32)
    out = keep_first_and_last({"token_ids": ids, "segment_ids": segments,
                               "padding_mask": mask}, 5)
    np.testing.assert_array_equal(out["token_ids"], [[101, 5, 6, 7, 102], [101, 5, 6, 102, 0]])
    np.testing.assert_array_equal(out["padding_mask"], [[1] * 5, [1, 1, 1, 1, 0]])
    np.testing.assert_array_equal(out["segment_ids"], [[0, 0, 0, 0, 1], [0] * 5])
    short = keep_first_and_last({"token_ids": ids[:, :4], "segment_ids": segments[:, :4],
                                 "padding_mask": mask[:, :4]}, 5)
    np.testing.assert_array_equal(short["token_ids"], ids[:, :4])  # short rows unchanged


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["none", "dynamic"])
def test_default_file_runs_at_real_length_in_mediapipe_and_litert(trained, tmp_path,
                                                                   quantization):
    pytest.importorskip("mediapipe")
    from keras_bertopt.export import TFLiteClassifier, make_interpreter, to_tflite

    model, texts = trained
    path = tmp_path / f"default_{quantization}.tflite"
    report = to_tflite(model, path, quantization, labels=LABELS, sample_data=texts,
                       num_samples=40, latency_runs=0)
    assert report.layout == "dynamic" and report.metadata and report.output == "probabilities"
    assert report.mediapipe_samples == 40 and report.mediapipe_agreement == 1.0
    runner = TFLiteClassifier(path, model.preprocessor)
    all_texts = texts + [LONG_TEXT]
    ours = runner.predict(all_texts)
    assert len(set(ours["labels"].tolist())) == 2  # both classes occur
    theirs = _mediapipe_scores(path, all_texts)
    np.testing.assert_array_equal(theirs.argmax(-1), ours["labels"])
    np.testing.assert_allclose(theirs, ours["probabilities"], atol=1e-4)
    # LiteRT given every one of the long text's word pieces: the file cuts it to its
    # first SEQ - 1 tokens and [SEP], what the Python preprocessor does.
    full = _full_ids(model, LONG_TEXT)
    assert full["token_ids"].shape[1] > 128  # past the position table
    interpreter = make_interpreter(str(path))
    whole = interpreter.get_signature_runner("serving_default")(**full)["probabilities"]
    np.testing.assert_allclose(whole[0], ours["probabilities"][-1], atol=1e-5)
    keras_probabilities = model.predict([LONG_TEXT], verbose=0)
    assert int(np.argmax(keras_probabilities)) == int(ours["labels"][-1])
    # The preprocessor rebuilt from the file's own metadata (packing to 128: the file cuts
    # to its length) gives the same probabilities as the model's own.
    from keras_bertopt.export.metadata import metadata_preprocessor

    rebuilt = TFLiteClassifier(path, metadata_preprocessor(str(path))).predict(all_texts)
    np.testing.assert_allclose(rebuilt["probabilities"], ours["probabilities"], atol=1e-5)


@pytest.mark.slow
def test_static_layouts_on_request(trained, tmp_path):
    """Fixed length keeps metadata (MediaPipe pads and truncates to it); buckets do not."""
    pytest.importorskip("mediapipe")
    from keras_bertopt.export import TFLiteClassifier, to_tflite

    model, texts = trained
    all_texts = texts + [LONG_TEXT]
    fixed_path = tmp_path / "fixed.tflite"
    fixed = to_tflite(model, fixed_path, length_buckets=None, dynamic_length=False,
                      labels=LABELS, sample_data=texts, latency_runs=0)
    assert fixed.layout == "fixed" and fixed.metadata and fixed.mediapipe_agreement == 1.0
    reference = TFLiteClassifier(fixed_path, model.preprocessor).predict(all_texts)
    np.testing.assert_array_equal(_mediapipe_scores(fixed_path, all_texts).argmax(-1),
                                  reference["labels"])
    buckets = to_tflite(model, tmp_path / "buckets.tflite", length_buckets="default",
                        sample_data=texts, latency_runs=0)
    assert buckets.layout == "buckets" and buckets.length_buckets == [16, 24, 32]
    assert not buckets.metadata and buckets.output == "logits"
    out = TFLiteClassifier(tmp_path / "buckets.tflite", model.preprocessor).predict(all_texts)
    np.testing.assert_array_equal(out["labels"], reference["labels"])
    np.testing.assert_allclose(out["probabilities"], reference["probabilities"], atol=1e-5)


@pytest.mark.slow
def test_post_training_int8_default_is_fixed_length_with_metadata(trained, tmp_path):
    pytest.importorskip("mediapipe")
    from keras_bertopt.export import TFLiteClassifier, to_tflite

    model, texts = trained
    path = tmp_path / "ptq.tflite"
    report = to_tflite(model, path, "int8", representative_data=texts, labels=LABELS,
                       latency_runs=0)
    assert report.layout == "fixed" and report.metadata
    assert report.ops["FULLY_CONNECTED"] == {"int8": 14}
    ours = TFLiteClassifier(path, model.preprocessor).predict(texts + [LONG_TEXT])
    np.testing.assert_array_equal(_mediapipe_scores(path, texts + [LONG_TEXT]).argmax(-1),
                                  ours["labels"])


@pytest.mark.slow
def test_quantize_aware_int8_default_file_keeps_every_matmul_int8(trained, tmp_path):
    pytest.importorskip("mediapipe")
    import keras

    from keras_bertopt.data import demo_dataset
    from keras_bertopt.export import TFLiteClassifier, to_tflite
    from keras_bertopt.quantization import quantize_aware, quantized_layers

    model, texts = trained
    qat = quantize_aware(model)
    qat.compile(optimizer=keras.optimizers.AdamW(1e-4),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(demo_dataset("train", 32).take(4), epochs=1, verbose=0)
    path = tmp_path / "qat.tflite"
    report = to_tflite(qat, path, "int8", labels=LABELS, sample_data=texts, latency_runs=0)
    assert report.layout == "dynamic" and report.metadata
    assert report.ops["FULLY_CONNECTED"] == {"int8": len(quantized_layers(qat))}
    assert report.label_agreement >= 0.95 and report.mediapipe_agreement == 1.0
    ours = TFLiteClassifier(path, qat.preprocessor).predict(texts + [LONG_TEXT])
    np.testing.assert_array_equal(_mediapipe_scores(path, texts + [LONG_TEXT]).argmax(-1),
                                  ours["labels"])
