"""Predict on new text: `keras_bertopt.predict`, the `predict` command, the cache, the pool."""

import json

import numpy as np
import pytest

from keras_bertopt import cli

SEQ = 32
LABELS = ["negative", "positive"]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A briefly trained tiny classifier saved as .keras, its metadata .tflite (batch 1,
    fixed length: everything a shipped file needs) and 48 held-out sentences."""
    import keras

    from keras_bertopt.data import demo_dataset, demo_examples
    from keras_bertopt.export import to_tflite
    from keras_bertopt.models import TinyConfig, build_classifier

    model = build_classifier(TinyConfig(), num_classes=2, sequence_length=SEQ)
    model.compile(optimizer=keras.optimizers.AdamW(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(demo_dataset("train", 32).take(30), epochs=1, verbose=0)
    folder = tmp_path_factory.mktemp("shipped")
    keras_path = str(folder / "model.keras")
    model.save(keras_path)
    tflite = str(folder / "model.tflite")
    to_tflite(model, tflite, metadata=True, labels=LABELS, verify=False, latency_runs=0,
              length_buckets=None, dynamic_length=False)
    texts, labels = demo_examples("test", 48)
    return model, keras_path, tflite, texts, labels


def _read(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _reference(model, tflite, texts):
    """TFLiteClassifier with the model's own preprocessor and no cache: the reference path."""
    from keras_bertopt.export import TFLiteClassifier

    return TFLiteClassifier(tflite, model.preprocessor, cache_size=0).predict(texts)


@pytest.mark.slow
def test_metadata_preprocessor_tokenizes_like_the_model(shipped):
    from keras_bertopt.export import preprocess_texts
    from keras_bertopt.export.metadata import metadata_labels, metadata_preprocessor

    model, _, tflite, texts, _ = shipped
    rebuilt = metadata_preprocessor(tflite)
    assert rebuilt.sequence_length == SEQ and metadata_labels(tflite) == LABELS
    ours = preprocess_texts(rebuilt, texts + ["Ünïcode CASED Text!"])
    theirs = preprocess_texts(model.preprocessor, texts + ["Ünïcode CASED Text!"])
    for key in theirs:
        np.testing.assert_array_equal(ours[key], theirs[key])


@pytest.mark.slow
def test_predict_command_txt_equals_tflite_classifier_and_keras(shipped, tmp_path, capsys):
    model, _, tflite, texts, _ = shipped
    source = tmp_path / "texts.txt"
    # Blank lines are skipped; each prediction names its input line.
    source.write_text("\n".join(texts[:10]) + "\n\n" + "\n".join(texts[10:]) + "\n",
                      encoding="utf-8")
    out = tmp_path / "predictions.jsonl"
    assert cli.main(["predict", tflite, "--input", str(source), "--output", str(out),
                     "--quiet"]) == 0
    assert "wrote 48 predictions" in capsys.readouterr().out
    rows = _read(out)
    assert [r["line"] for r in rows] == list(range(1, 11)) + list(range(12, 50))
    reference = _reference(model, tflite, texts)
    assert [r["label"] for r in rows] == reference["labels"].tolist()
    assert len(set(reference["labels"].tolist())) == 2  # a trained model: both classes occur
    assert [r["label_name"] for r in rows] == [LABELS[i] for i in reference["labels"]]
    np.testing.assert_allclose([r["probabilities"] for r in rows], reference["probabilities"],
                               atol=1e-6)
    # The Keras model on the same raw strings through keras-hub's own pipeline.
    keras_labels = np.argmax(model.predict(np.array(texts), verbose=0), axis=-1)
    assert np.mean(keras_labels == reference["labels"]) >= 0.97


def test_tsv_jsonl_and_pairs_in_input_order(shipped, tmp_path):
    from keras_bertopt.predict import Predictor, predict_file

    model, keras_path, tflite, texts, labels = shipped
    tsv = tmp_path / "in.tsv"
    tsv.write_text("label\tsentence\n" + "".join(f"{y}\t{t}\n" for t, y in
                                                   zip(texts, labels, strict=True)))
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    reference = _reference(model, tflite, texts)["labels"].tolist()
    for source, column in ((tsv, "sentence"), (jsonl, "text")):
        out = tmp_path / f"{source.suffix[1:]}.jsonl"
        summary = predict_file(tflite, source, out, text_columns=column, chunk_size=7)
        assert summary["examples"] == 48 and [r["label"] for r in _read(out)] == reference
    # Sentence pairs: two columns, against keras-hub's own pipeline on (first, second).
    firsts, seconds = texts[:24], texts[24:]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b\n" + "".join(f'"{a}","{b}"\n' for a, b in
                                       zip(firsts, seconds, strict=True)))
    out = tmp_path / "pairs_out.jsonl"
    predict_file(keras_path, pairs, out, text_columns=("a", "b"), chunk_size=5)
    expected = np.argmax(model.predict(x=(np.array(firsts), np.array(seconds)), verbose=0), -1)
    assert [r["label"] for r in _read(out)] == expected.tolist()
    tflite_pairs = Predictor(tflite, cache_size=0).predict((firsts, seconds))["labels"]
    assert np.mean(tflite_pairs == expected) >= 0.95


