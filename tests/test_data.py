"""Data loaders: local TSV/CSV/JSONL files, tfds GLUE (mocked), the demo set, length_report."""

import json
import socket

import numpy as np
import pytest

from keras_bertopt.data import (
    GLUE_TASKS,
    demo_dataset,
    from_examples,
    length_report,
    load_file,
    load_glue,
    read_file,
)


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def _batches(ds):
    return [(x, np.asarray(y)) for x, y in ds]


def _logits_by_hand(model, x):
    """`model`'s logits on raw texts `x` (a list, or a tuple of two lists for pairs): its own
    preprocessor and forward pass, without any data pipeline."""
    import tensorflow as tf

    x = tuple(tf.constant(part) for part in x) if isinstance(x, tuple) else tf.constant(x)
    return np.asarray(model(model.preprocessor(x=x)))  # x=: a tuple is segments, not (x, y)


def _check_fed_rows(model, ds, x, labels):
    """`ds` yields exactly the texts `x` (in order) with `labels`: the model's predictions
    through the dataset equal those on `x` directly, and the labels match."""
    np.testing.assert_allclose(model.predict(ds, verbose=0), _logits_by_hand(model, x),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([np.asarray(y) for _, y in ds]), labels)


def _tfds_rows(name, split, features):
    """The mocked examples straight from tfds, in the features' order, label last."""
    import tensorflow_datasets as tfds

    return [tuple(e[f].decode() for f in features) + (e["label"],)
            for e in tfds.load(name, split=split).as_numpy_iterator()]


# ---------------------------------------------------------------------------------------
# Local files
# ---------------------------------------------------------------------------------------


def test_tsv_read_glue_style(tmp_path):
    path = _write(
        tmp_path / "train.tsv",
        'label\tsentence\n0\ta "quoted" film , with commas\n1\tgood\n\n1\tgreat fun\n',
    )
    texts, labels = read_file(path, "sentence", "label", num_classes=2)
    assert texts == ['a "quoted" film , with commas', "good", "great fun"]
    assert labels == [0, 1, 1]
    ds = load_file(path, "sentence", "label", batch_size=2)
    (x0, y0), (x1, y1) = _batches(ds)
    assert [t.decode() for t in x0.numpy()] == texts[:2] and list(y0) == [0, 1]
    assert y0.dtype == np.int32 and x1.shape == (1,)


def test_csv_pairs_and_limit(tmp_path):
    path = _write(
        tmp_path / "pairs.csv",
        'id,premise,hypothesis,gold\n1,"a, b",c,2\n2,d,"e ""f""",0\n3,g,h,1\n',
    )
    (first, second), labels = read_file(path, ["premise", "hypothesis"], "gold", num_classes=3)
    assert first == ["a, b", "d", "g"] and second == ["c", 'e "f"', "h"]
    assert labels == [2, 0, 1]
    (_, second), labels = read_file(path, ("premise", "hypothesis"), "gold", limit=2)
    assert second == ["c", 'e "f"'] and labels == [2, 0]
    (x, y), *_ = _batches(load_file(path, ["premise", "hypothesis"], "gold", batch_size=8))
    assert isinstance(x, tuple) and len(x) == 2 and list(y) == [2, 0, 1]


