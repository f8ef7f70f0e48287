"""Quantization-aware training: fake-quant math, the wrapper, saving, export to int8."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from _models import compile_classifier

from keras_bertopt.quantization import (
    QuantizationConfig,
    QuantizeAwareTextClassifier,
    einsum_reduce_axes,
    fake_quant_activation,
    fake_quant_weight,
    is_quantize_aware,
    quantize_aware,
    quantized_layers,
    quantizer_of,
)
from keras_bertopt.quantization.config import resolve_config
from keras_bertopt.quantization.quantizers import batch_range, ema_update, weight_scale

#: Kernel paths of the tiny classifier's 14 Dense / EinsumDense layers.
TINY_KERNELS = sorted(
    [
        f"transformer_layer_{i}/{name}/kernel"
        for i in range(2)
        for name in (
            "self_attention_layer/query",
            "self_attention_layer/key",
            "self_attention_layer/value",
            "self_attention_layer/attention_output",
            "feedforward_intermediate_dense",
            "feedforward_output_dense",
        )
    ]
    + ["pooled_dense/kernel", "logits/kernel"]
)




# ----------------------------------------------------------------------------- math
def test_einsum_reduce_axes():
    assert einsum_reduce_axes("abc,cde->abde") == (0,)
    assert einsum_reduce_axes("abcd,cde->abe") == (0, 1)
    assert einsum_reduce_axes("ab,bc->ac") == (0,)
    for bad in ("abc", "ab,bc", "ab,cd->abcd", None):
        with pytest.raises(ValueError, match="equation"):
            einsum_reduce_axes(bad)


def test_weight_fake_quant_per_channel_grid_and_ste():
    rng = np.random.default_rng(0)
    kernel = (rng.normal(size=(16, 6)) * rng.uniform(0.01, 3.0, size=(1, 6))).astype("float32")
    kernel[:, 2] = 0.0  # a pruned channel must not divide by zero
    q = keras.ops.convert_to_numpy(fake_quant_weight(kernel, (0,)))
    scale = np.maximum(np.abs(kernel).max(axis=0, keepdims=True), 1e-12) / 127.0
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(weight_scale(kernel, (0,))), scale, rtol=1e-6
    )
    levels = q / scale
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)  # on the per-channel grid
    assert np.abs(levels).max() <= 127.0 + 1e-3
    assert np.all(np.abs(q - kernel) <= scale / 2 + 1e-6)
    assert np.all(q[:, 2] == 0.0)
    # Per-channel keeps small channels: per-tensor rounds the smallest one much more coarsely.
    small = int(np.argmin(np.where(np.abs(kernel).max(0) > 0, np.abs(kernel).max(0), np.inf)))
    per_tensor = keras.ops.convert_to_numpy(fake_quant_weight(kernel, None))
    assert np.abs(per_tensor - kernel)[:, small].max() > np.abs(q - kernel)[:, small].max()
    # Straight-through: d(sum(fq(w)))/dw == 1 everywhere.
    variable = tf.Variable(kernel)
    for axes in ((0,), None):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(fake_quant_weight(variable, axes) * 3.0)
        np.testing.assert_allclose(tape.gradient(loss, variable).numpy(), 3.0)


def test_weight_fake_quant_einsum_kernel_scales_per_output_channel():
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(4, 3, 5)).astype("float32")  # (heads, head_dim, hidden)
    q = keras.ops.convert_to_numpy(fake_quant_weight(kernel, (0, 1)))
    scale = np.abs(kernel).max(axis=(0, 1), keepdims=True) / 127.0
    np.testing.assert_allclose(q / scale, np.round(q / scale), atol=1e-3)
    assert np.all(np.abs(q - kernel) <= scale / 2 + 1e-6)


def test_activation_fake_quant_range_and_gradient():
    x = tf.constant(np.linspace(-2.0, 5.0, 71, dtype="float32"))
    y = fake_quant_activation(x, -1.0, 3.0).numpy()
    assert y.min() >= -1.0 - 1e-2 and y.max() <= 3.0 + 1e-2
    assert len(np.unique(np.round(y, 5))) <= 256
    inside = (x.numpy() > -0.99) & (x.numpy() < 2.99)
    assert np.abs(y - x.numpy())[inside].max() <= 4.0 / 255 / 2 + 1e-4
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tf.reduce_sum(fake_quant_activation(x, -1.0, 3.0))
    grad = tape.gradient(out, x).numpy()
    assert np.all(grad[inside] == 1.0) and np.all(grad[x.numpy() > 3.1] == 0.0)


def test_ema_and_batch_range():
    lo, hi = batch_range(tf.constant([0.5, 2.0]))
    assert float(lo) == 0.0 and float(hi) == 2.0  # 0 is always representable
    assert float(ema_update(5.0, 1.0, 0.9, 0)) == 1.0  # first observation replaces
    assert float(ema_update(5.0, 1.0, 0.9, 3)) == pytest.approx(4.6)


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"weight_granularity": "per_row"}, "weight_granularity"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"ema_decay": "fast"}, "ema_decay"),
        ({"num_bits": 4}, "num_bits"),
        ({"quantize_outputs": "yes"}, "quantize_outputs"),
        ({"quantize_embeddings": 1}, "quantize_embeddings"),
        ({"quantize_attention_probs": None}, "quantize_attention_probs"),
        ({"include": "(unclosed"}, "include"),
        ({"exclude": 3}, "exclude"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QuantizationConfig(**kwargs)


def test_config_round_trip_and_resolve():
    config = QuantizationConfig(exclude=[r"^logits/"], weight_granularity="per_tensor")
    assert QuantizationConfig.from_config(config.get_config()) == config
    assert resolve_config(None) == QuantizationConfig()
    assert resolve_config({"ema_decay": 0.9}).ema_decay == 0.9
    with pytest.raises(ValueError, match="config"):
        resolve_config({"bits": 8})
    with pytest.raises(ValueError, match="config"):
        resolve_config("int8")


# ----------------------------------------------------------------------------- wrapper
def test_quantize_aware_wraps_copy_with_same_weights(tiny_classifier):
    inputs = tiny_classifier.preprocessor(["a good film", "not a good film at all"])
    before = keras.ops.convert_to_numpy(tiny_classifier(inputs))
    qat = quantize_aware(tiny_classifier)
    assert isinstance(qat, QuantizeAwareTextClassifier)
    assert is_quantize_aware(qat) and not is_quantize_aware(tiny_classifier)
    assert qat.preprocessor is tiny_classifier.preprocessor
    assert sorted(qat.quantized_paths) == TINY_KERNELS
    # Same values under the same paths; the original model is untouched (a copy is wrapped).
    original = {v.path: keras.ops.convert_to_numpy(v) for v in tiny_classifier.weights}
    wrapped = {v.path: keras.ops.convert_to_numpy(v) for v in qat.task.weights}
    assert original.keys() == wrapped.keys()
    for path, value in original.items():
        np.testing.assert_array_equal(value, wrapped[path])
    assert not any(quantizer_of(layer) for layer in tiny_classifier._flatten_layers())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(tiny_classifier(inputs)), before)
    # Per-channel scales along the output channels of every layer kind.
    axes = {quantizer_of(layer).target: quantizer_of(layer).reduce_axes
            for layer in quantized_layers(qat)}
    assert axes["transformer_layer_0/self_attention_layer/query/kernel"] == (0,)
    assert axes["transformer_layer_0/self_attention_layer/attention_output/kernel"] == (0, 1)
    assert axes["transformer_layer_0/feedforward_intermediate_dense/kernel"] == (0,)
    # Raw strings still work (the preprocessor is kept).
    out = qat.predict(["a good film", "not a good film at all"], verbose=0)
    assert out.shape == (2, 2) and np.all(np.isfinite(out))


def test_quantize_aware_exclude_and_per_tensor(tiny_classifier):
    qat = quantize_aware(
        tiny_classifier,
        {"exclude": [r"^logits/", r"pooled_dense"], "weight_granularity": "per_tensor"},
    )
    assert sorted(qat.quantized_paths) == [
        p for p in TINY_KERNELS if not p.startswith(("logits", "pooled"))
    ]
    assert all(q.reduce_axes is None for q in qat.quantizers)
    only_ffn = quantize_aware(tiny_classifier, QuantizationConfig(include=r"feedforward_"))
    assert len(only_ffn.quantized_paths) == 4
    # `include` picks matmul kernels only; the embedding tables are int8 by default.
    assert sorted(only_ffn.quantized_embedding_paths) == [
        "position_embedding/embeddings",
        "segment_embedding/embeddings",
        "token_embedding/embeddings",
    ]
    float_tables = quantize_aware(tiny_classifier, QuantizationConfig(quantize_embeddings=False))
    assert float_tables.quantized_embedding_paths == []


def test_quantize_embeddings_option(tiny_classifier):
    qat = quantize_aware(
        tiny_classifier,
        QuantizationConfig(quantize_embeddings=True, exclude=r"segment_embedding"),
    )
    assert sorted(qat.quantized_embedding_paths) == [
        "position_embedding/embeddings",
        "token_embedding/embeddings",
    ]
    assert sorted(qat.quantized_paths) == TINY_KERNELS
    assert len(quantized_layers(qat)) == len(TINY_KERNELS)  # matmul layers only
    token = qat.backbone.get_layer("token_embedding")
    assert quantizer_of(token).weights_only
    ids = np.array([[2, 5, 9, 3]], dtype="int32")
    table = keras.ops.convert_to_numpy(token.embeddings)
    out = keras.ops.convert_to_numpy(token(ids))
    scale = np.abs(table).max() / 127.0  # one symmetric scale for the whole table
    np.testing.assert_allclose(out / scale, np.round(out / scale), atol=1e-3)
    assert np.abs(out - table[ids]).max() <= scale / 2 + 1e-6


def test_quantize_aware_errors(tiny_classifier):
    with pytest.raises(ValueError, match="TextClassifier"):
        quantize_aware(tiny_classifier.backbone)
    with pytest.raises(ValueError, match="include"):
        quantize_aware(tiny_classifier, QuantizationConfig(include=r"no_such_layer"))
    with pytest.raises(ValueError, match="config"):
        quantize_aware(tiny_classifier, config=8)
    qat = quantize_aware(tiny_classifier)
    with pytest.raises(ValueError, match="already quantize-aware"):
        quantize_aware(qat)
    assert not is_quantize_aware("model")


def test_ranges_update_in_training_and_freeze_in_inference(tiny_classifier):
    qat = quantize_aware(tiny_classifier)
    inputs = qat.preprocessor(["a good film", "a bad bad film", "not bad"])
    initial = qat.activation_ranges()
    qat(inputs, training=False)
    assert qat.activation_ranges() == initial and qat.qat_step == 0
    qat(inputs, training=True)
    first = qat.activation_ranges()
    assert qat.qat_step == 1 and first != initial
    for ranges in first.values():  # first batch initialises the ranges, containing 0
        assert ranges["input_min"] <= 0.0 <= ranges["input_max"]
        assert ranges["input_max"] - ranges["input_min"] < 12.0
    qat(inputs, training=False)
    assert qat.activation_ranges() == first and qat.qat_step == 1


def test_quantize_attention_probs_option(tiny_classifier):
    qat = quantize_aware(tiny_classifier, QuantizationConfig(quantize_attention_probs=True))
    softmaxes = [
        layer for layer in qat.task._flatten_layers() if isinstance(layer, keras.layers.Softmax)
    ]
    assert len(softmaxes) == 2
    scores = tf.random.normal((1, 2, 8, 8), seed=0)
    probabilities = softmaxes[0](scores).numpy()
    # TFLite's int8 softmax grid: multiples of 1/256 in [0, 255/256].
    np.testing.assert_allclose(probabilities * 256, np.round(probabilities * 256), atol=1e-3)
    assert probabilities.max() <= 255 / 256 + 1e-6
    # Off by default: the plain QAT model's softmax is Keras's exact softmax, off the grid.
    plain = quantize_aware(tiny_classifier)
    plain_softmax = [
        layer for layer in plain.task._flatten_layers() if isinstance(layer, keras.layers.Softmax)
    ][0]
    exact = plain_softmax(scores).numpy()
    np.testing.assert_allclose(exact, tf.nn.softmax(scores, axis=-1).numpy(), atol=1e-6)
    assert np.abs(exact * 256 - np.round(exact * 256)).max() > 0.01


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained_qat(trained_tiny):
    """A tiny classifier trained one float epoch (see conftest), then QAT-fine-tuned two
    epochs of 512 examples (the loss of the second epoch is compared with the first's)."""
    from keras_bertopt.data import demo_dataset

    model = trained_tiny()
    qat = quantize_aware(model, QuantizationConfig(quantize_embeddings=True))
    compile_classifier(qat, 1e-3)
    history = qat.fit(demo_dataset("train", batch_size=32, size=512), epochs=2, verbose=0)
    return qat, history.history


@pytest.mark.slow
def test_qat_fit_lowers_loss(trained_qat):
    from keras_bertopt.data import demo_dataset

    qat, history = trained_qat
    assert history["loss"][-1] < history["loss"][0]
    assert qat.qat_step == 32  # 2 epochs x 512 / 32
    _, accuracy = qat.evaluate(demo_dataset("validation", batch_size=64), verbose=0)
    assert accuracy >= 0.8


@pytest.mark.slow
def test_qat_keras_round_trip(trained_qat, tmp_path):
    qat, _ = trained_qat
    texts = ["a good film", "not a good film", "bad and boring"]
    path = str(tmp_path / "qat.keras")
    qat.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, QuantizeAwareTextClassifier) and is_quantize_aware(loaded)
    assert loaded.quantization_config == qat.quantization_config
    assert loaded.qat_step == qat.qat_step
    assert loaded.activation_ranges() == qat.activation_ranges()
    np.testing.assert_allclose(
        loaded.predict(texts, verbose=0), qat.predict(texts, verbose=0), atol=1e-6
    )


