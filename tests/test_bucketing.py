"""Length bucketing: bucket_by_length, DynamicPaddingPreprocessor, padding_report."""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_bertopt import data as kbdata
from keras_bertopt.bucketing import count_step_traces
from keras_bertopt.models import TinyConfig, build_classifier


def _texts(n, seed=0):
    """Distinct demo-vocabulary sentences of 1..29 words; label = (id % 3 == 0)."""
    words = kbdata.demo_vocabulary()[5:]
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        length = int(rng.integers(1, 30))
        body = [words[int(w)] for w in rng.integers(0, len(words), size=length)]
        # The first two words spell the id, so every text is unique and traceable.
        texts.append(" ".join([words[i % len(words)], words[i // len(words)], *body]))
        labels.append(int(i % 3 == 0))
    return texts, labels


def _packed_lengths(preprocessor, texts):
    tokens = preprocessor.tokenizer(tf.constant(texts))
    lengths = np.array([len(t) for t in tokens]) + 2
    return np.minimum(lengths, preprocessor.sequence_length)


def _epoch(ds):
    out = []
    for x, y in ds:
        out.append(([t.decode() for t in x.numpy()], y.numpy().tolist()))
    return out


def test_every_example_once_per_epoch_labels_kept_and_shuffled_across_epochs(tiny_classifier):
    texts, labels = _texts(300)
    label_of = dict(zip(texts, labels, strict=True))
    length_of = dict(zip(texts, _packed_lengths(tiny_classifier.preprocessor, texts), strict=True))
    ds = kbdata.bucket_by_length(
        (texts, labels), tiny_classifier.preprocessor, 16, bounds=(8, 16), shuffle_window=300
    )
    epochs = [_epoch(ds), _epoch(ds)]
    bounds = (0, 8, 16, 32)
    for batches in epochs:
        seen = [t for batch, _ in batches for t in batch]
        assert collections.Counter(seen) == collections.Counter(texts)  # each exactly once
        for batch, ys in batches:
            assert ys == [label_of[t] for t in batch]  # labels stay with their sentences
            assert len(batch) <= 16
            lengths = [length_of[t] for t in batch]
            # all members of a batch fall in one bucket (lo, hi]
            hi = min(b for b in bounds[1:] if b >= max(lengths))
            lo = bounds[bounds.index(hi) - 1]
            assert all(lo < n <= hi for n in lengths), (lengths, lo, hi)
    # random across epochs: batch contents differ
    assert [b for b, _ in epochs[0]] != [b for b, _ in epochs[1]]


def test_dynamic_padding_pads_each_batch_to_its_bucket_and_keeps_outputs(tiny_classifier):
    fixed = tiny_classifier.preprocessor
    texts, labels = _texts(120, seed=1)
    logits_fixed = tiny_classifier.predict(texts, batch_size=16, verbose=0)
    kbdata.dynamic_padding(tiny_classifier, bounds=(8, 16))
    dynamic = tiny_classifier.preprocessor
    assert isinstance(dynamic, kbdata.DynamicPaddingPreprocessor)
    assert dynamic.bounds == (8, 16, 32) and dynamic.tokenizer is fixed.tokenizer
    ds = kbdata.bucket_by_length((texts, labels), dynamic, 16, bounds=(8, 16), shuffle=False)
    for x, _ in ds:
        packed = dynamic(x)
        longest = int(np.max(_packed_lengths(fixed, [t.decode() for t in x.numpy()])))
        expected = min(b for b in (8, 16, 32) if b >= longest)
        assert packed["token_ids"].shape[1] == expected  # no longer than its bucket
        full = fixed(x)
        for key in ("token_ids", "segment_ids", "padding_mask"):
            np.testing.assert_array_equal(packed[key], np.asarray(full[key])[:, :expected])
            assert not np.asarray(full[key])[:, expected:].any() or key == "token_ids"
    # pad_to="longest" cuts to the longest member exactly
    longest = kbdata.dynamic_padding(fixed, pad_to="longest")
    assert longest(["good", "good movie"])["token_ids"].shape == (2, 4)
    # model outputs are those of fixed padding (only padding was cut)
    logits_dynamic = tiny_classifier.predict(texts, batch_size=16, verbose=0)
    np.testing.assert_allclose(logits_dynamic, logits_fixed, atol=1e-5)


def test_pairs_are_bucketed_by_packed_length(tiny_classifier):
    first, _ = _texts(80, seed=2)
    second, _ = _texts(80, seed=3)
    second = [" ".join(s.split()[: 1 + i % 7]) for i, s in enumerate(second)]
    labels = [i % 2 for i in range(80)]
    pre = kbdata.dynamic_padding(tiny_classifier.preprocessor, bounds=(16, 24))
    tokens = pre.tokenizer
    packed = {
        (a, b): min(len(tokens(a)) + len(tokens(b)) + 3, 32)
        for a, b in zip(first, second, strict=True)
    }
    ds = kbdata.bucket_by_length(((first, second), labels), pre, 8, bounds=(16, 24))
    total = 0
    for (a, b), _ in ds:
        firsts = [t.decode() for t in a.numpy()]
        pairs = list(zip(firsts, [t.decode() for t in b.numpy()], strict=True))
        lengths = [packed[p] for p in pairs]
        hi = min(x for x in (16, 24, 32) if x >= max(lengths))
        lo = {16: 0, 24: 16, 32: 24}[hi]
        assert all(lo < n <= hi for n in lengths)
        assert pre(x=(a, b))["token_ids"].shape[1] == hi  # a lone tuple reads as (x, y)
        total += len(pairs)
    assert total == 80


def test_loader_datasets_bucket_like_in_memory_lists(tiny_classifier, tmp_path):
    texts, labels = _texts(90, seed=4)
    path = tmp_path / "train.tsv"
    rows = "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels, strict=True))
    path.write_text("sentence\tlabel\n" + rows)
    batched = kbdata.load_file(str(path), batch_size=7, num_classes=2)
    from_file = kbdata.bucket_by_length(batched, tiny_classifier, 10, shuffle=False)
    from_lists = kbdata.bucket_by_length((texts, labels), tiny_classifier, 10, shuffle=False)
    assert _epoch(from_file) == _epoch(from_lists)
    demo = kbdata.bucket_by_length(kbdata.demo_dataset("train", 32, size=64), tiny_classifier, 8)
    assert sum(int(y.shape[0]) for _, y in demo) == 64


def test_padding_report_counts_real_and_padded_tokens(tiny_classifier):
    texts, labels = ["good", "good movie", "the film was good"], [1, 1, 1]
    ds = kbdata.from_examples(texts, labels, 2)
    report = kbdata.padding_report(ds, tiny_classifier)
    # [CLS] w.. [SEP]: 3 + 4 + 6 real tokens; two batches padded to 32
    assert (report.real_tokens, report.padded_tokens, report.examples) == (13, 96, 3)
    assert report.shapes == {(2, 32): 1, (1, 32): 1}
    pre = kbdata.dynamic_padding(tiny_classifier.preprocessor, bounds=(4, 8))
    report = kbdata.padding_report(ds, pre)
    assert (report.real_tokens, report.padded_tokens) == (13, 2 * 4 + 1 * 8)
    assert report.lengths == [4, 8] and report.to_dict()["efficiency"] == round(13 / 16, 4)


def test_fit_traces_the_step_a_bounded_number_of_times():
    model = build_classifier(TinyConfig(seed=0), 2, sequence_length=64)
    kbdata.dynamic_padding(model, bounds=(8, 16, 32))
    texts, labels = _texts(200, seed=5)
    ds = kbdata.bucket_by_length((texts, labels), model.preprocessor, 16, bounds=(8, 16, 32))
    shapes = kbdata.padding_report(ds, model.preprocessor).lengths
    assert len(shapes) >= 3  # several lengths do occur
    model.compile(optimizer="adamw", loss=keras.losses.SparseCategoricalCrossentropy(True))
    traces = count_step_traces(model)
    history = model.fit(ds, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert 1 <= traces["train"] <= 2, traces  # not once per length


def test_dynamic_preprocessor_saves_and_loads_in_safe_mode(tiny_classifier, tmp_path):
    kbdata.dynamic_padding(tiny_classifier, bounds=(8,), pad_to="bucket")
    tiny_classifier.compile(loss=keras.losses.SparseCategoricalCrossentropy(True))
    path = str(tmp_path / "m.keras")
    tiny_classifier.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded.preprocessor).__name__ == "DynamicPaddingPreprocessor"
    assert loaded.preprocessor.bounds == (8, 32)
    np.testing.assert_allclose(
        loaded.predict(["good movie"], verbose=0),
        tiny_classifier.predict(["good movie"], verbose=0),
        atol=1e-6,
    )


def test_bad_arguments_raise_clear_errors(tiny_classifier):
    texts, labels = ["a", "b"], [0, 1]
    with pytest.raises(ValueError, match="`batch_size`"):
        kbdata.bucket_by_length((texts, labels), tiny_classifier, 0)
    with pytest.raises(ValueError, match="`bounds`"):
        kbdata.bucket_by_length((texts, labels), tiny_classifier, 2, bounds=(0, 8))
    with pytest.raises(ValueError, match="texts and labels"):
        kbdata.bucket_by_length((texts, [0]), tiny_classifier, 2)
    with pytest.raises(ValueError, match="`preprocessor`"):
        kbdata.bucket_by_length((texts, labels), object(), 2)
    with pytest.raises(ValueError, match="`pad_to`"):
        kbdata.dynamic_padding(tiny_classifier, pad_to="max")
    assert type(tiny_classifier.preprocessor).__name__ == "BertTextClassifierPreprocessor"
