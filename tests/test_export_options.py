"""Export options through the public API, each checked against an independent result:
sentence pairs (`to_tflite`, `TFLiteClassifier`, `evaluate`), per-tensor int8 weights, and
float32 sparse weights (1x4 blocks)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_bertopt.data import demo_dataset, demo_examples
from keras_bertopt.export import TFLiteClassifier, evaluate, to_tflite

FIRSTS = ["a good film", "awful", "great fun indeed", "a dull mess", "wonderful", "bad plot"]
SECONDS = ["really good", "a mess of a plot", "yes", "boring film", "loved it", "so bad"]
LABELS = [1, 0, 1, 0, 1, 0]


def _keras_pair_logits(model, firsts, seconds):
    """The Keras model on [CLS] a [SEP] b [SEP], without any export code."""
    x = (tf.constant(firsts), tf.constant(seconds))
    return np.asarray(model(model.preprocessor(x=x)))  # x=: a tuple is segments, not (x, y)


def test_sentence_pairs_through_to_tflite_classifier_and_evaluate(trained_tiny, tmp_path):
    model = trained_tiny()
    path = str(tmp_path / "pairs.tflite")
    # metadata=False: the file outputs logits (a metadata file outputs probabilities).
    report = to_tflite(model, path, sample_data=(FIRSTS, SECONDS), num_samples=6,
                       latency_runs=0, metadata=False)
    assert report.label_agreement == 1.0
    expected = _keras_pair_logits(model, FIRSTS, SECONDS)
    runner = TFLiteClassifier(path, model.preprocessor)
    np.testing.assert_allclose(runner.predict((FIRSTS, SECONDS))["logits"], expected,
                               atol=1e-4)
    # The pair matters: the swapped pair is another input (other segment ids and order).
    swapped = runner.predict((SECONDS, FIRSTS))["logits"]
    assert np.abs(swapped - expected).max() > 1e-3
    # Accuracy by hand from the Keras logits, for each form evaluate takes pairs in.
    accuracy = float(np.mean(np.argmax(expected, axis=1) == np.asarray(LABELS)))
    batches = tf.data.Dataset.from_tensor_slices(((FIRSTS, SECONDS), LABELS)).batch(4)
    for data, labels in ((((FIRSTS, SECONDS), LABELS), None), (batches, None),
                         ((FIRSTS, SECONDS), LABELS)):
        result = evaluate(path, model.preprocessor, data, labels)
        assert result["num_examples"] == 6
        assert result["accuracy"] == pytest.approx(accuracy)
        np.testing.assert_array_equal(result["labels"], np.argmax(expected, axis=1))


def _int8_matmul_weight_scales(path):
    """{name: (shape, scales)} of the file's int8 matmul weights (the constants
    `inspect_tflite` finds feeding FULLY_CONNECTED), scales read by TFLite's interpreter."""
    from keras_bertopt.export import inspect_tflite

    names = {w["name"] for w in inspect_tflite(path)["weights"] if w["dtype"] == "INT8"}
    return {d["name"]: (tuple(d["shape"]), d["quantization_parameters"]["scales"])
            for d in tf.lite.Interpreter(model_path=str(path)).get_tensor_details()
            if d["name"] in names}


@pytest.mark.slow
def test_per_tensor_weights_export_one_scale_per_kernel(trained_tiny, tmp_path):
    from keras_bertopt.quantization import QuantizationConfig, quantize_aware, quantized_layers

    texts, _ = demo_examples("validation", 32)
    qat = quantize_aware(trained_tiny(), QuantizationConfig(weight_granularity="per_tensor"))
    qat.compile(optimizer=keras.optimizers.AdamW(1e-4),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(demo_dataset("train", 32).take(2), epochs=1, verbose=0)  # sets ranges
    path = tmp_path / "per_tensor.tflite"
    report = to_tflite(qat, path, "int8", sample_data=texts, num_samples=32,
                       latency_runs=0, length_buckets=None)
    assert report.ops["FULLY_CONNECTED"] == {"int8": len(quantized_layers(qat))}
    assert report.label_agreement >= 0.9
    scales = _int8_matmul_weight_scales(path)
    assert len(scales) == len(quantized_layers(qat))
    # One scale per kernel (per channel, the default, gives one per output unit: TFLite's
    # [out, in] weight rows, 32 or more here).
    assert all(shape[0] > 1 and len(s) == 1 for shape, s in scales.values())


@pytest.mark.slow
def test_sparse_weights_float32_writes_1x4_blocks_losslessly(trained_tiny, tmp_path):
    from keras_bertopt.export.flatbuffer import sparse_tensor_count
    from keras_bertopt.pruning import ConstantSparsity, MagnitudePruning, strip_pruning

    model = trained_tiny()
    pruning = MagnitudePruning(ConstantSparsity(0.9), include=r"transformer_layer_\d+/.*kernel$",
                               pattern="block", block_shape=(4, 1))
    pruning.set_model(model)
    pruning.update_masks(0.9)
    strip_pruning(model)
    texts, _ = demo_examples("validation", 16)
    files = {}
    for sparse in (False, True):
        files[sparse] = tmp_path / f"float_sparse_{sparse}.tflite"
        to_tflite(model, files[sparse], sample_data=texts, num_samples=16, latency_runs=0,
                  length_buckets=None, sparse_weights=sparse, metadata=False)
    assert sparse_tensor_count(files[False]) == 0
    # 2 layers x (q, k, v, attention output, 2 feed-forward) kernels, 90% zero in 1x4 blocks.
    assert sparse_tensor_count(files[True]) >= 12
    assert os.path.getsize(files[True]) < os.path.getsize(files[False])
    # The sparse format is lossless: both files give the pruned Keras model's logits.
    expected = np.asarray(model.predict(np.asarray(texts), verbose=0))
    for path in files.values():
        np.testing.assert_allclose(
            TFLiteClassifier(str(path), model.preprocessor).predict(texts)["logits"], expected,
            atol=1e-4)
