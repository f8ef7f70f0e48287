"""QAT for a dynamic-range file: `QuantizationConfig(activations="dynamic")` and
`to_tflite(qat, quantization="dynamic")` (learned int8 weights, activations quantized at run time).
"""

import keras
import numpy as np
import pytest
from _models import compile_classifier

from keras_bertopt.quantization import QuantizationConfig, quantize_aware


def _int8_grid_by_reference(kernel, equation=None):
    """`kernel` rounded to 255 symmetric levels per output channel by TensorFlow's reference
    op `fake_quant_with_min_max_vars_per_channel` (min -max|w|, max +max|w|, narrow range:
    scale max|w| / 127, zero point 0). Output channels: a Dense kernel's last axis; for an
    EinsumDense, the kernel letters that appear in the output (read here from `equation`)."""
    import tensorflow as tf

    k = np.asarray(kernel, np.float32)
    if equation is None:
        out_axes = [k.ndim - 1]
    else:
        inputs, output = equation.replace(" ", "").split("->")
        out_axes = [i for i, letter in enumerate(inputs.split(",")[1]) if letter in output]
    in_axes = [i for i in range(k.ndim) if i not in out_axes]
    moved = np.transpose(k, in_axes + out_axes)
    flat = moved.reshape(-1, int(np.prod([k.shape[i] for i in out_axes])))
    amax = np.abs(flat).max(axis=0)
    rounded = tf.quantization.fake_quant_with_min_max_vars_per_channel(
        flat, -amax, amax, num_bits=8, narrow_range=True).numpy()
    return np.transpose(rounded.reshape(moved.shape), np.argsort(in_axes + out_axes))


def _round_kernels_in_place(float_model, qat):
    """Give `float_model` (QAT's source) every Dense/EinsumDense kernel on its int8 grid."""
    from keras_bertopt import _compat

    rounded = 0
    for layer in _compat.flatten_layers(float_model):
        if isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense)):
            equation = getattr(layer, "equation", None)
            layer.kernel.assign(_int8_grid_by_reference(layer.kernel, equation))
            rounded += 1
    assert rounded == len(qat.quantized_paths)  # the same layers QAT quantized
    return float_model


def test_config_activations_values():
    with pytest.raises(ValueError, match="`activations` must be one of"):
        QuantizationConfig(activations="runtime")
    with pytest.raises(ValueError, match="fully_integer"):
        QuantizationConfig(activations="dynamic", fully_integer=True)
    with pytest.raises(ValueError, match="quantize_attention_probs"):
        QuantizationConfig(activations="dynamic", quantize_attention_probs=True)
    config = QuantizationConfig(activations="dynamic")
    assert QuantizationConfig(**config.get_config()).activations == "dynamic"


def test_dynamic_activations_train_on_the_weight_grid_only(tiny_classifier):
    config = QuantizationConfig(activations="dynamic", quantize_embeddings=False)
    qat = quantize_aware(tiny_classifier, config)
    inputs = qat.preprocessor(["a good film", "not a good film at all, sadly"])
    # Only kernels are fake-quantized: the model equals the float model whose kernels
    # were rounded to their int8 grid (static QAT would also round every activation).
    static = quantize_aware(tiny_classifier, QuantizationConfig(quantize_embeddings=False))
    expected = keras.ops.convert_to_numpy(_round_kernels_in_place(tiny_classifier, qat)(inputs))
    got = keras.ops.convert_to_numpy(qat(inputs))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
    static(inputs, training=True)  # sets its ranges from this batch
    assert np.abs(keras.ops.convert_to_numpy(static(inputs)) - expected).max() > 1e-3 * np.abs(
        expected).max()
    # Training counts steps but learns no ranges.
    before = qat.activation_ranges()
    qat(inputs, training=True)
    assert qat.qat_step == 1
    assert qat.activation_ranges() == before


