"""TFLite export: float / float16 / dynamic / int8 files checked against the Keras model."""

import json
import os

import numpy as np
import pytest

SEQ = 32


@pytest.fixture(scope="module")
def trained(trained_tiny):
    """The trained tiny classifier (varied logits; see conftest), and 64 held-out texts."""
    from keras_bertopt.data import demo_examples

    model = trained_tiny(SEQ)
    texts, labels = demo_examples("validation", 64)
    return model, texts, labels


@pytest.fixture(scope="module")
def float_file(trained, tmp_path_factory):
    from keras_bertopt.export import to_tflite

    model, texts, _ = trained
    folder = tmp_path_factory.mktemp("float")
    path = str(folder / "model.tflite")
    # The default layout (one dynamic-length signature); metadata off so the file keeps logits.
    report = to_tflite(model, path, sample_data=texts, num_samples=64, latency_runs=3,
                       metadata=False)
    return path, report


@pytest.fixture(scope="module")
def fixed_float_report(trained, tmp_path_factory):
    """A single fixed-length float32 file: the size reference for the quantized fixed files
    (a tiny model's bucketed file is mostly per-bucket graph, not weights)."""
    from keras_bertopt.export import to_tflite

    model, texts, _ = trained
    path = tmp_path_factory.mktemp("fixed") / "model.tflite"
    return to_tflite(model, path, sample_data=texts, latency_runs=0, length_buckets=None)


def _keras_logits(model, texts):
    return np.asarray(model.predict(np.asarray(texts), verbose=0))


def test_float_export_matches_keras(float_file):
    path, report = float_file
    assert os.listdir(os.path.dirname(path)) == ["model.tflite"]  # no temporary left over
    with open(path, "rb") as f:
        assert f.read(8)[4:] == b"TFL3"
    assert report.quantization == "none" and not report.quantize_aware
    assert report.sequence_length == SEQ and report.batch_size == 1
    assert report.layout == "dynamic" and report.length_buckets is None  # the default
    assert report.size_bytes == os.path.getsize(path)
    assert 0 < report.gzip_bytes < report.size_bytes
    assert report.num_samples == 64 and report.sample_source == "sample_data"
    assert report.label_agreement == 1.0
    assert report.max_abs_logit_diff < 1e-4
    # 2 layers x (q, k, v, attention output, 2 feed-forward) + pooler + logits, all float.
    assert report.ops["FULLY_CONNECTED"] == {"float": 14}
    assert report.int8_ops == 0 and report.hybrid_ops == 0 and report.float_ops > 14
    assert report.weight_params > 0 and report.weight_sparsity < 0.05
    assert report.latency_ms > 0 and report.latency_runs == 3
    as_json = json.loads(json.dumps(report.to_dict()))
    assert as_json["ops"]["FULLY_CONNECTED"]["float"] == 14
    assert "label agreement 100.0%" in str(report)


@pytest.mark.slow
def test_classifier_predicts_like_keras(trained, float_file):
    from keras_bertopt.data import demo_dataset
    from keras_bertopt.export import TFLiteClassifier, evaluate

    model, texts, labels = trained
    path, _ = float_file
    runner = TFLiteClassifier(path, model.preprocessor)
    assert runner.sequence_length == SEQ and runner.file_batch_size == 1
    out = runner.predict(texts)
    logits = _keras_logits(model, texts)
    assert out["probabilities"].shape == (64, 2) and out["labels"].shape == (64,)
    np.testing.assert_array_equal(out["labels"], logits.argmax(-1))
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    assert len(set(out["labels"].tolist())) == 2  # the trained model predicts both classes
    keras_accuracy = float(np.mean(logits.argmax(-1) == np.asarray(labels)))
    result = runner.evaluate((texts, labels))
    assert result["accuracy"] == pytest.approx(keras_accuracy)
    assert result["num_examples"] == 64
    on_dataset = evaluate(path, model.preprocessor, demo_dataset("validation", 16, size=64))
    assert on_dataset["accuracy"] == pytest.approx(keras_accuracy)
    single = runner.predict("a wonderful film")
    assert single["labels"].shape == (1,) and runner.num_classes == 2
    assert runner.predict([])["probabilities"].shape == (0, 2)


