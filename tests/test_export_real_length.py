"""Real-length inference: files that run each sentence at its own length, same labels as fixed."""

import numpy as np
import pytest

SEQ = 32


@pytest.fixture(scope="module")
def trained(trained_tiny):
    """The trained tiny classifier (see conftest), and 48 held-out demo sentences."""
    from keras_bertopt.data import demo_examples

    model = trained_tiny(SEQ)
    texts, labels = demo_examples("validation", 48)
    # Sentences of varied length, some longer than SEQ (truncated by the preprocessor).
    texts = texts[:44] + ["good", "a dull mess", " ".join(["a very good film"] * 12), "bad"]
    return model, texts, labels[:48]


def _record_invocations(runner):
    """Wrap every signature runner of a TFLiteClassifier; returns the list of input shapes."""
    shapes = []
    for entry in runner.signatures.entries:
        original = entry.runner

        def recording(original=original, key=entry.key, **feeds):
            shapes.append((key, feeds["token_ids"].shape))
            return original(**feeds)

        entry.runner = recording
    return shapes


def _real_lengths(model, texts):
    from keras_bertopt.export import preprocess_texts

    arrays = preprocess_texts(model.preprocessor, texts)
    return arrays["padding_mask"].sum(-1)


@pytest.fixture(scope="module")
def files(trained, tmp_path_factory):
    from keras_bertopt.export import to_tflite

    model, texts, _ = trained
    folder = tmp_path_factory.mktemp("real_length")
    reports = {}
    for name, kwargs in (("dynamic", {}),  # the default layout
                         ("fixed", {"length_buckets": None}),
                         ("buckets", {"length_buckets": (8, 16)})):
        reports[name] = to_tflite(model, folder / f"{name}.tflite", sample_data=texts,
                                  num_samples=48, latency_runs=0, **kwargs)
    return {name: (str(folder / f"{name}.tflite"), r) for name, r in reports.items()}


@pytest.mark.slow
def test_dynamic_file_runs_each_sentence_at_its_own_length(trained, files):
    from keras_bertopt.export import TFLiteClassifier

    model, texts, labels = trained
    path, report = files["dynamic"]
    assert report.layout == "dynamic" and report.sequence_length == SEQ
    assert report.label_agreement == 1.0 and report.max_abs_logit_diff < 1e-4
    runner = TFLiteClassifier(path, model.preprocessor)
    assert runner.layout == "dynamic" and runner.sequence_length == SEQ
    shapes = _record_invocations(runner)
    out = runner.predict(texts)
    lengths = _real_lengths(model, texts)
    # One batch-1 call per sentence, at exactly its token count, never past SEQ.
    assert sorted(s for _, s in shapes) == sorted((1, int(n)) for n in lengths)
    assert max(s[1] for _, s in shapes) == SEQ  # the long sentence, truncated
    assert np.median(lengths) < SEQ / 2  # so most calls really were short
    fixed = TFLiteClassifier(files["fixed"][0], model.preprocessor)
    assert fixed.layout == "fixed"
    fixed_shapes = _record_invocations(fixed)
    reference = fixed.predict(texts)
    assert {s for _, s in fixed_shapes} == {(1, SEQ)}
    np.testing.assert_array_equal(out["labels"], reference["labels"])
    np.testing.assert_allclose(out["probabilities"], reference["probabilities"], atol=1e-5)
    assert runner.evaluate((texts, labels))["accuracy"] == pytest.approx(
        fixed.evaluate((texts, labels))["accuracy"])


def test_bucketed_file_runs_each_sentence_in_the_shortest_bucket(trained, files):
    from keras_bertopt.export import TFLiteClassifier

    model, texts, _ = trained
    path, report = files["buckets"]
    assert report.layout == "buckets" and report.length_buckets == [8, 16, 32]
    runner = TFLiteClassifier(path, model.preprocessor)
    shapes = _record_invocations(runner)
    out = runner.predict(texts)
    lengths = _real_lengths(model, texts)
    expected = sorted(next(b for b in (8, 16, 32) if b >= n) for n in lengths)
    assert len(set(expected)) == 3  # the sentences fill every bucket
    assert sorted(s[1] for _, s in shapes) == expected
    assert all(key == f"len_{s[1]}" for key, s in shapes)
    reference = TFLiteClassifier(files["fixed"][0], model.preprocessor).predict(texts)
    np.testing.assert_array_equal(out["labels"], reference["labels"])
    np.testing.assert_allclose(out["probabilities"], reference["probabilities"], atol=1e-5)
    too_long = type(model.preprocessor)(tokenizer=model.preprocessor.tokenizer, sequence_length=64)
    with pytest.raises(ValueError, match=r"buckets \[8, 16, 32\].*packs to 64"):
        TFLiteClassifier(path, too_long)


@pytest.mark.slow
def test_dynamic_batch_groups_similar_lengths(trained, files, tmp_path):
    from keras_bertopt.export import TFLiteClassifier, to_tflite

    model, texts, _ = trained
    path = tmp_path / "batched.tflite"
    report = to_tflite(model, path, batch_size=None, sample_data=texts, latency_runs=0,
                       length_buckets="default")
    assert report.batch_size is None and report.layout == "buckets"
    runner = TFLiteClassifier(path, model.preprocessor, batch_size=8)
    shapes = _record_invocations(runner)
    out = runner.predict(texts)
    lengths = np.sort(_real_lengths(model, texts))
    # 48 sentences sorted by length, 8 per call, each call in the bucket of its longest.
    expected = [(8, 16 if lengths[i + 7] <= 16 else 32) for i in range(0, 48, 8)]
    assert [s for _, s in shapes] == expected and expected[0] == (8, 16)
    reference = TFLiteClassifier(files["fixed"][0], model.preprocessor).predict(texts)
    np.testing.assert_array_equal(out["labels"], reference["labels"])
    np.testing.assert_allclose(out["probabilities"], reference["probabilities"], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["dynamic", "float16", "int8"])