def test_cache_returns_identical_outputs_and_counts(shipped):
    from keras_bertopt.export import TFLiteClassifier

    model, _, tflite, texts, _ = shipped
    # 30 distinct texts, then repeats; an upper-cased copy tokenizes alike (uncased vocabulary).
    stream = texts[:30] + texts[:10] + [texts[3].upper()] + texts[5:8]
    plain = TFLiteClassifier(tflite, model.preprocessor, cache_size=0).predict(stream)
    runner = TFLiteClassifier(tflite, model.preprocessor, cache_size=100)
    cached = runner.predict(stream)
    np.testing.assert_array_equal(cached["probabilities"], plain["probabilities"])
    np.testing.assert_array_equal(cached["labels"], plain["labels"])
    assert (cached["cache_hits"], cached["cache_misses"]) == (14, 30)
    again = runner.predict(texts[:5] + texts[40:42])
    assert (again["cache_hits"], again["cache_misses"]) == (5, 2)
    assert (runner.cache_hits, runner.cache_misses) == (19, 32) and len(runner.cache) == 32
    np.testing.assert_array_equal(again["logits"][:5], plain["logits"][:5])
    assert (plain["cache_hits"], plain["cache_misses"]) == (0, len(stream))


def test_exact_repeats_skip_the_tokenizer(shipped):
    from keras_bertopt.export import TFLiteClassifier

    model, _, tflite, texts, _ = shipped

    class Counting:  # the model's preprocessor, counting the texts it tokenizes
        def __init__(self):
            self.texts = 0
            self.sequence_length = model.preprocessor.sequence_length

        def __call__(self, x):
            self.texts += int(x.shape[0])
            return model.preprocessor(x)

    counting = Counting()
    runner = TFLiteClassifier(tflite, counting, cache_size=100)
    first = runner.predict(texts[:20])
    assert counting.texts == 20
    again = runner.predict(texts[10:20] + texts[:5] + [texts[0].upper()] + texts[20:22])
    assert counting.texts == 20 + 3  # only the upper-cased copy and the two new texts
    assert (again["cache_hits"], again["cache_misses"]) == (16, 2)
    np.testing.assert_array_equal(again["logits"][:10], first["logits"][10:20])
    np.testing.assert_array_equal(again["logits"][15], first["logits"][0])
    reference = _reference(model, tflite, texts[20:22])
    np.testing.assert_array_equal(again["logits"][16:], reference["logits"])


def test_cache_is_least_recently_used_and_bounded():
    from keras_bertopt.export.cache import PredictionCache, cached_outputs

    def feeds(rows):  # rows of token ids; zeros are padding
        ids = np.array(rows, np.int32)
        return {"token_ids": ids, "segment_ids": np.zeros_like(ids),
                "padding_mask": (ids > 0).astype(np.int32)}

    calls = []

    def compute(part):
        calls.append(part["token_ids"].tolist())
        return part["token_ids"].sum(-1, keepdims=True).astype(np.float32)

    cache = PredictionCache(2)
    out = cached_outputs(cache, feeds([[2, 5, 3, 0], [2, 6, 3, 0], [2, 5, 3, 0]]), compute)
    assert out.ravel().tolist() == [10, 11, 10] and calls == [[[2, 5, 3, 0], [2, 6, 3, 0]]]
    # Same tokens with different padding width: one key. [2, 5, 3] is now most recent.
    cached_outputs(cache, feeds([[2, 5, 3, 0, 0]]), compute)
    cached_outputs(cache, feeds([[2, 7, 3, 0]]), compute)  # evicts [2, 6, 3]
    assert len(calls) == 2 and len(cache) == 2
    cached_outputs(cache, feeds([[2, 6, 3, 0], [2, 5, 3, 0]]), compute)
    assert calls[-1] == [[2, 6, 3, 0]]
    assert (cache.hits, cache.misses) == (3, 4)
    with pytest.raises(ValueError, match="`cache_size`"):
        PredictionCache(-1)