def test_inspect_and_measure_latency(float_file):
    from keras_bertopt.export import inspect_tflite, measure_latency

    path, report = float_file
    facts = inspect_tflite(path)
    assert facts["ops"] == report.ops and facts["weight_params"] == report.weight_params
    # What the tiny 2-layer BERT must contain, all float32 and builtin: per layer q, k, v,
    # attention output and two feed-forward matmuls, plus pooler and logits (14 FULLY_CONNECTED);
    # one softmax per layer; token and segment tables read by float GATHERs.
    ops = facts["ops"]
    assert ops["FULLY_CONNECTED"] == {"float": 14}
    assert ops["SOFTMAX"] == {"float": 2}
    assert ops["GATHER"]["float"] == 2  # int32 gathers (run-time shapes, the cut) are "other"
    assert not any(name.startswith(("FLEX", "CUSTOM")) for name in ops)
    assert all(w["dtype"] == "FLOAT32" for w in facts["weights"])
    timing = measure_latency(path, runs=3, warmup=1, num_threads=1, sequence_length=SEQ)
    assert timing["runs"] == 3 and timing["sequence_length"] == SEQ
    assert 0 < timing["min_ms"] <= timing["median_ms"] <= timing["p90_ms"]
    with pytest.raises(ValueError, match="runs"):
        measure_latency(path, runs=0)


@pytest.mark.slow
def test_dynamic_and_float16_exports(trained, fixed_float_report, tmp_path):
    from keras_bertopt.export import to_tflite

    model, texts, _ = trained
    float_report = fixed_float_report
    dynamic = to_tflite(model, tmp_path / "dynamic.tflite", "dynamic", sample_data=texts,
                        latency_runs=0, length_buckets=None)
    # The 32x2 logits kernel is below the converter's size threshold and stays float.
    assert dynamic.ops["FULLY_CONNECTED"].get("hybrid", 0) >= 13
    assert dynamic.size_bytes < 0.7 * float_report.size_bytes
    assert dynamic.label_agreement >= 0.95 and dynamic.latency_ms is None
    half = to_tflite(model, tmp_path / "half.tflite", "float16", sample_data=texts,
                     latency_runs=0, length_buckets=None)
    assert half.op_signatures.get("DEQUANTIZE(FLOAT16)", 0) > 0
    assert half.int8_ops == 0 and half.hybrid_ops == 0
    assert half.size_bytes < 0.8 * float_report.size_bytes
    assert half.max_abs_logit_diff < 1e-2 and half.label_agreement >= 0.95


@pytest.mark.slow
def test_post_training_int8_has_int8_fully_connected(trained, fixed_float_report, tmp_path):
    from keras_bertopt.data import demo_dataset
    from keras_bertopt.export import TFLiteClassifier, to_tflite

    model, texts, _ = trained
    float_report = fixed_float_report
    path = tmp_path / "int8.tflite"
    report = to_tflite(model, path, "int8",
                       representative_data=demo_dataset("train", 16, size=64),
                       sample_data=texts, num_samples=64, latency_runs=0, length_buckets=None)
    assert not report.quantize_aware
    assert report.ops["FULLY_CONNECTED"] == {"int8": 14}
    assert report.ops["BATCH_MATMUL"] == {"int8": 4}
    assert report.int8_ops > report.float_ops
    assert report.size_bytes < 0.7 * float_report.size_bytes
    # Full-int8 PTQ also quantizes LayerNorm, GELU and softmax: it is lossier than QAT, whose
    # export keeps those in float (the agreement a briefly trained tiny model reaches is ~0.8).
    assert report.label_agreement >= 0.7 and report.max_abs_logit_diff < 1.0
    labels = TFLiteClassifier(path, model.preprocessor).predict(texts)["labels"]
    keras_labels = _keras_logits(model, texts).argmax(-1)
    assert np.mean(labels == keras_labels) == pytest.approx(report.label_agreement)
    # Selective PTQ: attention matmuls (two activations) stay float, the dense layers int8.
    selective = to_tflite(model, tmp_path / "int8_fm.tflite", "int8",
                          representative_data=demo_dataset("train", 16, size=64),
                          keep_float_ops=["BATCH_MATMUL"],
                          latency_runs=0)
    assert selective.ops["FULLY_CONNECTED"] == {"int8": 14}
    assert selective.ops["BATCH_MATMUL"] == {"float": 4}
    assert selective.label_agreement >= 0.7
    # Post-training int8 quantizes each length bucket's weights on its own (a 6x file on
    # MiniLM), so the default layout is the fixed-length file for it.
    assert selective.layout == "fixed"