def test_jsonl_and_explicit_format(tmp_path):
    rows = [{"text": "good", "y": 1}, {"text": "bad", "y": 0, "extra": [1]}, {"text": 7, "y": "1"}]
    path = _write(tmp_path / "data.txt", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    with pytest.raises(ValueError, match="cannot tell the format.*'.txt'"):
        read_file(path, "text", "y")
    assert read_file(path, "text", "y", format="jsonl") == (["good", "bad", "7"], [1, 0, 1])


def test_shuffle_is_seeded_and_complete(tmp_path):
    lines = "".join(f"{i % 2}\ttext {i}\n" for i in range(50))
    path = _write(tmp_path / "d.tsv", "label\tsentence\n" + lines)

    def order(seed):
        ds = load_file(path, batch_size=50, shuffle=True, seed=seed)
        return [t.decode() for t in next(iter(ds))[0].numpy()]

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert sorted(order(1)) == sorted(f"text {i}" for i in range(50))


@pytest.mark.parametrize(
    "name, content, kwargs, message",
    [
        ("empty.tsv", "", {}, r"empty.tsv, line 1: the file is empty"),
        ("header.tsv", "label\tsentence\n", {}, r"header.tsv: the file has a header but no"),
        ("empty.jsonl", "\n\n", {}, r"empty.jsonl: the file is empty"),
        (
            "col.tsv",
            "label\ttext\n1\tgood\n",
            {},
            r"col.tsv, line 1: missing column\(s\) 'sentence' in the header "
            r"\(it has 'label', 'text'\)",
        ),
        (
            "col.jsonl",
            '{"sentence": "a", "label": 1}\n{"sentence": "b"}\n',
            {},
            r"col.jsonl, line 2: missing column 'label'",
        ),
        (
            "nonint.tsv",
            "label\tsentence\n1\tok\n0\tok\npositive\tgood\n",
            {},
            r"nonint.tsv, line 4: label 'positive' is not an integer",
        ),
        (
            "range.csv",
            "label,sentence\n1,ok\n2,good\n",
            {"num_classes": 2},
            r"range.csv, line 3: label 2 is out of range \(expected 0..1\)",
        ),
        (
            "negative.tsv",
            "label\tsentence\n-1\tgood\n",
            {},
            r"negative.tsv, line 2: label -1 is out of range \(expected >= 0\)",
        ),
        (
            "fields.tsv",
            "label\tsentence\n1\tok\n0\ttoo\tmany\n",
            {},
            r"fields.tsv, line 3: expected 2 fields",
        ),
        (
            "bad.jsonl",
            '{"sentence": "a", "label": 1}\n{oops\n',
            {},
            r"bad.jsonl, line 2: not valid",
        ),
        ("float.jsonl", '{"sentence": "a", "label": 1.5}\n', {}, r"line 1: label 1.5 is not"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path, name, content, kwargs, message):
    path = _write(tmp_path / name, content)
    with pytest.raises(ValueError, match=message):
        load_file(path, "sentence", "label", **kwargs)


def test_bad_arguments(tmp_path):
    path = _write(tmp_path / "ok.tsv", "label\tsentence\n1\tgood\n")
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        load_file(str(tmp_path / "missing.tsv"))
    with pytest.raises(ValueError, match="`text_columns`"):
        load_file(path, ["a", "b", "c"])
    with pytest.raises(ValueError, match="`batch_size`"):
        load_file(path, batch_size=0)
    with pytest.raises(ValueError, match="`limit`"):
        load_file(path, limit=0)
    with pytest.raises(ValueError, match="`format`"):
        load_file(path, format="xml")


def test_file_dataset_fits_classifier_with_preprocessor(tmp_path, tiny_classifier):
    import keras

    single = _write(tmp_path / "s.tsv", "label\tsentence\n" + "1\tgreat fun\n0\tawful mess\n" * 4)
    pairs = _write(tmp_path / "p.csv", "a,b,label\n" + "great,fun,1\nawful,mess,0\n" * 4)
    tiny_classifier.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = [np.array(w) for w in tiny_classifier.trainable_weights]
    tiny_classifier.fit(load_file(single, batch_size=4), epochs=1, verbose=0)
    assert not all(np.array_equal(b, np.array(w))
                   for b, w in zip(before, tiny_classifier.trainable_weights, strict=True))
    # What fit consumed: the rows written above, texts and labels in order.
    _check_fed_rows(tiny_classifier, load_file(single, batch_size=4),
                    ["great fun", "awful mess"] * 4, [1, 0] * 4)
    pair_ds = load_file(pairs, ["a", "b"], batch_size=4)
    tiny_classifier.fit(pair_ds, verbose=0)
    _check_fed_rows(tiny_classifier, pair_ds, (["great", "awful"] * 4, ["fun", "mess"] * 4),
                    [1, 0] * 4)
    # fit's preprocessing packs the tuple as two segments: [CLS] a [SEP] b [SEP].
    x, y = next(iter(pair_ds))
    segments = np.asarray(tiny_classifier.preprocess_samples(x, y)[0]["segment_ids"])
    assert segments[0].tolist()[:6] == [0, 0, 0, 1, 1, 0]


# ---------------------------------------------------------------------------------------
# GLUE through tfds (mocked: no download)
# ---------------------------------------------------------------------------------------


@pytest.fixture
def mock_tfds():
    """tfds's fake examples. Tests pass download=False: with a download allowed and the
    data not prepared, load_glue first checks the download host resolves (offline: fails)."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=10, policy=tfds.testing.MockPolicy.USE_CODE):
        yield


def test_glue_single_sentence(mock_tfds):
    batches = _batches(load_glue("glue/sst2", "validation", batch_size=4, download=False))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    x, y = batches[0]
    assert x.dtype.name == "string" and x.shape == (4,)
    assert y.dtype == np.int32
    # Validation is not shuffled: tfds's own examples, in order.
    got = [(t.decode(), int(label))
           for x, y in batches for t, label in zip(x.numpy(), y, strict=True)]
    assert got == _tfds_rows("glue/sst2", "validation", ["sentence"])
    assert (
        len(
            _batches(load_glue("cola", "train[:50%]", batch_size=32, limit=3, download=False))[0][1]
        )
        == 3
    )


@pytest.mark.parametrize("task, split", [("mrpc", "train"), ("mnli", "validation_matched")])
def test_glue_sentence_pairs(mock_tfds, task, split):
    (x, y), *_ = _batches(
        load_glue(task, split, batch_size=5, shuffle=True, seed=1, download=False)
    )
    assert isinstance(x, tuple) and len(x) == 2
    assert all(part.dtype.name == "string" and part.shape == (5,) for part in x)
    # Shuffled, but the same pairs as tfds gives, each in its fields' order (by hand).
    features = {"mrpc": ["sentence1", "sentence2"], "mnli": ["premise", "hypothesis"]}[task]
    batches = _batches(load_glue(task, split, batch_size=5, shuffle=True, seed=1,
                                 download=False))
    got = [(a.decode(), b.decode(), int(label)) for (first, second), y in batches
           for a, b, label in zip(first.numpy(), second.numpy(), y, strict=True)]
    assert sorted(got) == sorted(_tfds_rows(f"glue/{task}", split, features))
    assert max(label for *_, label in got) < GLUE_TASKS[task][1]


def test_glue_stsb_is_regression(mock_tfds):
    (x, y), *_ = _batches(load_glue("stsb", "validation", batch_size=10, download=False))
    assert isinstance(x, tuple) and y.dtype == np.float32
    # The similarity scores themselves, not class ids (tfds's float labels, in order).
    expected = [row[-1] for row in _tfds_rows("glue/stsb", "validation",
                                              ["sentence1", "sentence2"])]
    np.testing.assert_array_equal(y, np.asarray(expected, np.float32))
    assert not np.array_equal(y, np.round(y))


def test_glue_mock_dataset_fits(mock_tfds, tiny_classifier):
    import keras

    tiny_classifier.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    before = [np.array(w) for w in tiny_classifier.trainable_weights]
    tiny_classifier.fit(load_glue("rte", "train", batch_size=5, download=False), verbose=0)
    assert not all(np.array_equal(b, np.array(w))
                   for b, w in zip(before, tiny_classifier.trainable_weights, strict=True))
    # What fit consumed: tfds's (sentence1, sentence2) pairs, in that order, with their labels.
    rows = _tfds_rows("glue/rte", "train", ["sentence1", "sentence2"])
    _check_fed_rows(tiny_classifier,
                    load_glue("rte", "train", batch_size=5, shuffle=False, download=False),
                    ([r[0] for r in rows], [r[1] for r in rows]), [r[2] for r in rows])


def test_glue_bad_arguments():
    with pytest.raises(ValueError, match="`task` must be one of"):
        load_glue("squad")
    with pytest.raises(ValueError, match="'validation' is not a split of glue/mnli"):
        load_glue("mnli", "validation")
    with pytest.raises(ValueError, match="`batch_size`"):
        load_glue("sst2", batch_size=0)


def test_glue_not_prepared_offline_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"glue/sst2.*network access.*load_file"):
        load_glue("sst2", "validation", data_dir=str(tmp_path), download=False)


def test_glue_download_offline_fails_fast(monkeypatch, tmp_path):
    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConnectionError, match=r"glue/mrpc.*network access.*resolve") as info:
        load_glue("mrpc", "train", data_dir=str(tmp_path))
    assert "dl.fbaipublicfiles.com" in str(info.value)


# ---------------------------------------------------------------------------------------
# Demo data
# ---------------------------------------------------------------------------------------


def test_demo_dataset_and_from_examples():
    from keras_bertopt.data import demo_examples

    texts, labels = demo_examples("validation", 20)
    batches = _batches(demo_dataset("validation", batch_size=16, size=20))
    assert [int(y.shape[0]) for _, y in batches] == [16, 4]
    # Validation is never shuffled: the rows in order, labels beside their own texts.
    assert [t.decode() for x, _ in batches for t in x.numpy()] == list(texts)
    assert [int(v) for _, y in batches for v in y] == list(labels)
    train = [t.decode() for x, _ in _batches(demo_dataset("train", size=20)) for t in x.numpy()]
    first, _ = demo_examples("train", 20)
    assert sorted(train) == sorted(first) and train != list(first)  # train: shuffled rows
    (x, y), = _batches(from_examples((["a", "b"], ["c", "d"]), [1, 0], batch_size=2))
    assert [t.decode() for t in x[0].numpy()] == ["a", "b"]
    assert [t.decode() for t in x[1].numpy()] == ["c", "d"] and list(y) == [1, 0]


# ---------------------------------------------------------------------------------------
# length_report
# ---------------------------------------------------------------------------------------


def test_length_report_matches_preprocessor_packing(tiny_classifier):
    import keras_hub

    tokenizer = tiny_classifier.preprocessor.tokenizer
    texts = ["good", "the film was good", "bad " * 40, "not bad , really fun and great " * 3]
    wide = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=512)
    expected = np.asarray(wide(texts)["padding_mask"]).sum(axis=1)  # [CLS] ... [SEP]
    report = length_report(texts, tiny_classifier.preprocessor, candidates=(4, 16, 32, 64))
    assert report.count == 4 and report.special_tokens == 2
    assert report.percentiles["max"] == expected.max() == 42
    assert report.percentiles[50] == int(np.percentile(expected, 50, method="higher"))
    assert report.truncated == {c: float(np.mean(expected > c)) for c in (4, 16, 32, 64)}
    assert report.mean == pytest.approx(expected.mean())
    assert report.suggest(0.0) == 64 and report.suggest(0.25) == 32
    text = str(report)
    assert "4 examples" in text and "max 42" in text and "25.00%" in text
    assert json.loads(json.dumps(report.to_dict()))["truncated_share"]["32"] == 0.25


def test_length_report_pairs_and_datasets_agree(tiny_classifier):
    import keras_hub

    tokenizer = tiny_classifier.preprocessor.tokenizer
    first, second = ["good", "bad film", "great fun and more"], ["fun", "awful", "not good"]
    wide = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=64)
    expected = np.asarray(wide(x=(first, second))["padding_mask"]).sum(axis=1)
    from_lists = length_report((first, second), tokenizer, candidates=(5, 8))
    assert from_lists.special_tokens == 3 and from_lists.percentiles["max"] == expected.max()
    assert expected.tolist() == [5, 6, 9]  # [CLS] a [SEP] b [SEP]
    assert from_lists.truncated == {5: 2 / 3, 8: 1 / 3}
    dataset = from_examples((first, second), [1, 0, 1], batch_size=2)
    assert length_report(dataset, tokenizer, candidates=(5, 8)) == from_lists
    pairs = list(zip(first, second, strict=True))
    assert length_report(pairs, tokenizer, candidates=(5, 8)) == from_lists
    singles = length_report(demo_dataset("test", size=10), tokenizer)
    assert singles.count == 10 and singles.segments == 1


def test_length_report_bad_input(tiny_classifier):
    with pytest.raises(ValueError, match="not one string"):
        length_report("good film", tiny_classifier.preprocessor)
    with pytest.raises(ValueError, match="empty"):
        length_report([], tiny_classifier.preprocessor)
    with pytest.raises(ValueError, match="candidates"):
        length_report(["good"], tiny_classifier.preprocessor, candidates=(0,))
    with pytest.raises(ValueError, match="preprocessor_or_tokenizer"):
        length_report(["good"], 3)
