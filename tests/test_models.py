"""build_classifier from a tiny config, a Hugging Face checkpoint directory and a preset name."""

import json
import os
import socket

import numpy as np
import pytest

from keras_bertopt.models import (
    HF_CHECKPOINT_FILES,
    TinyConfig,
    build_classifier,
    check_checkpoint_dir,
    hf_state_dict,
    read_checkpoint_config,
    save_hf_checkpoint,
)

TEXTS = ["the movie was great", "not a good film , really bad", "zzz unknownword"]


def _weights(model):
    return {v.path: np.asarray(v.numpy()) for v in model.backbone.weights}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny BERT (3 heads, odd sizes so transposes show) saved in Hugging Face layout."""
    model = build_classifier(
        TinyConfig(num_layers=2, num_heads=3, hidden_dim=24, intermediate_dim=40, seed=3),
        num_classes=2,
        sequence_length=16,
    )
    directory = str(tmp_path_factory.mktemp("ckpt") / "tiny_bert")
    save_hf_checkpoint(model.backbone, model.preprocessor.tokenizer, directory)
    return model, directory


def test_saved_directory_has_hugging_face_layout(tiny_dir):
    from safetensors.numpy import load_file

    model, directory = tiny_dir
    assert sorted(os.listdir(directory)) == sorted(HF_CHECKPOINT_FILES + ("tokenizer_config.json",))
    config = read_checkpoint_config(directory)
    assert config["model_type"] == "bert"
    assert (config["hidden_size"], config["num_attention_heads"]) == (24, 3)
    tensors = load_file(os.path.join(directory, "model.safetensors"))
    # PyTorch [out, in] layout under HF names.
    assert tensors["embeddings.word_embeddings.weight"].shape == (config["vocab_size"], 24)
    assert tensors["encoder.layer.1.attention.self.query.weight"].shape == (24, 24)
    assert tensors["encoder.layer.0.intermediate.dense.weight"].shape == (40, 24)
    assert tensors["encoder.layer.0.output.dense.weight"].shape == (24, 40)
    assert tensors["pooler.dense.bias"].shape == (24,)
    kernel = model.backbone.get_layer("transformer_layer_0")._feedforward_intermediate_dense.kernel
    np.testing.assert_array_equal(
        tensors["encoder.layer.0.intermediate.dense.weight"], np.asarray(kernel.numpy()).T
    )
    with open(os.path.join(directory, "vocab.txt"), encoding="utf-8") as f:
        vocab = f.read().splitlines()
    assert vocab == model.preprocessor.tokenizer.get_vocabulary()


def test_checkpoint_dir_loads_same_weights_and_outputs(tiny_dir):
    model, directory = tiny_dir
    loaded = build_classifier(directory, num_classes=3, sequence_length=12)
    original, again = _weights(model), _weights(loaded)
    assert original.keys() == again.keys()
    for path, value in original.items():
        np.testing.assert_array_equal(again[path], value, err_msg=path)
    assert loaded.preprocessor.sequence_length == 12
    assert loaded.preprocessor.tokenizer(TEXTS) == model.preprocessor.tokenizer(TEXTS)
    assert loaded.preprocessor.tokenizer.lowercase
    features = model.preprocessor(TEXTS)
    out_a = model.backbone(features)
    out_b = loaded.backbone(features)
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(np.asarray(out_b[key]), np.asarray(out_a[key]), atol=1e-6)
    assert loaded.predict(TEXTS, verbose=0).shape == (3, 3)


def _numpy_bert_checkpoint(directory, *, prefix="", layer_norm=("weight", "bias"), seed=0):
    """A 1-layer BERT written with numpy only, old Google naming optional."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "##s"]
    hidden, inter, positions = 8, 12, 20
    g, b = layer_norm

    def r(*shape):
        return rng.standard_normal(shape).astype("float32")

    tensors = {
        "embeddings.word_embeddings.weight": r(len(vocab), hidden),
        "embeddings.position_embeddings.weight": r(positions, hidden),
        "embeddings.token_type_embeddings.weight": r(2, hidden),
        f"embeddings.LayerNorm.{g}": r(hidden),
        f"embeddings.LayerNorm.{b}": r(hidden),
        "pooler.dense.weight": r(hidden, hidden),
        "pooler.dense.bias": r(hidden),
    }
    layer = "encoder.layer.0."
    for name in ("query", "key", "value"):
        tensors[f"{layer}attention.self.{name}.weight"] = r(hidden, hidden)
        tensors[f"{layer}attention.self.{name}.bias"] = r(hidden)
    tensors.update(
        {
            f"{layer}attention.output.dense.weight": r(hidden, hidden),
            f"{layer}attention.output.dense.bias": r(hidden),
            f"{layer}attention.output.LayerNorm.{g}": r(hidden),
            f"{layer}attention.output.LayerNorm.{b}": r(hidden),
            f"{layer}intermediate.dense.weight": r(inter, hidden),
            f"{layer}intermediate.dense.bias": r(inter),
            f"{layer}output.dense.weight": r(hidden, inter),
            f"{layer}output.dense.bias": r(hidden),
            f"{layer}output.LayerNorm.{g}": r(hidden),
            f"{layer}output.LayerNorm.{b}": r(hidden),
        }
    )
    os.makedirs(directory)
    save_file(
        {prefix + k: v for k, v in tensors.items()}, os.path.join(directory, "model.safetensors")
    )
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": len(vocab),
        "hidden_size": hidden,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": inter,
        "max_position_embeddings": positions,
        "type_vocab_size": 2,
    }
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(directory, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    return tensors


def test_numpy_written_google_style_checkpoint_maps_by_name(tmp_path):
    # "bert." prefix and LayerNorm gamma/beta (original BERT naming), no tokenizer_config.json.
    directory = str(tmp_path / "google_bert")
    tensors = _numpy_bert_checkpoint(directory, prefix="bert.", layer_norm=("gamma", "beta"))
    model = build_classifier(directory, num_classes=2, sequence_length=8)
    backbone = model.backbone
    block = backbone.get_layer("transformer_layer_0")
    np.testing.assert_array_equal(
        backbone.get_layer("token_embedding").embeddings.numpy(),
        tensors["embeddings.word_embeddings.weight"],
    )
    np.testing.assert_array_equal(
        block._feedforward_intermediate_dense.kernel.numpy(),
        tensors["encoder.layer.0.intermediate.dense.weight"].T,
    )
    np.testing.assert_array_equal(
        block._self_attention_layer_norm.gamma.numpy(),
        tensors["encoder.layer.0.attention.output.LayerNorm.gamma"],
    )
    query = block._self_attention_layer.query_dense.kernel.numpy()  # (hidden, heads, head_dim)
    np.testing.assert_array_equal(
        query.reshape(8, 8).T, tensors["encoder.layer.0.attention.self.query.weight"]
    )
    # The exporter is the exact inverse of keras-hub's importer.
    exported = hf_state_dict(model)
    for name, value in tensors.items():
        key = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace(
            "LayerNorm.beta", "LayerNorm.bias"
        )
        np.testing.assert_array_equal(exported[key], value, err_msg=name)
    # No tokenizer_config.json: a lower-casing WordPiece tokenizer on vocab.txt.
    assert model.preprocessor.tokenizer(["Good films"]) == [[5, 7, 8]]


def test_not_a_checkpoint_names_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        build_classifier(str(tmp_path / "nowhere"), 2)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="missing model.safetensors, vocab.txt"):
        build_classifier(str(tmp_path), 2)
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        check_checkpoint_dir(tmp_path)