@pytest.mark.slow
def test_default_int8_file_is_a_quarter_of_float32_when_weights_dominate(tmp_path):
    """`quantize_aware(model)` + `to_tflite(..., "int8")`, default arguments: the small file.

    A tiny BERT with a 4,000-word vocabulary, so that (as in real BERTs, where the token
    table is up to half the parameters) the weights, not the graph, make up the file:
    float32 0.62 MB, of which the token table is 0.52 MB. Measured (TF 2.21): the int8 file
    is 0.36x of float32 with int8 tables (the default), 0.98x with float32 tables.
    """
    import keras

    from keras_bertopt.data import demo_dataset, demo_vocabulary
    from keras_bertopt.export import to_tflite
    from keras_bertopt.models import TinyConfig, build_classifier
    from keras_bertopt.quantization import quantize_aware

    vocabulary = demo_vocabulary() + [f"extra{i}" for i in range(4000)]
    model = build_classifier(TinyConfig(vocabulary=vocabulary, seed=0), num_classes=2,
                             sequence_length=SEQ)
    # One fixed length for both: the tiny model's per-bucket graph would otherwise outweigh
    # the weights this test is about.
    float_report = to_tflite(model, tmp_path / "float.tflite", verify=False, length_buckets=None)
    qat = quantize_aware(model)
    qat.compile(optimizer=keras.optimizers.AdamW(1e-4),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(demo_dataset("train", 32).take(2), epochs=1, verbose=0)  # sets activation ranges
    report = to_tflite(qat, tmp_path / "int8.tflite", "int8", verify=False, length_buckets=None)
    assert report.ops["GATHER"].get("int8", 0) >= 2
    assert report.size_bytes <= 0.45 * float_report.size_bytes
    # quantize_embeddings=False: the same int8 matmuls, the tables stay float32. The file
    # grows by 3 bytes (float32 - int8) per table entry, counted here from the model.
    from keras_bertopt.quantization import QuantizationConfig

    tables = sum(int(np.prod(w.shape)) for w in model.weights if w.path.endswith("embeddings"))
    float_tables = quantize_aware(model, QuantizationConfig(quantize_embeddings=False))
    float_tables.compile(optimizer=keras.optimizers.AdamW(1e-4),
                         loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    float_tables.fit(demo_dataset("train", 32).take(2), epochs=1, verbose=0)
    kept = to_tflite(float_tables, tmp_path / "int8_float_tables.tflite", "int8", verify=False,
                     length_buckets=None)
    assert kept.ops["GATHER"].get("int8", 0) == 0
    assert kept.ops["FULLY_CONNECTED"] == report.ops["FULLY_CONNECTED"]
    assert kept.size_bytes - report.size_bytes == pytest.approx(3 * tables, rel=0.1)
    assert kept.size_bytes >= 0.9 * float_report.size_bytes


@pytest.mark.slow
def test_pruned_weights_export_with_their_zeros(tiny_classifier, tmp_path):
    from keras_bertopt.export import to_tflite
    from keras_bertopt.selection import select_variables

    for variable in select_variables(tiny_classifier, r"/kernel$"):
        w = np.asarray(variable.numpy())
        threshold = np.quantile(np.abs(w), 0.5)
        variable.assign(np.where(np.abs(w) <= threshold, 0.0, w).astype(w.dtype))
    report = to_tflite(tiny_classifier, tmp_path / "sparse.tflite", "dynamic", latency_runs=0)
    assert report.sample_source == "random" and report.label_agreement >= 0.9
    assert report.weight_sparsity >= 0.5
    facts_weights = report.ops["FULLY_CONNECTED"]
    assert facts_weights.get("hybrid", 0) >= 13
    assert len(report.weights) == 14
    assert all(w["sparsity"] >= 0.5 for w in report.weights)
    assert {w["dtype"] for w in report.weights} == {"INT8", "FLOAT32"}  # small logits kernel
    assert report.all_weight_sparsity < report.weight_sparsity  # embeddings were not pruned


@pytest.mark.slow
def test_dynamic_batch_file(trained, float_file, tmp_path):
    from keras_bertopt.export import TFLiteClassifier, to_tflite

    model, texts, _ = trained
    path = tmp_path / "batched.tflite"
    report = to_tflite(model, path, batch_size=None, sample_data=texts, latency_runs=2)
    assert report.batch_size is None and report.label_agreement == 1.0
    runner = TFLiteClassifier(path, model.preprocessor, batch_size=16)
    fixed = TFLiteClassifier(float_file[0], model.preprocessor)
    np.testing.assert_allclose(runner.predict(texts[:40])["probabilities"],
                               fixed.predict(texts[:40])["probabilities"], atol=1e-5)


def test_bad_arguments_raise_before_any_work(tiny_classifier, tmp_path, monkeypatch):
    import keras
    import keras_hub

    from keras_bertopt.export import to_tflite

    def no_work(*args, **kwargs):
        raise AssertionError("export work started before the arguments were checked")

    monkeypatch.setattr(keras.export, "ExportArchive", no_work)
    path = tmp_path / "model.tflite"
    with pytest.raises(ValueError, match="`quantization` must be one of"):
        to_tflite(tiny_classifier, path, quantization="int4")
    with pytest.raises(ValueError, match="needs `representative_data`"):
        to_tflite(tiny_classifier, path, quantization="int8")
    with pytest.raises(ValueError, match="exceeds the model's maximum sequence length 128"):
        to_tflite(tiny_classifier, path, sequence_length=129)
    with pytest.raises(ValueError, match="`batch_size`"):
        to_tflite(tiny_classifier, path, batch_size=0)
    with pytest.raises(ValueError, match="`num_samples`"):
        to_tflite(tiny_classifier, path, num_samples=0)
    with pytest.raises(ValueError, match="unknown TFLite op types \\['MATMUL'\\]"):
        to_tflite(tiny_classifier, path, "int8", representative_data=["a"],
                  keep_float_ops=["MATMUL"])
    with pytest.raises(ValueError, match="`keep_float_ops` applies to quantization='int8' only"):
        to_tflite(tiny_classifier, path, "dynamic", keep_float_ops="BATCH_MATMUL")
    with pytest.raises(ValueError, match="unknown converter attributes"):
        to_tflite(tiny_classifier, path, converter_options={"no_such_option": True})
    with pytest.raises(ValueError, match="`representative_data` must hold raw strings"):
        to_tflite(tiny_classifier, path, "int8", representative_data=[np.zeros((2, 3))])
    with pytest.raises(ValueError, match="`sample_data` must hold raw strings"):
        to_tflite(tiny_classifier, path, sample_data=[np.zeros((2, 3))])
    bare = keras_hub.models.BertTextClassifier(tiny_classifier.backbone, 2, preprocessor=None)
    with pytest.raises(ValueError, match="has no `preprocessor`"):
        to_tflite(bare, path, "int8", representative_data=["a good film"], sequence_length=32)
    assert os.listdir(tmp_path) == []


def test_failed_conversion_leaves_no_file(tiny_classifier, tmp_path, monkeypatch):
    import tensorflow as tf

    from keras_bertopt.export import to_tflite

    class Broken:
        def convert(self):
            raise RuntimeError("converter crashed")

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model",
                        classmethod(lambda cls, folder, **kwargs: Broken()))
    with pytest.raises(RuntimeError, match="converter crashed"):
        to_tflite(tiny_classifier, tmp_path / "model.tflite")
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_failure_after_writing_keeps_the_old_file(tiny_classifier, tmp_path, monkeypatch):
    from keras_bertopt.export import convert, to_tflite

    path = tmp_path / "model.tflite"
    path.write_bytes(b"previous export")

    def cannot_load(*args, **kwargs):
        raise RuntimeError("LiteRT cannot load the file")

    monkeypatch.setattr(convert, "make_interpreter", cannot_load)
    with pytest.raises(RuntimeError, match="cannot load"):
        to_tflite(tiny_classifier, path)
    assert os.listdir(tmp_path) == ["model.tflite"]
    assert path.read_bytes() == b"previous export"


def test_classifier_rejects_bad_files(trained, float_file, fixed_float_report, tmp_path):
    import tensorflow as tf

    from keras_bertopt.export import TFLiteClassifier, measure_latency
    from keras_bertopt.models import TinyConfig, build_classifier

    model, _, _ = trained
    with pytest.raises(FileNotFoundError, match="missing.tflite"):
        TFLiteClassifier(tmp_path / "missing.tflite", model.preprocessor)
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"PK\x03\x04 this is a zip file, not a flatbuffer")
    with pytest.raises(ValueError, match=r"junk\.tflite.*not a TFLite model"):
        TFLiteClassifier(junk, model.preprocessor)
    with pytest.raises(ValueError, match="not a TFLite model"):
        measure_latency(junk)

    def double(x):
        return {"y": x * 2.0}

    module = tf.Module()
    module.f = tf.function(double, input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
    concrete = module.f.get_concrete_function()
    other_path = tmp_path / "other.tflite"
    other_path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
                           .convert())
    with pytest.raises(ValueError, match=r"other\.tflite.*has inputs \['x'\]"):
        TFLiteClassifier(other_path, model.preprocessor)
    unsigned = tmp_path / "unsigned.tflite"
    unsigned.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([concrete]).convert())
    with pytest.raises(ValueError, match=r"unsigned\.tflite.*has no signature"):
        TFLiteClassifier(unsigned, model.preprocessor)
    long = build_classifier(TinyConfig(), 2, sequence_length=64).preprocessor
    with pytest.raises(ValueError, match=r"model\.tflite.*takes sequences of length 32 .*packs "
                       "to 64"):
        TFLiteClassifier(fixed_float_report.path, long)
    with pytest.raises(ValueError, match="`preprocessor`"):
        TFLiteClassifier(float_file[0], None)