def _hybrid_matmuls(signatures):
    """FULLY_CONNECTEDs on float inputs and int8 weights. The converter keeps weights of
    fewer than 1024 values float: the 2-class head (hidden x 2) is the one float matmul."""
    return sum(n for s, n in signatures.items() if s.startswith("FULLY_CONNECTED(FLOAT32,INT8"))


@pytest.fixture(scope="module")
def trained_dynamic(trained_tiny):
    from keras_bertopt.data import demo_dataset

    model = trained_tiny()  # one float epoch (see conftest)
    qat = quantize_aware(model, QuantizationConfig(activations="dynamic"))
    compile_classifier(qat)
    qat.fit(demo_dataset("train", batch_size=32, size=256), epochs=1, verbose=0)
    return model, qat


def test_dynamic_qat_file_is_hybrid_and_agrees_with_keras(trained_dynamic, tmp_path):
    from keras_bertopt.data import demo_examples
    from keras_bertopt.export import TFLiteClassifier, inspect_tflite, to_tflite

    _, qat = trained_dynamic
    texts, _ = demo_examples("validation", 64)
    path = tmp_path / "qat_dynamic.tflite"
    report = to_tflite(qat, path, quantization="dynamic", sample_data=texts, num_samples=64,
                       latency_runs=0, length_buckets=None)
    signatures = inspect_tflite(path)["op_signatures"]
    # Every quantized matmul is a dynamic-range (hybrid) FULLY_CONNECTED: float activations,
    # int8 weights; no learned range reached the file, so no QUANTIZE op.
    assert _hybrid_matmuls(signatures) == len(qat.quantized_paths) - 1
    assert not any(s.startswith("FULLY_CONNECTED(INT8") for s in signatures)
    assert not any(s.startswith("QUANTIZE") for s in signatures)
    assert report.label_agreement == 1.0
    assert report.max_abs_logit_diff < 0.05
    # The file's int8 kernels are QAT's grid: its logits equal the Keras QAT model's up to
    # the run-time activation rounding.
    # (The default file carries MediaPipe metadata and outputs probabilities.)
    runner = TFLiteClassifier(str(path), qat.preprocessor)
    keras_logits = keras.ops.convert_to_numpy(qat.predict(texts[:16], verbose=0))
    shifted = np.exp(keras_logits - keras_logits.max(axis=1, keepdims=True))
    keras_probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(runner.predict(texts[:16])["probabilities"], keras_probabilities,
                               atol=0.02)


def test_static_qat_model_exports_dynamic_without_its_ranges(trained_dynamic, tmp_path):
    from keras_bertopt.export import inspect_tflite, to_tflite

    model, _ = trained_dynamic
    static = quantize_aware(model)
    static(static.preprocessor(["a good film", "a bad film"]), training=True)
    path = tmp_path / "static_as_dynamic.tflite"
    to_tflite(static, path, quantization="dynamic", verify=False, length_buckets=None)
    signatures = inspect_tflite(path)["op_signatures"]
    assert _hybrid_matmuls(signatures) == len(static.quantized_paths) - 1
    assert not any(s.startswith("QUANTIZE") for s in signatures)


def test_dynamic_qat_refuses_int8_before_converting(trained_dynamic, tmp_path):
    from keras_bertopt.export import to_tflite

    _, qat = trained_dynamic
    path = tmp_path / "never.tflite"
    with pytest.raises(ValueError, match="activations='dynamic'.*quantization='dynamic'"):
        to_tflite(qat, path, quantization="int8")
    assert not path.exists()


def test_dynamic_qat_round_trips_in_safe_mode(trained_dynamic, tmp_path):
    _, qat = trained_dynamic
    path = tmp_path / "qat.keras"
    qat.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.quantization_config.activations == "dynamic"
    assert not any(q.quantize_inputs for q in loaded.quantizers if not q.weights_only)
    inputs = qat.preprocessor(["a good film"])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(inputs)),
                               keras.ops.convert_to_numpy(qat(inputs)), atol=1e-6)
