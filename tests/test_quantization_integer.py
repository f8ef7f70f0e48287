"""Fully-integer QAT (`QuantizationConfig(fully_integer=True)`): every op int8 / int32."""

import keras
import numpy as np
import pytest
from _models import compile_classifier

from keras_bertopt.quantization import (
    ActivationRanges,
    QuantizationConfig,
    QuantizeAwareTextClassifier,
    quantize_aware,
)

#: LayerNorm decomposed into int8 builtins (MAXIMUM: the variance floor before RSQRT),
#: int8 attention, int8 sums.
INTEGER_OPS = ("MEAN(INT8,INT32)", "SUB(INT8,INT8)", "RSQRT(INT8)", "MUL(INT8,INT8)",
               "MAXIMUM(INT8,INT8)", "ADD(INT8,INT8)", "SOFTMAX(INT8)", "BATCH_MATMUL(INT8,INT8)",
               "SELECT_V2(BOOL,INT8,INT8)", "GELU(INT8)", "TANH(INT8)")




def test_fully_integer_patches_layer_norm_attention_and_sums(tiny_classifier):
    qat = quantize_aware(tiny_classifier, QuantizationConfig(fully_integer=True))
    ranges = {q.target: q for q in qat.quantizers if isinstance(q, ActivationRanges)}
    assert sorted(ranges) == sorted(
        ["embeddings_add", "embeddings_layer_norm"]
        + [f"transformer_layer_{i}/{name}" for i in range(2) for name in (
            "self_attention_layer", "self_attention_layer_norm", "feedforward_layer_norm")]
    )
    assert ranges["embeddings_add"].names == ("sum_1",)  # token + position, then + segment
    assert len(qat.quantized_embedding_paths) == 3  # embeddings are quantized too
    # Before any training the patched model computes what the float one does, up to the
    # int8 rounding of the initial [-6, 6] ranges.
    inputs = qat.preprocessor(["a good film", "not a good film at all"])
    float_out = keras.ops.convert_to_numpy(tiny_classifier(inputs))
    qat_out = keras.ops.convert_to_numpy(qat(inputs))
    assert np.abs(float_out - qat_out).max() < 0.2
    # A training call moves the ranges of the LayerNorm intermediates off their initial value.
    qat(inputs, training=True)
    norm = qat.activation_ranges()["transformer_layer_0/self_attention_layer_norm"]
    assert norm["squared_min"] == 0.0 and 0.0 < norm["squared_max"] != 6.0
    assert norm["inv_std_min"] == 0.0 and norm["inv_std_max"] > 0.0
    attention = qat.activation_ranges()["transformer_layer_0/self_attention_layer"]
    assert attention["scores_max"] != 6.0


@pytest.fixture(scope="module")
def trained_integer(trained_tiny):
    from keras_bertopt.data import demo_dataset

    model = trained_tiny()  # one float epoch (see conftest)
    qat = quantize_aware(model, QuantizationConfig(fully_integer=True))
    compile_classifier(qat)
    qat.fit(demo_dataset("train", batch_size=32, size=1024), epochs=1, verbose=0)
    return qat


@pytest.mark.slow
def test_fully_integer_file_has_only_integer_ops(trained_integer, tmp_path):
    from keras_bertopt.data import demo_examples
    from keras_bertopt.export import TFLiteClassifier, inspect_tflite, to_tflite

    qat = trained_integer
    texts, labels = demo_examples("validation", 200)
    path = tmp_path / "integer.tflite"
    report = to_tflite(qat, path, quantization="int8", sample_data=texts, num_samples=200,
                       latency_runs=0)
    signatures = inspect_tflite(path)["op_signatures"]
    assert signatures == report.op_signatures
    # Between the int32 inputs and the logits no op reads a float tensor: the only float
    # tensor is the logits, made by the one DEQUANTIZE at the end.
    assert [s for s in signatures if "FLOAT32" in s] == []
    assert signatures["DEQUANTIZE(INT8)"] == 1
    assert "QUANTIZE(FLOAT32)" not in signatures
    for op in INTEGER_OPS:
        assert signatures.get(op, 0) > 0, op
    assert signatures["FULLY_CONNECTED(INT8,INT8,INT32)"] == len(qat.quantized_paths)
    assert report.label_agreement >= 0.95
    predicted = TFLiteClassifier(str(path), qat.preprocessor).predict(texts)["labels"]
    assert np.mean(predicted == np.asarray(labels)) >= 0.8


@pytest.mark.slow
def test_fully_integer_ranges_survive_save_and_load(trained_integer, tmp_path):
    qat = trained_integer
    path = str(tmp_path / "integer.keras")
    qat.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, QuantizeAwareTextClassifier)
    assert loaded.quantization_config.fully_integer
    assert loaded.activation_ranges() == qat.activation_ranges()
    assert loaded.qat_step == qat.qat_step == 32
    texts = ["a good film", "not a good film", "bad and boring"]
    np.testing.assert_allclose(loaded.predict(texts, verbose=0), qat.predict(texts, verbose=0),
                               atol=1e-6)


@pytest.mark.slow
def test_fully_integer_state_survives_backup_and_restore(tmp_path):
    from keras_bertopt.data import demo_dataset
    from keras_bertopt.models import TinyConfig, build_classifier

    backup = str(tmp_path / "backup")
    data = demo_dataset("train", batch_size=32, size=64)
    config = QuantizationConfig(fully_integer=True)

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                self.ranges = self.model.activation_ranges()
                raise RuntimeError("interrupted")

    first = quantize_aware(build_classifier(TinyConfig(), 2, sequence_length=32), config)
    compile_classifier(first)
    stop = StopAfterFirstEpoch()
    with pytest.raises(RuntimeError, match="interrupted"):
        first.fit(data, epochs=2, verbose=0,
                  callbacks=[keras.callbacks.BackupAndRestore(backup), stop])

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.ranges = self.model.activation_ranges()

    second = quantize_aware(build_classifier(TinyConfig(seed=1), 2, sequence_length=32), config)
    compile_classifier(second)
    record = Record()
    second.fit(data, epochs=2, verbose=0,
               callbacks=[keras.callbacks.BackupAndRestore(backup), record])
    assert record.ranges == stop.ranges
    assert "transformer_layer_1/feedforward_layer_norm" in record.ranges
    assert record.ranges["transformer_layer_1/feedforward_layer_norm"]["variance_max"] != 6.0


def test_fully_integer_layer_norm_survives_outlier_channels():
    # MiniLM-like residual stream: one token has an outlier channel (~300), the others small
    # values. `squared`'s int8 step (~300^2 / 255) is then far above the other tokens'
    # squares, their variance rounds to 0, and RSQRT must not see it as 0 (inf, then NaN).
    from keras_bertopt.quantization.integer import LAYER_NORM_RANGES, attach_integer

    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 0.7, size=(2, 8, 64)).astype("float32")
    x[0, 0, 3] = 300.0
    layer = keras.layers.LayerNormalization(epsilon=1e-12)
    layer.build(x.shape)
    ranges = ActivationRanges("ln", LAYER_NORM_RANGES)
    ranges.build()
    attach_integer(layer, ranges)
    for training in (True, False):
        y = keras.ops.convert_to_numpy(layer(x, training=training))
        assert np.isfinite(y).all()
    values = ranges.values()
    assert all(np.isfinite(v) for v in values.values()), values
    # The floor is one step of the variance + epsilon grid, so 1/std stays below 1/sqrt(step).
    step = (values["variance_eps_max"] - values["variance_eps_min"]) / 255
    assert 0.0 < values["inv_std_max"] <= 1.01 / np.sqrt(step)