@pytest.mark.slow
def test_qat_int8_export_has_int8_matmuls_and_agrees(trained_qat, tmp_path):
    from keras_bertopt.data import demo_examples
    from keras_bertopt.export import TFLiteClassifier, to_tflite

    qat, _ = trained_qat
    texts, labels = demo_examples("validation", 200)
    path = tmp_path / "qat_int8.tflite"
    report = to_tflite(qat, path, quantization="int8", sample_data=texts, num_samples=200,
                       latency_runs=0)
    assert report.quantize_aware and report.fake_quant_ops > 0
    # Every quantized Dense / EinsumDense is an int8 FULLY_CONNECTED; none is left float.
    fully_connected = report.ops["FULLY_CONNECTED"]
    assert fully_connected.get("int8", 0) >= len(qat.quantized_paths)
    assert fully_connected.get("float", 0) == 0 and fully_connected.get("hybrid", 0) == 0
    assert report.ops["GATHER"].get("int8", 0) >= 2  # token and segment tables are int8
    # The attention matmuls (two activations) run in float: LiteRT's int8 BATCH_MATMUL
    # has no XNNPack kernel (keep_float_ops="auto" rewrites the converted file).
    assert report.ops["BATCH_MATMUL"] == {"float": 4}
    assert report.ops["GELU"] == {"float": 2}  # int8 GELU has no XNNPack kernel either
    assert report.label_agreement >= 0.98
    runner = TFLiteClassifier(str(path), qat.preprocessor)
    tflite_labels = runner.predict(texts)["labels"]
    keras_labels = qat.predict(texts, verbose=0).argmax(-1)
    assert np.mean(tflite_labels == keras_labels) >= 0.98
    assert np.mean(tflite_labels == np.asarray(labels)) >= 0.8


@pytest.mark.slow
def test_qat_float_attention_matmuls_match_the_converters_int8_ones(trained_qat, tmp_path):
    """keep_float_ops=() keeps the converter's int8 BATCH_MATMULs; both files agree."""
    from keras_bertopt.data import demo_examples
    from keras_bertopt.export import TFLiteClassifier, to_tflite

    qat, _ = trained_qat
    texts, _ = demo_examples("validation", 64)
    paths = {}
    for name, kept in (("float_bmm", "auto"), ("int8_bmm", ())):
        paths[name] = tmp_path / f"{name}.tflite"
        report = to_tflite(qat, paths[name], quantization="int8", sample_data=texts,
                           num_samples=64, latency_runs=0, keep_float_ops=kept)
        # The converter makes probabilities x values int8 (2 of the 4 matmuls).
        assert report.ops["BATCH_MATMUL"] == ({"float": 4} if kept else {"float": 2, "int8": 2})
        assert report.ops["GELU"] == ({"float": 2} if kept else {"int8": 2})
        assert report.ops["FULLY_CONNECTED"] == {"int8": len(qat.quantized_paths)}
    logits = {name: TFLiteClassifier(str(path), qat.preprocessor).predict(texts)["logits"]
              for name, path in paths.items()}
    # The int8 matmul rounds its inputs and output; the float one reads the same int8 values.
    np.testing.assert_allclose(logits["float_bmm"], logits["int8_bmm"], atol=0.1)
    assert np.mean(logits["float_bmm"].argmax(-1) == logits["int8_bmm"].argmax(-1)) >= 0.95


