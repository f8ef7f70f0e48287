"""The Hugging Face BERT checkpoint directory: check and read it, write one from keras-hub.

A checkpoint directory holds ``config.json``, ``model.safetensors`` and
``vocab.txt`` (`HF_CHECKPOINT_FILES`). `check_checkpoint_dir` and
`read_checkpoint_config` validate one before keras-hub's converter reads it
(`keras_bertopt.models.build_classifier`); `save_hf_checkpoint` writes a
keras-hub BERT back out with Hugging Face parameter names (`hf_state_dict`).

```python
from keras_bertopt.hf_checkpoint import read_checkpoint_config, save_hf_checkpoint
save_hf_checkpoint(model.backbone, model.preprocessor.tokenizer, "my_bert_hf")
read_checkpoint_config("my_bert_hf")["num_hidden_layers"]   # == model.backbone.num_layers
```
"""

from __future__ import annotations

import json
import os
from typing import Any, Union

from keras_bertopt import _compat
from keras_bertopt.texts import SPECIAL_TOKENS

#: Files keras-hub needs to read a Hugging Face BERT checkpoint directory.
HF_CHECKPOINT_FILES = ("config.json", "model.safetensors", "vocab.txt")




def check_checkpoint_dir(path: Union[str, os.PathLike[str]]) -> str:
    """Return `path` if it is a Hugging Face BERT checkpoint directory, else raise.

    Raises:
        FileNotFoundError: naming the directory and every missing file.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"`source` {path!r} is not a directory")
    missing = [f for f in HF_CHECKPOINT_FILES if not os.path.isfile(os.path.join(path, f))]
    if missing:
        raise FileNotFoundError(
            f"`source` {path!r} is not a Hugging Face BERT checkpoint directory: "
            f"missing {', '.join(missing)} (expected {', '.join(HF_CHECKPOINT_FILES)})"
        )
    return path


def read_checkpoint_config(path: Union[str, os.PathLike[str]]) -> dict[str, Any]:
    """The `config.json` of a Hugging Face BERT checkpoint directory, validated.

    Raises:
        FileNotFoundError: `path` is not a checkpoint directory (names the missing files).
        ValueError: config.json is not JSON, is not a BERT config, or lacks a size field.
    """
    path = check_checkpoint_dir(path)
    config_path = os.path.join(path, "config.json")
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{config_path}: not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("model_type") != "bert":
        got = config.get("model_type") if isinstance(config, dict) else type(config).__name__
        raise ValueError(
            f'{config_path}: expected a BERT checkpoint ("model_type": "bert"), got {got!r}'
        )
    missing = [k for k in _HF_CONFIG_KEYS if k not in config]
    if missing:
        raise ValueError(f"{config_path}: missing field(s) {', '.join(missing)}")
    return config


#: config.json fields keras-hub reads to size a BertBackbone.
_HF_CONFIG_KEYS = (
    "vocab_size",
    "num_hidden_layers",
    "num_attention_heads",
    "hidden_size",
    "intermediate_size",
    "max_position_embeddings",
)


def _to_numpy(variable: Any) -> Any:
    import keras
    import numpy as np

    return np.ascontiguousarray(keras.ops.convert_to_numpy(variable))


def hf_state_dict(backbone: Any) -> dict[str, Any]:
    """A keras-hub `BertBackbone`'s weights as numpy arrays under Hugging Face BERT names.

    The exact inverse of keras-hub's `convert_bert.convert_weights`: kernels are
    transposed to PyTorch's [out, in] layout and attention kernels flattened
    over heads. Accepts a task too (uses its `.backbone`).
    """
    import numpy as np

    backbone = getattr(backbone, "backbone", backbone)
    weights: dict[str, Any] = {}

    def put(name: str, value: Any) -> None:
        weights[name] = np.ascontiguousarray(value)

    put(
        "embeddings.word_embeddings.weight",
        _to_numpy(backbone.get_layer("token_embedding").embeddings),
    )
    put(
        "embeddings.position_embeddings.weight",
        _to_numpy(backbone.get_layer("position_embedding").position_embeddings),
    )
    put(
        "embeddings.token_type_embeddings.weight",
        _to_numpy(backbone.get_layer("segment_embedding").embeddings),
    )
    norm = backbone.get_layer("embeddings_layer_norm")
    put("embeddings.LayerNorm.weight", _to_numpy(norm.gamma))
    put("embeddings.LayerNorm.bias", _to_numpy(norm.beta))
    for i in range(backbone.num_layers):
        block = _compat.encoder_sublayers(backbone.get_layer(f"transformer_layer_{i}"))
        attn = block["attention"]
        prefix = f"encoder.layer.{i}."
        for hf_name, dense in (
            ("attention.self.query", attn.query_dense),
            ("attention.self.key", attn.key_dense),
            ("attention.self.value", attn.value_dense),
        ):
            kernel = _to_numpy(dense.kernel)  # (hidden, heads, head_dim)
            put(prefix + hf_name + ".weight", kernel.reshape(kernel.shape[0], -1).T)
            put(prefix + hf_name + ".bias", _to_numpy(dense.bias).reshape(-1))
        kernel = _to_numpy(attn.output_dense.kernel)  # (heads, head_dim, hidden)
        put(prefix + "attention.output.dense.weight", kernel.reshape(-1, kernel.shape[-1]).T)
        put(prefix + "attention.output.dense.bias", _to_numpy(attn.output_dense.bias))
        for hf_name, key in (("attention.output.LayerNorm", "attention_norm"),
                             ("output.LayerNorm", "output_norm")):
            put(prefix + hf_name + ".weight", _to_numpy(block[key].gamma))
            put(prefix + hf_name + ".bias", _to_numpy(block[key].beta))
        for hf_name, key in (("intermediate.dense", "intermediate"), ("output.dense", "output")):
            put(prefix + hf_name + ".weight", _to_numpy(block[key].kernel).T)
            put(prefix + hf_name + ".bias", _to_numpy(block[key].bias))
    pooled = backbone.get_layer("pooled_dense")
    put("pooler.dense.weight", _to_numpy(pooled.kernel).T)
    put("pooler.dense.bias", _to_numpy(pooled.bias))
    return weights


def _vocabulary_and_case(vocabulary: Any, lowercase: bool | None) -> tuple[list[str], bool]:
    """The word pieces and do_lower_case of a vocabulary list, vocab.txt path or tokenizer."""
    if hasattr(vocabulary, "get_vocabulary"):
        if lowercase is None:
            lowercase = bool(getattr(vocabulary, "lowercase", True))
        vocab = list(vocabulary.get_vocabulary())
    elif isinstance(vocabulary, (str, os.PathLike)):
        with open(vocabulary, encoding="utf-8") as f:
            vocab = [line.rstrip("\n") for line in f]
    else:
        vocab = list(vocabulary)
    return vocab, True if lowercase is None else bool(lowercase)


def _hf_config(backbone: Any, vocab: list[str]) -> dict[str, Any]:
    """The Hugging Face config.json of a keras-hub `BertBackbone`."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": backbone.vocabulary_size,
        "hidden_size": backbone.hidden_dim,
        "num_hidden_layers": backbone.num_layers,
        "num_attention_heads": backbone.num_heads,
        "intermediate_size": backbone.intermediate_dim,
        "max_position_embeddings": backbone.max_sequence_length,
        "type_vocab_size": backbone.num_segments,
        # keras-hub's BERT uses the tanh approximation of GELU ("gelu_new" in transformers).
        "hidden_act": "gelu_new",
        "hidden_dropout_prob": backbone.dropout,
        "attention_probs_dropout_prob": backbone.dropout,
        "layer_norm_eps": 1e-12,
        "initializer_range": 0.02,
        "pad_token_id": vocab.index("[PAD]"),
    }