def test_quantized_real_length_files_match_their_fixed_length_twins(trained, tmp_path,
                                                                     quantization):
    from keras_bertopt.export import TFLiteClassifier, to_tflite

    model, texts, _ = trained
    kwargs = {"representative_data": texts} if quantization == "int8" else {}
    outs = {}
    # Post-training int8 takes buckets only when asked ("auto" is fixed for it, below).
    asked = (16, 32) if quantization == "int8" else "default"
    for layout, buckets in (("buckets", asked), ("fixed", "auto" if quantization == "int8"
                                                 else None)):
        path = tmp_path / f"{quantization}_{layout}.tflite"
        report = to_tflite(model, path, quantization, sample_data=texts, num_samples=48,
                           latency_runs=0, length_buckets=buckets, **kwargs)
        assert report.layout == layout
        outs[layout == "buckets"] = TFLiteClassifier(path, model.preprocessor).predict(texts)
    if quantization == "int8":
        # Full int8: both files run int8 matmuls; calibration differs (the bucketed file is
        # calibrated in the buckets, the fixed one on inputs padded to 32) so logits differ
        # within quantization error.
        assert report.ops["FULLY_CONNECTED"] == {"int8": 14}
        assert np.mean(outs[True]["labels"] == outs[False]["labels"]) >= 0.9
    else:
        np.testing.assert_array_equal(outs[True]["labels"], outs[False]["labels"])
        np.testing.assert_allclose(outs[True]["probabilities"], outs[False]["probabilities"],
                                   atol=2e-3)


def _mediapipe_agrees(path, texts, report, ours):
    """MediaPipe's TextClassifier, run on the file at `path`, labels `texts` as ours."""
    from keras_bertopt.export.metadata import mediapipe_labels

    assert report.metadata and report.output == "probabilities"
    assert report.mediapipe_samples == len(texts) and report.mediapipe_agreement == 1.0
    assert len(set(ours["labels"].tolist())) == 2  # a trained model: both classes occur
    theirs = mediapipe_labels(str(path), texts, report.labels)
    np.testing.assert_array_equal(np.asarray(theirs), ours["labels"])
    np.testing.assert_allclose(ours["probabilities"].sum(-1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_quantize_aware_model_exports_real_length_int8(trained, tmp_path):
    """QAT ranges are per-tensor variables, independent of the sequence length."""
    import keras

    from keras_bertopt.data import demo_dataset
    from keras_bertopt.export import TFLiteClassifier, to_tflite
    from keras_bertopt.quantization import quantize_aware, quantized_layers

    model, texts, _ = trained
    qat = quantize_aware(model)
    qat.compile(optimizer=keras.optimizers.AdamW(1e-4),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(demo_dataset("train", 32).take(4), epochs=1, verbose=0)
    outs = {}
    for name, kwargs in (("buckets", {"length_buckets": "default"}), ("dynamic", {}),
                         ("fixed", {"length_buckets": None})):
        path = tmp_path / f"qat_{name}.tflite"
        report = to_tflite(qat, path, "int8", sample_data=texts, num_samples=48,
                           latency_runs=0, **kwargs)
        assert report.quantize_aware and report.fake_quant_ops > 0
        assert report.label_agreement >= 0.98
        # Default arguments give the small file: embedding tables int8 too (GATHER on int8).
        assert report.ops["GATHER"].get("int8", 0) >= 2
        # Every layout keeps every matmul int8 (the dynamic one since QAT layers run as
        # one 2-D matmul when the length is unknown: 10 of 14 stayed float before).
        assert report.ops["FULLY_CONNECTED"] == {"int8": len(quantized_layers(qat))}
        runner = TFLiteClassifier(path, qat.preprocessor)
        shapes = _record_invocations(runner)
        outs[name] = runner.predict(texts)
        if name == "dynamic":  # the default file carries MediaPipe metadata
            _mediapipe_agrees(path, texts, report, outs[name])
        assert max(s[1] for _, s in shapes) == SEQ
        assert (min(s[1] for _, s in shapes) < SEQ) == (name != "fixed")
    # Same ranges, padding masked: the same labels in the buckets as at the fixed length.
    np.testing.assert_array_equal(outs["buckets"]["labels"], outs["fixed"]["labels"])
    assert np.mean(outs["dynamic"]["labels"] == outs["fixed"]["labels"]) >= 0.95


def test_lengths_beyond_the_position_table_fail_before_conversion(tiny_classifier, tmp_path,
                                                                  monkeypatch):
    import keras

    from keras_bertopt.export import to_tflite

    def no_work(*args, **kwargs):
        raise AssertionError("export work started before the arguments were checked")

    monkeypatch.setattr(keras.export, "ExportArchive", no_work)
    path = tmp_path / "model.tflite"
    for kwargs in ({}, {"length_buckets": None}, {"length_buckets": None,
                                                  "dynamic_length": True}):
        with pytest.raises(ValueError, match="`sequence_length` 129 exceeds the model's maximum"):
            to_tflite(tiny_classifier, path, sequence_length=129, **kwargs)
    with pytest.raises(ValueError, match="`length_buckets` must be 'auto', 'default', None or"):
        to_tflite(tiny_classifier, path, length_buckets=(16, 1))
    with pytest.raises(ValueError, match="`length_buckets` cannot be combined with dynamic"):
        to_tflite(tiny_classifier, path, length_buckets=(16,), dynamic_length=True)
    with pytest.raises(ValueError, match="`dynamic_length` must be True, False or 'auto'"):
        to_tflite(tiny_classifier, path, length_buckets=None, dynamic_length="yes")