@pytest.mark.slow
def test_qat_state_survives_backup_and_restore(tmp_path):
    from keras_bertopt.data import demo_dataset
    from keras_bertopt.models import TinyConfig, build_classifier

    backup = str(tmp_path / "backup")
    data = demo_dataset("train", batch_size=32, size=64)

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                self.state = (self.model.qat_step, self.model.activation_ranges())
                raise RuntimeError("interrupted")

    first = quantize_aware(build_classifier(TinyConfig(), 2, sequence_length=32))
    compile_classifier(first, 1e-3)
    stop = StopAfterFirstEpoch()
    with pytest.raises(RuntimeError, match="interrupted"):
        first.fit(data, epochs=2, verbose=0,
                  callbacks=[keras.callbacks.BackupAndRestore(backup), stop])
    step, ranges = stop.state
    assert step == 2

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.state = (self.model.qat_step, self.model.activation_ranges())

    second = quantize_aware(build_classifier(TinyConfig(seed=1), 2, sequence_length=32))
    compile_classifier(second, 1e-3)
    record = Record()
    history = second.fit(data, epochs=2, verbose=0,
                         callbacks=[keras.callbacks.BackupAndRestore(backup), record])
    assert record.state[0] == step
    assert record.state[1] == ranges
    assert len(history.history["loss"]) == 1  # resumed at the second epoch
    assert second.qat_step == 4
