"""Throughput with padded tokens and FLOP utilization; TransformerCost counting."""

import time

import keras
import numpy as np
import pytest

import keras_bertopt as kb
from keras_bertopt.callbacks import Throughput
from keras_bertopt.callbacks.flops import TransformerCost


def test_transformer_cost_counts_kernels_and_attention_by_hand():
    model = kb.models.build_classifier(kb.models.TinyConfig(), 2, 32)  # hidden 32, ff 64, 2 layers
    cost = TransformerCost.of(model)
    per_layer = 4 * 32 * 32 + 2 * 32 * 64  # q, k, v, out + two feed-forward kernels
    assert cost.matmul_weights == 2 * per_layer
    assert cost.attention_dims == 2 * (2 * 16 + 2 * 16)  # 2 heads x (key 16 + value 16)
    # one sequence of 10 tokens: 3 x (2 W s + 2 A s^2)
    assert cost.training_flops(10, 100) == 3 * (2 * 2 * per_layer * 10 + 2 * 128 * 100)
    with pytest.raises(ValueError, match="`model`"):
        TransformerCost.of(object())


def test_padded_tokens_and_utilization_follow_the_counts(tiny_classifier):
    texts, labels = kb.data.demo_examples("train", 64)
    kb.data.dynamic_padding(tiny_classifier, bounds=(8, 16))
    train = kb.data.bucket_by_length((texts, labels), tiny_classifier, 16, shuffle=False)
    report = kb.data.padding_report(train, tiny_classifier)
    tiny_classifier.compile(
        optimizer="adamw", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    peak = 1e9
    throughput = Throughput(warmup_steps=0, verbose=0, peak_flops=peak)
    start = time.perf_counter()
    history = tiny_classifier.fit(
        throughput.count_tokens(train, tiny_classifier), epochs=1, verbose=0,
        callbacks=[throughput],
    )
    fit_seconds = time.perf_counter() - start
    epoch = throughput.epoch_rates[0]
    assert (epoch["examples"], epoch["tokens"], epoch["padded_tokens"]) == (
        64, report.real_tokens, report.padded_tokens)
    assert report.padded_tokens < 64 * 32  # bucketed: less than the fixed 32
    h = {k: v[0] for k, v in history.history.items()}
    # Both token rates share the epoch's time: their ratio is the ratio of the counts, and the
    # time they imply lies inside the whole fit call (timed here, not by the callback).
    assert h["tokens_per_second"] / h["padded_tokens_per_second"] == pytest.approx(
        report.real_tokens / report.padded_tokens)
    assert report.real_tokens / h["tokens_per_second"] <= fit_seconds
    # squared lengths from the same batches, by hand
    pre = tiny_classifier.preprocessor
    squared = padded_squared = 0
    for x, _ in train:
        mask = np.asarray(pre(x)["padding_mask"]).astype(np.int64)
        squared += int((mask.sum(axis=1) ** 2).sum())
        padded_squared += mask.shape[0] * mask.shape[1] ** 2
    # Training FLOPs by hand (forward + backward = 3x forward): 2 FLOPs per weight per token
    # for the 2 layers' kernels (q, k, v, out: 32x32; feed-forward 32x64 and 64x32), and per
    # pair of tokens 2 FLOPs per attention dim (2 layers x 2 heads x (key 16 + value 16)).
    weights, attention = 2 * (4 * 32 * 32 + 2 * 32 * 64), 2 * 2 * (16 + 16)
    real_flops = 3 * (2 * weights * report.real_tokens + 2 * attention * squared)
    padded_flops = 3 * (2 * weights * report.padded_tokens + 2 * attention * padded_squared)
    # utilization = flops / (peak x seconds), and seconds = tokens / tokens_per_second.
    assert h["mfu_real"] == pytest.approx(
        real_flops * h["tokens_per_second"] / (report.real_tokens * peak), rel=1e-5)
    assert h["mfu_padded"] == pytest.approx(
        padded_flops * h["padded_tokens_per_second"] / (report.padded_tokens * peak), rel=1e-5)
    cost = TransformerCost.of(tiny_classifier)
    # the config round-trips, the cost included
    again = Throughput.from_config(throughput.get_config())
    assert again.cost == cost and again.peak_flops == peak
    with pytest.raises(ValueError, match="`peak_flops`"):
        Throughput(peak_flops=0)


def test_no_short_count_warning_over_data_of_unknown_length_unless_uncounted(tiny_classifier):
    import warnings

    texts, labels = kb.data.demo_examples("train", 64)
    train = kb.data.bucket_by_length((texts, labels), tiny_classifier, 16, shuffle=False)
    assert int(train.cardinality()) < 0  # unknown length: Keras finds the end by running out
    tiny_classifier.compile(
        optimizer="adamw", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    batches = sum(1 for _ in train)
    throughput = Throughput(warmup_steps=0, verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny_classifier.fit(throughput.count_tokens(train, tiny_classifier), epochs=2,
                            verbose=0, callbacks=[throughput])
    assert not [w for w in caught if "fewer counted batches" in str(w.message)]
    assert [e["examples"] for e in throughput.epoch_rates] == [64, 64]
    # Keras's step counter (what the callback reads) ran past the batches, by at most one
    # step per epoch: the case the check allows for.
    extra = int(tiny_classifier.optimizer.iterations.numpy()) - 2 * batches
    assert 0 <= extra <= 2
    # A dataset that was not passed through count_tokens still gets the warning.
    uncounted = Throughput(warmup_steps=0, verbose=0)
    uncounted.count_tokens(train, tiny_classifier)  # made, but fit gets the plain dataset
    with pytest.warns(UserWarning, match="fewer counted batches"):
        tiny_classifier.fit(train, epochs=1, verbose=0, callbacks=[uncounted])
