"""MediaPipe metadata: the demo's files run in MediaPipe's TextClassifier with our labels."""

import subprocess
import sys

import numpy as np
import pytest

SEQ = 32
LABELS = ["negative", "positive"]


@pytest.fixture(scope="module")
def demo_model(trained_tiny):
    """The trained tiny demo classifier (see conftest), and 64 held-out sentences."""
    from keras_bertopt.data import demo_examples

    model = trained_tiny(SEQ)
    texts, labels = demo_examples("test", 64)
    return model, texts, labels


def _mediapipe_check(model, path, texts, report):
    from keras_bertopt.export import TFLiteClassifier
    from keras_bertopt.export.metadata import mediapipe_labels

    assert report.metadata and report.labels == LABELS and report.output == "probabilities"
    assert report.layout == "dynamic"  # the default: MediaPipe runs it at each text's length
    ours = TFLiteClassifier(path, model.preprocessor).predict(texts)
    theirs = mediapipe_labels(path, texts, LABELS)
    assert len(set(ours["labels"].tolist())) == 2  # a trained model: both classes occur
    np.testing.assert_array_equal(np.asarray(theirs), ours["labels"])
    assert report.mediapipe_samples == len(texts) and report.mediapipe_agreement == 1.0
    # The file outputs probabilities (MediaPipe's scores): rows sum to one.
    np.testing.assert_allclose(ours["probabilities"].sum(-1), 1.0, atol=1e-5)
    return ours


@pytest.mark.slow
def test_float32_file_with_metadata_runs_in_mediapipe(demo_model, tmp_path):
    from mediapipe.tasks.python.core.base_options import BaseOptions
    from mediapipe.tasks.python.text import text_classifier

    from keras_bertopt.export import to_tflite

    model, texts, _ = demo_model
    path = str(tmp_path / "demo_float32.tflite")
    report = to_tflite(model, path, metadata=True, labels=LABELS, sample_data=texts,
                       num_samples=64, latency_runs=0)
    assert report.label_agreement == 1.0 and report.max_abs_logit_diff < 1e-5
    ours = _mediapipe_check(model, path, texts, report)
    # MediaPipe's scores are the file's probabilities, category names our labels.
    options = text_classifier.TextClassifierOptions(
        base_options=BaseOptions(model_asset_path=path))
    with text_classifier.TextClassifier.create_from_options(options) as classifier:
        result = classifier.classify(texts[0]).classifications[0].categories
    scores = {c.category_name: c.score for c in result}
    assert set(scores) == set(LABELS)
    np.testing.assert_allclose([scores[name] for name in LABELS], ours["probabilities"][0],
                               atol=1e-5)
    assert "100.0% label agreement with TFLiteClassifier on 64 texts" in str(report)


def test_metadata_arguments_fail_before_conversion(tiny_classifier, tmp_path, monkeypatch):
    import keras
    import keras_hub

    from keras_bertopt.export import to_tflite

    def no_work(*args, **kwargs):
        raise AssertionError("export work started before the arguments were checked")

    monkeypatch.setattr(keras.export, "ExportArchive", no_work)
    path = tmp_path / "model.tflite"
    for labels in (None, ["only one"], ["a", "a"], ["a", ""], "ab"):
        with pytest.raises(ValueError, match="`labels` must be 2 distinct non-empty names"):
            to_tflite(tiny_classifier, path, metadata=True, labels=labels)
    with pytest.raises(ValueError, match="with metadata=True only"):
        to_tflite(tiny_classifier, path, metadata=False, labels=LABELS)
    with pytest.raises(ValueError, match="cannot be combined with metadata=True"):
        to_tflite(tiny_classifier, path, metadata=True, labels=LABELS, length_buckets=(16,))
    tokenizer = tiny_classifier.preprocessor.tokenizer
    cased = keras_hub.models.BertTokenizer(vocabulary=tokenizer.get_vocabulary(),
                                           lowercase=False)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(cased, sequence_length=SEQ)
    model = keras_hub.models.BertTextClassifier(tiny_classifier.backbone, 2,
                                                preprocessor=preprocessor)
    with pytest.raises(ValueError, match="cased .*MediaPipe's BERT tokenizer lowercases"):
        to_tflite(model, path, metadata=True, labels=LABELS)
    assert not path.exists()


def test_mediapipe_is_imported_lazily():
    code = ("import sys, keras_bertopt, keras_bertopt.export; "
            "assert 'mediapipe' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_version_module_stand_in(monkeypatch):
    """MediaPipe 1.2.x wheels lack the compiled version module: the stand-in takes its place."""
    from keras_bertopt.export import metadata

    name = metadata._VERSION_MODULE
    for module in list(sys.modules):
        if module.startswith("mediapipe.tasks.cc"):
            monkeypatch.delitem(sys.modules, module)
    metadata._install_version_module()
    try:
        module = sys.modules[name]
        assert module.GetMinimumMetadataParserVersion(b"any") == metadata.MIN_PARSER_VERSION
        from mediapipe.tasks.cc.metadata.python import _pywrap_metadata_version

        assert _pywrap_metadata_version is module
    finally:
        for module in list(sys.modules):
            if module.startswith("mediapipe.tasks.cc"):
                del sys.modules[module]


def test_metadata_writers_are_collected_before_exit(tiny_classifier, tmp_path):
    """MediaPipe's writers sit in a reference cycle; left to interpreter exit, their __del__
    prints "Exception ignored in MetadataWriter.__del__". `to_tflite` frees them itself."""
    import gc

    from keras_bertopt.export import to_tflite

    gc.collect()
    gc.disable()  # only the export's own collection may free them
    try:
        report = to_tflite(tiny_classifier, str(tmp_path / "m.tflite"), metadata=True,
                           labels=LABELS, sequence_length=16, num_samples=4, latency_runs=0)
        alive = [o for o in gc.get_objects() if type(o).__name__ == "MetadataWriter"]
    finally:
        gc.enable()
    assert report.metadata
    assert alive == []


def test_zipped_vocabulary_and_labels_carry_a_fixed_date(tmp_path):
    """MediaPipe zips vocab.txt / labels.txt with their file times; fixed, the same model
    exports to the same bytes at any time (a resumed run's files equal the first run's)."""
    import io
    import time
    import zipfile

    from keras_bertopt.export.metadata import fixed_zip_times

    buffer = io.BytesIO()
    buffer.write(b"flatbuffer bytes PK\x03\x04 that look like a header")
    with zipfile.ZipFile(buffer, "a") as archive:
        for name in ("vocab.txt", "labels.txt"):
            archive.writestr(zipfile.ZipInfo(name, time.localtime()[:6]), f"{name}\n" * 50)
    content = buffer.getvalue()
    fixed = fixed_zip_times(content)
    assert len(fixed) == len(content) and fixed != content
    with zipfile.ZipFile(io.BytesIO(fixed)) as archive:
        assert [i.date_time for i in archive.infolist()] == [(1980, 1, 1, 0, 0, 0)] * 2
        assert archive.read("labels.txt") == b"labels.txt\n" * 50  # CRC still checks
        assert archive.testzip() is None
    assert fixed[:48] == content[:48]
    assert fixed_zip_times(b"no archive here") == b"no archive here"