def test_representative_data_forms_agree(tiny_classifier):
    import tensorflow as tf

    from keras_bertopt.export import collect_inputs, preprocess_texts

    pre = tiny_classifier.preprocessor
    texts = ["a good film", "the plot was dull", "not bad", "it was great fun", "awful"]
    labels = [1, 0, 1, 1, 0]
    reference = collect_inputs(texts, pre, SEQ, limit=100)
    assert reference["token_ids"].shape == (5, SEQ)
    assert all(v.dtype == np.int32 for v in reference.values())
    forms = [
        (texts, labels),
        tf.data.Dataset.from_tensor_slices((texts, labels)).batch(2),
        tf.data.Dataset.from_tensor_slices(texts).batch(3),
        dict(reference),
        [{k: v[i] for k, v in reference.items()} for i in range(5)],
    ]
    for form in forms:
        got = collect_inputs(form, pre, SEQ, limit=100)
        for key in reference:
            np.testing.assert_array_equal(got[key], reference[key])
    assert len(collect_inputs(forms[1], pre, SEQ, limit=3)["token_ids"]) == 3
    shorter = preprocess_texts(pre, texts, sequence_length=16)
    assert shorter["token_ids"].shape == (5, 16) and pre.sequence_length == SEQ
    np.testing.assert_array_equal(shorter["token_ids"][:, :4], reference["token_ids"][:, :4])
    # Narrower ids (a per-batch padding preprocessor's) are padded; wider ones refused.
    padded = collect_inputs(shorter, pre, SEQ, limit=10)
    for key in reference:
        np.testing.assert_array_equal(padded[key], reference[key])
    with pytest.raises(ValueError, match=r"must have shape \[batch, <= 32\]"):
        collect_inputs(preprocess_texts(pre, texts, sequence_length=64), pre, SEQ, limit=10)
    with pytest.raises(ValueError, match="yielded no examples"):
        collect_inputs(tf.data.Dataset.from_tensor_slices(texts).take(0).batch(2), pre, SEQ, 10)
    with pytest.raises(ValueError, match="must be raw strings, a tf.data.Dataset"):
        collect_inputs(12, pre, SEQ, 10)