def test_threads_2_equals_threads_1(shipped, tmp_path):
    from keras_bertopt.predict import predict_file

    _, _, tflite, texts, _ = shipped
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(texts * 2) + "\n")
    outputs = []
    for threads in (1, 2):
        out = tmp_path / f"t{threads}.jsonl"
        assert cli.main(["predict", tflite, "--input", str(source), "--output", str(out),
                         "--threads", str(threads), "--cache-size", "0", "--quiet"]) == 0
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1] and len(outputs[0].splitlines()) == 96
    summary = predict_file(tflite, source, tmp_path / "cached.jsonl", workers=2)
    assert (summary["cache_hits"], summary["cache_misses"]) == (48, 48)
    assert (tmp_path / "cached.jsonl").read_text() == outputs[0]


def test_bad_input_names_the_line_and_writes_nothing(shipped, tmp_path, capsys):
    from keras_bertopt.predict import Predictor, predict_file

    _, keras_path, tflite, texts, _ = shipped
    source = tmp_path / "bad.jsonl"
    good = "".join(json.dumps({"sentence": t}) + "\n" for t in texts[:40])
    source.write_text(good + '{"sentence": "fine"}\n{oops\n')
    out = tmp_path / "out.jsonl"
    done = []
    with pytest.raises(ValueError, match=r"bad.jsonl, line 42: not valid JSON"):
        predict_file(tflite, source, out, chunk_size=8, progress=lambda n, s: done.append(n))
    # Streaming: the first chunks ran before the bad line was read; no output was left.
    assert done == [8, 16, 24, 32, 40] and not out.exists()
    assert list(tmp_path.iterdir()) == [source]
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"a good film\nbad \xff byte\n")
    assert cli.main(["predict", tflite, "--input", str(binary), "--output",
                     str(tmp_path / "o.jsonl")]) == 2
    assert "binary.txt, line 2: not valid UTF-8" in capsys.readouterr().err
    missing = tmp_path / "cols.tsv"
    missing.write_text("label\ttext\n1\tgood\n")
    assert cli.main(["predict", tflite, "--input", str(missing), "--output",
                     str(tmp_path / "o.jsonl")]) == 2
    assert "cols.tsv, line 1: missing column(s) 'sentence'" in capsys.readouterr().err
    for argv, message in (
        (["--output", "x.csv"], "`output` must be a .jsonl"),
        (["--output", "x.jsonl", "--threads", "0"], "`--threads` must be an integer >= 1"),
        (["--output", "x.jsonl", "--text-column", "a,b,c"], "--text-column must be one"),
        (["--output", "x.jsonl", "--text-column", "a,b"], "a .txt file holds one text"),
    ):
        assert cli.main(["predict", tflite, "--input", str(binary), *argv]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()
    with pytest.raises(ValueError, match="`preprocessor` is for .tflite files"):
        Predictor(keras_path, preprocessor="tiny")
    with pytest.raises(ValueError, match=r"\['workers'\] apply when `model` is a path"):
        predict_file(Predictor(tflite), binary, tmp_path / "o.jsonl", workers=2)
    with pytest.raises(ValueError, match="`labels` must name 2 classes"):
        Predictor(tflite, labels=["a", "b", "c"])


def test_evaluate_finds_the_preprocessor_in_the_metadata(shipped, tmp_path, capsys):
    model, _, tflite, texts, labels = shipped
    data = tmp_path / "dev.tsv"
    data.write_text("label\tsentence\n" + "".join(f"{y}\t{t}\n" for t, y in
                                                   zip(texts, labels, strict=True)))
    assert cli.main(["evaluate", tflite, "--data", str(data), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    expected = np.mean(_reference(model, tflite, texts)["labels"] == np.array(labels))
    assert metrics["examples"] == 48 and metrics["accuracy"] == pytest.approx(expected)


@pytest.mark.slow
def test_pool_on_a_dynamic_batch_file_equals_one_interpreter(shipped, tmp_path):
    from keras_bertopt.export import TFLiteClassifier, to_tflite

    model, _, _, texts, _ = shipped
    path = str(tmp_path / "dynamic_batch.tflite")
    to_tflite(model, path, batch_size=None, verify=False, latency_runs=0)
    stream = texts * 3  # 144 texts: several batches of 8 per worker
    one = TFLiteClassifier(path, model.preprocessor, batch_size=8, cache_size=0)
    two = TFLiteClassifier(path, model.preprocessor, batch_size=8, cache_size=0, workers=2)
    assert one.file_batch_size is None and two.pool.workers == 2
    expected, got = one.predict(stream), two.predict(stream)
    np.testing.assert_array_equal(got["logits"], expected["logits"])
    # Each row as run alone at its own length: the same labels, logits within float noise.
    alone = np.concatenate([one.predict([t])["logits"] for t in texts])
    np.testing.assert_allclose(got["logits"][:48], alone, atol=1e-4)
    two.pool.close()