def test_bad_checkpoint_config_is_a_clear_error(tmp_path, tiny_dir):
    _, good = tiny_dir
    with pytest.raises(ValueError, match="max_position_embeddings 128"):
        build_classifier(good, 2, sequence_length=256)
    directory = tmp_path / "roberta"
    directory.mkdir()
    for name in HF_CHECKPOINT_FILES:
        (directory / name).write_text("x")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        build_classifier(str(directory), 2)
    (directory / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    with pytest.raises(ValueError, match="expected a BERT checkpoint"):
        build_classifier(str(directory), 2)
    (directory / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 9}))
    with pytest.raises(ValueError, match="missing field.*num_hidden_layers"):
        build_classifier(str(directory), 2)


def test_preset_offline_fails_fast_with_clear_error(monkeypatch, tmp_path):
    # Simulate a machine without network: DNS fails, and the kagglehub cache is empty.
    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    with pytest.raises(ConnectionError) as info:
        build_classifier("bert_tiny_en_uncased", num_classes=2, sequence_length=32)
    message = str(info.value)
    assert "'bert_tiny_en_uncased'" in message and "`source`" in message
    assert "network access" in message and "local Hugging Face checkpoint directory" in message


def test_bad_arguments():
    with pytest.raises(ValueError, match="neither a local checkpoint directory nor"):
        build_classifier("bert_no_such_preset", 2)
    with pytest.raises(ValueError, match="num_classes"):
        build_classifier(TinyConfig(), 1)
    with pytest.raises(ValueError, match="sequence_length"):
        build_classifier(TinyConfig(), 2, sequence_length=2)
    with pytest.raises(ValueError, match="`source` must be"):
        build_classifier(42, 2)


def test_save_hf_checkpoint_checks_vocabulary(tiny_classifier, tmp_path):
    with pytest.raises(ValueError, match="vocabulary_size"):
        save_hf_checkpoint(tiny_classifier.backbone, ["[PAD]", "[UNK]"], tmp_path / "x")
    with pytest.raises(ValueError, match="BertBackbone"):
        save_hf_checkpoint(object(), ["[PAD]"], tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_with_dtype_policy_copies_weights_and_computes_in_bfloat16(tiny_classifier):
    from keras_bertopt.models import with_dtype_policy

    texts = ["a wonderful film", "dull and far too long"]
    fast = with_dtype_policy(tiny_classifier, "mixed_bfloat16")
    assert fast.preprocessor is tiny_classifier.preprocessor
    assert fast.backbone.dtype_policy.name == "mixed_bfloat16"
    assert tiny_classifier.backbone.dtype_policy.name == "float32"  # the original is kept
    for a, b in zip(tiny_classifier.weights, fast.weights, strict=True):
        assert b.dtype == "float32"
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # bfloat16 keeps 8 bits of mantissa: the logits move off the float32 ones by a
    # rounding amount, no more.
    reference = tiny_classifier.predict(texts, verbose=0)
    logits = fast.predict(texts, verbose=0)
    assert str(logits.dtype) == "bfloat16"
    logits = logits.astype("float32")
    assert not np.array_equal(logits, reference)
    np.testing.assert_allclose(logits, reference, atol=0.05)
    for bad in ("bfloat16", "no_such_policy", None):
        with pytest.raises(ValueError, match="`policy`"):
            with_dtype_policy(tiny_classifier, bad)