def save_hf_checkpoint(
    backbone: Any,
    vocabulary: Any,
    directory: Union[str, os.PathLike[str]],
    *,
    lowercase: bool | None = None,
) -> str:
    """Write a keras-hub BERT as a Hugging Face checkpoint directory.

    The directory holds config.json (``"model_type": "bert"``), model.safetensors
    (HF parameter names, see `hf_state_dict`), vocab.txt and
    tokenizer_config.json; `build_classifier(directory, ...)` (and keras-hub's
    ``from_preset``) read it back with the same weights. It is written
    atomically (a temporary folder renamed onto `directory`).

    Example:

    ```python
    model = build_classifier(TinyConfig(), num_classes=2, sequence_length=32)
    save_hf_checkpoint(model.backbone, model.preprocessor.tokenizer, "tiny_bert_hf")
    again = build_classifier("tiny_bert_hf", num_classes=2, sequence_length=32)
    ```

    Args:
        backbone: a `keras_hub.models.BertBackbone` (or a task holding one).
        vocabulary: a list of word pieces, a path to a vocab.txt, or a keras-hub
            `BertTokenizer` (its vocabulary and lowercase setting are used).
        directory: the folder to create (replaced if it exists).
        lowercase: the tokenizer's do_lower_case; default: the tokenizer's
            setting, else True.

    Returns:
        `directory` as a string.
    """
    import keras_hub
    from safetensors.numpy import save_file

    from keras_bertopt.files import atomic_output

    backbone = getattr(backbone, "backbone", backbone)
    if not isinstance(backbone, keras_hub.models.BertBackbone):
        raise ValueError(
            f"`backbone` must be a keras_hub.models.BertBackbone, got {type(backbone).__name__}"
        )
    vocab, lowercase = _vocabulary_and_case(vocabulary, lowercase)
    if len(vocab) != backbone.vocabulary_size:
        raise ValueError(
            f"`vocabulary` has {len(vocab)} entries but the backbone's vocabulary_size is "
            f"{backbone.vocabulary_size}"
        )
    missing = [t for t in SPECIAL_TOKENS[:4] if t not in vocab]
    if missing:
        raise ValueError(f"`vocabulary` lacks the BERT special tokens {missing}")
    config = _hf_config(backbone, vocab)
    tokenizer_config = {"do_lower_case": bool(lowercase), "tokenizer_class": "BertTokenizer"}
    directory = os.fspath(directory)
    with atomic_output(directory, directory=True) as tmp:
        with open(os.path.join(tmp, "config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)
        with open(os.path.join(tmp, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(tokenizer_config, f, indent=2)
        with open(os.path.join(tmp, "vocab.txt"), "w", encoding="utf-8") as f:
            f.write("".join(token + "\n" for token in vocab))
        save_file(hf_state_dict(backbone), os.path.join(tmp, "model.safetensors"))
    return directory