@pytest.mark.slow
def test_export_example_runs():
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
    try:
        import export_tflite
    finally:
        sys.path.pop(0)
    reports = export_tflite.main(["--steps", "8", "--modes", "none", "int8"])
    assert reports["none"].label_agreement == 1.0
    assert reports["int8"].ops["FULLY_CONNECTED"] == {"int8": 14}


@pytest.mark.slow
def test_sparse_weights_write_block_pruned_kernels_in_litert_sparse_format(trained, tmp_path):
    from keras_bertopt.distillation import shrink
    from keras_bertopt.export import TFLiteClassifier, to_tflite
    from keras_bertopt.export.flatbuffer import sparse_tensor_count
    from keras_bertopt.pruning import ConstantSparsity, MagnitudePruning, strip_pruning

    model, texts, _ = trained
    pruned = shrink(model, num_layers=model.backbone.num_layers)  # a copy with the weights
    pruning = MagnitudePruning(ConstantSparsity(0.9), include=r"transformer_layer_\d+/.*kernel$",
                               pattern="block", block_shape=(16, 1))
    pruning.set_model(pruned)
    pruning.update_masks(0.9)
    strip_pruning(pruned)
    files = {}
    for sparse in (False, True):
        files[sparse] = tmp_path / f"dynamic_sparse_{sparse}.tflite"
        to_tflite(pruned, files[sparse], "dynamic", sample_data=texts, num_samples=16,
                  latency_runs=0, length_buckets=None, sparse_weights=sparse)
    assert sparse_tensor_count(files[False]) == 0
    assert sparse_tensor_count(files[True]) >= 6  # the 1x16-block kernels, written sparse
    assert os.path.getsize(files[True]) < 0.9 * os.path.getsize(files[False])
    logits = {k: TFLiteClassifier(str(p), model.preprocessor).predict(texts)["logits"]
              for k, p in files.items()}
    np.testing.assert_allclose(logits[True], logits[False], atol=0.05)
    with pytest.raises(ValueError, match="`sparse_weights` must be True or False"):
        to_tflite(pruned, tmp_path / "x.tflite", sparse_weights="yes")


def test_a_preprocessor_of_another_model_is_named_not_a_litert_crash(trained, float_file):
    """A tokenizer with more tokens than the file's embedding table would make LiteRT fail
    with 'gather index out of bounds' (or read other rows)."""
    from keras_bertopt.demo import demo_vocabulary
    from keras_bertopt.export import TFLiteClassifier
    from keras_bertopt.models import TinyConfig, build_classifier

    model, texts, _ = trained
    vocabulary = demo_vocabulary() + [f"word{i}" for i in range(200)]
    other = build_classifier(TinyConfig(vocabulary=vocabulary), 2, SEQ).preprocessor
    assert other("word199")["token_ids"].numpy().max() >= len(demo_vocabulary())
    with pytest.raises(ValueError, match=rf"embeds at most {len(demo_vocabulary())} tokens, "
                                         rf"but the preprocessor's vocabulary has "
                                         rf"{len(vocabulary)}: the preprocessor belongs to "
                                         "another model"):
        TFLiteClassifier(float_file[0], other)
    runner = TFLiteClassifier(float_file[0], model.preprocessor)
    assert len(runner.predict(texts[:4])["labels"]) == 4
