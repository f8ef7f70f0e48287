"""The built-in demo: a small sentiment task and its word-piece vocabulary, with no download.

Pure Python (no TensorFlow, no Keras), so `models` (the tiny BERT's default
vocabulary) and `data` (`data.demo_dataset`) both build on it without importing
each other.

Example:

```python
texts, labels = keras_bertopt.demo.demo_examples("train")
vocab = keras_bertopt.demo.demo_vocabulary()   # what models.TinyConfig() uses
```
"""

from __future__ import annotations

import random

from keras_bertopt.texts import SPECIAL_TOKENS

_POSITIVE = (
    "good",
    "great",
    "excellent",
    "fun",
    "loved",
    "wonderful",
    "best",
    "enjoyable",
    "brilliant",
    "charming",
    "moving",
    "delightful",
)
_NEGATIVE = (
    "bad",
    "awful",
    "boring",
    "terrible",
    "hated",
    "worst",
    "dull",
    "poor",
    "weak",
    "tedious",
    "mess",
    "painful",
)
_NEUTRAL = (
    "the",
    "movie",
    "film",
    "plot",
    "acting",
    "was",
    "is",
    "a",
    "and",
    "story",
    "really",
    "quite",
    "it",
    "this",
    "cast",
    "ending",
    "script",
    "very",
    "of",
    "an",
)
_NEGATORS = ("not",)

#: Sizes of the built-in demo splits.
DEMO_SIZES = {"train": 2048, "validation": 256, "test": 256}


def demo_vocabulary() -> list[str]:
    """The word-piece vocabulary of the demo data (special tokens first)."""
    return list(SPECIAL_TOKENS) + sorted(set(_POSITIVE + _NEGATIVE + _NEUTRAL + _NEGATORS))


def demo_examples(split: str = "train", size: int | None = None) -> tuple[list[str], list[int]]:
    """Texts and labels (1 positive, 0 negative) of a demo split, deterministic per split.

    Each sentence mixes neutral words with sentiment words; the label is the
    polarity of the majority of sentiment words, and "not" flips the word that
    follows it, so the task needs more than a bag of words to be solved fully.
    """
    if split not in DEMO_SIZES:
        raise ValueError(f"`split` must be one of {sorted(DEMO_SIZES)}, got {split!r}")
    size = DEMO_SIZES[split] if size is None else size
    rng = random.Random(f"keras_bertopt-demo-{split}")
    texts, labels = [], []
    for i in range(size):
        label = i % 2
        words = [rng.choice(_NEUTRAL) for _ in range(rng.randint(3, 8))]
        n_major = rng.randint(1, 3)
        n_minor = rng.randint(0, n_major - 1)
        major, minor = (_POSITIVE, _NEGATIVE) if label else (_NEGATIVE, _POSITIVE)
        cues = [rng.choice(major) for _ in range(n_major)] + [
            rng.choice(minor) for _ in range(n_minor)
        ]
        if rng.random() < 0.15:
            cues.append("not " + rng.choice(minor))
        for cue in cues:
            words.insert(rng.randint(0, len(words)), cue)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels
