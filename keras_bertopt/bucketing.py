"""Length-bucketed batches: train on tensors padded to the batch, not to the longest text.

Two halves, usable apart:

* `bucket_by_length` groups examples of similar packed token length into
  batches (raw strings and labels, shuffled within a window first, so batches
  stay random across epochs). It takes in-memory texts or any `(features,
  label)` dataset of the `keras_bertopt.data` loaders (files, tfds GLUE, demo).
* `DynamicPaddingPreprocessor` (made from a model's keras-hub preprocessor
  with `dynamic_padding`) packs each batch only to its bucket bound (or its
  longest member), so the preprocessor and `fit` see short tensors.

With both, a batch of 10-token sentences costs a 16-token step, not a 64-token
one, and `fit` sees at most ``len(bounds)`` sequence lengths (XLA compiles one
program per length; TensorFlow traces the step once, as the length dimension is
unknown to it).

`padding_report` and `count_step_traces` (in `keras_bertopt.padding_stats`,
importable from here too) measure the padding and the traces.

Example:

```python
import keras_bertopt as kb

model = kb.models.build_classifier(kb.models.TinyConfig(), 2, sequence_length=64)
kb.data.dynamic_padding(model)                     # pads each batch to its bucket
texts, labels = kb.data.demo_examples("train")
train = kb.data.bucket_by_length((texts, labels), model.preprocessor, batch_size=32)
model.compile(optimizer="adamw",
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(train, epochs=2)
```
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import keras_hub

from keras_bertopt.padding_stats import PaddingReport as PaddingReport
from keras_bertopt.padding_stats import count_step_traces as count_step_traces
from keras_bertopt.padding_stats import padding_report as padding_report

#: Default bucket bounds (packed tokens); those below the preprocessor's
#: `sequence_length` are used, plus the `sequence_length` itself.
DEFAULT_BOUNDS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)

_PAD_TO = ("bucket", "longest")


def bucket_bounds(sequence_length: int, bounds: Sequence[int] | None = None) -> tuple[int, ...]:
    """The sorted bucket bounds for a preprocessor packing to `sequence_length`.

    Bounds at or above `sequence_length` are dropped and `sequence_length` is
    always the last bound (no example is packed longer than it).
    """
    if isinstance(sequence_length, bool) or not isinstance(sequence_length, int):
        raise ValueError(f"`sequence_length` must be an integer >= 2, got {sequence_length!r}")
    if sequence_length < 2:
        raise ValueError(f"`sequence_length` must be an integer >= 2, got {sequence_length!r}")
    chosen = DEFAULT_BOUNDS if bounds is None else tuple(bounds)
    if not chosen or not all(
        isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in chosen
    ):
        raise ValueError(f"`bounds` must be positive integers, got {bounds!r}")
    return tuple(sorted({b for b in chosen if b < sequence_length} | {sequence_length}))


def _preprocessor_of(model_or_preprocessor: Any) -> Any:
    layer = getattr(model_or_preprocessor, "preprocessor", None) or model_or_preprocessor
    tokenizer = getattr(layer, "tokenizer", None)
    length = getattr(layer, "sequence_length", None)
    if tokenizer is None or not isinstance(length, int):
        raise ValueError(
            "`preprocessor` must be a keras-hub text classifier preprocessor (with `tokenizer` "
            "and an integer `sequence_length`) or a task carrying one, got "
            f"{type(model_or_preprocessor).__name__}"
        )
    return layer


# --------------------------------------------------------------------------------------
# Dynamic padding: the preprocessor packs each batch to its bucket
# --------------------------------------------------------------------------------------


def _trim_features(features: dict[str, Any], bounds: tuple[int, ...], pad_to: str) -> Any:
    """Slice packed features to the batch's bucket bound (or longest member)."""
    import tensorflow as tf

    mask = tf.convert_to_tensor(features["padding_mask"])
    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=-1)
    longest = tf.reduce_max(lengths) if mask.shape.rank == 2 else lengths
    if pad_to == "bucket":
        table = tf.constant(bounds, dtype=tf.int32)
        index = tf.searchsorted(table, tf.reshape(longest, [1]), side="left")[0]
        keep = tf.gather(table, tf.minimum(index, len(bounds) - 1))
    else:
        keep = tf.maximum(longest, 1)
    return {key: value[..., :keep] for key, value in features.items()}


@keras.saving.register_keras_serializable(package="keras_bertopt")
class DynamicPaddingPreprocessor(keras_hub.models.BertTextClassifierPreprocessor):
    """A `BertTextClassifierPreprocessor` that pads each batch only to its bucket.

    It packs as keras-hub does (same tokenizer, truncation at `sequence_length`),
    then keeps the first `b` positions, where `b` is the smallest of `bounds`
    holding the batch's longest packed example (``pad_to="bucket"``) or that
    longest length itself (``"longest"``). The positions cut are padding only,
    so the model's outputs equal those with fixed padding; only the work
    shrinks. Put it into a task with `dynamic_padding(model)`.

    Example:

    ```python
    pre = DynamicPaddingPreprocessor(tokenizer=model.preprocessor.tokenizer,
                                     sequence_length=128)
    pre(["a short one", "and a second, slightly longer sentence"])["token_ids"].shape
    # (2, 16): the smallest bound holding the longest of the two
    ```

    Args:
        bounds: bucket bounds (see `bucket_bounds`); default `DEFAULT_BOUNDS`.
        pad_to: ``"bucket"`` (few distinct shapes) or ``"longest"``.
        **kwargs: `BertTextClassifierPreprocessor` arguments.
    """

    def __init__(
        self, bounds: Sequence[int] | None = None, pad_to: str = "bucket", **kwargs: Any
    ) -> None:
        if pad_to not in _PAD_TO:
            raise ValueError(f"`pad_to` must be one of {_PAD_TO}, got {pad_to!r}")
        super().__init__(**kwargs)
        self.bounds = bucket_bounds(self.sequence_length, bounds)
        self.pad_to = pad_to

    def call(self, x: Any, y: Any = None, sample_weight: Any = None) -> Any:
        out = super().call(x, y=y, sample_weight=sample_weight)
        features, label, weight = keras.utils.unpack_x_y_sample_weight(out)
        features = _trim_features(features, self.bounds, self.pad_to)
        return keras.utils.pack_x_y_sample_weight(features, label, weight)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "bounds": list(self.bounds), "pad_to": self.pad_to}


def dynamic_padding(
    model_or_preprocessor: Any, bounds: Sequence[int] | None = None, pad_to: str = "bucket"
) -> Any:
    """A `DynamicPaddingPreprocessor` with the same tokenizer and limits as the given one.

    Given a keras-hub task, it also replaces the task's preprocessor (so `fit`,
    `evaluate` and `predict` on raw strings pad per batch) and returns the new
    preprocessor; keep the old one (``old = model.preprocessor``) to put it back
    before saving a file for tools expecting fixed-length inputs.

    Raises:
        ValueError: not a BERT text classifier preprocessor (or task with one), or
            bad `bounds` / `pad_to`, before anything changes.
    """
    layer = _preprocessor_of(model_or_preprocessor)
    if not isinstance(layer, keras_hub.models.BertTextClassifierPreprocessor):
        raise ValueError(
            "`model_or_preprocessor` must hold a keras_hub BertTextClassifierPreprocessor, got "
            f"{type(layer).__name__}"
        )
    if pad_to not in _PAD_TO:
        raise ValueError(f"`pad_to` must be one of {_PAD_TO}, got {pad_to!r}")
    new = DynamicPaddingPreprocessor(
        bounds=bounds,
        pad_to=pad_to,
        tokenizer=layer.tokenizer,
        sequence_length=layer.sequence_length,
        truncate=layer.truncate,
    )
    if layer is not model_or_preprocessor:
        model_or_preprocessor.preprocessor = new
    return new


# --------------------------------------------------------------------------------------
# Bucketed batches of raw examples
# --------------------------------------------------------------------------------------


def _length_fn(preprocessor: Any) -> Any:
    """A tf function: batch of features -> packed lengths (special tokens in, capped)."""
    import tensorflow as tf

    tokenizer = preprocessor.tokenizer
    cap = preprocessor.sequence_length

    def lengths(features: Any) -> Any:
        parts = features if isinstance(features, tuple) else (features,)
        total = tf.zeros(tf.shape(parts[0])[:1], tf.int32)
        for part in parts:
            ids = tokenizer(part)
            if not isinstance(ids, tf.RaggedTensor):
                raise ValueError(
                    "the tokenizer returned padded ids: bucketing needs one without "
                    "`sequence_length`"
                )
            total += tf.cast(ids.row_lengths(), tf.int32)
        return tf.minimum(total + 1 + len(parts), cap)

    return lengths


def _as_dataset(data: Any) -> tuple[Any, bool]:
    """(unbatched dataset of (features, label), whether the input was a dataset)."""
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if not isinstance(spec, tuple) or len(spec) != 2:
            raise ValueError(
                "`data` must yield (features, label) pairs as the keras_bertopt.data loaders "
                f"do, got elements of {spec}"
            )
        batched = spec[1].shape.rank is not None and spec[1].shape.rank >= 1
        return (data.unbatch() if batched else data), True
    if not isinstance(data, tuple) or len(data) != 2:
        raise ValueError(
            "`data` must be a tf.data.Dataset of (features, label) or a (texts, labels) tuple, "
            f"got {type(data).__name__}"
        )
    texts, labels = data
    if isinstance(texts, tuple):
        if len(texts) != 2 or len(texts[0]) != len(texts[1]):
            raise ValueError("`data`: text pairs must be two lists of equal length")
        count = len(texts[0])
    else:
        count = len(texts)
    if count != len(labels) or count == 0:
        raise ValueError(
            f"`data`: texts and labels must be non-empty and equally long, got {count} "
            f"texts and {len(labels)} labels"
        )
    label_dtype = tf.float32 if any(isinstance(v, float) for v in labels) else tf.int32
    return tf.data.Dataset.from_tensor_slices((texts, tf.constant(labels, label_dtype))), False


def bucket_by_length(
    data: Any,
    preprocessor: Any,
    batch_size: int = 32,
    *,
    bounds: Sequence[int] | None = None,
    shuffle: bool = True,
    shuffle_window: int = 10_000,
    seed: int | None = 0,
    drop_remainder: bool = False,
) -> Any:
    """Batches of examples of similar packed token length, as `(features, label)` raw data.

    Each example goes to the first bucket whose bound holds its packed length
    ([CLS] + tokens + one [SEP] per segment; for pairs both segments together,
    as `BertTextClassifierPreprocessor` packs them), capped at the
    preprocessor's `sequence_length`. Every example appears exactly once per
    pass; the last batch of each bucket may be short unless `drop_remainder`.
    With `shuffle`, examples are shuffled within `shuffle_window` (reshuffled
    every epoch) before bucketing, so batch contents and order change between
    epochs. Pair with `dynamic_padding(model)` so the model's preprocessor pads
    each batch only to its bucket. Under a `tf.distribute` strategy,
    `batch_size` is the global batch (Keras splits it over the replicas); a
    short last batch split unevenly over the replicas weighs its examples
    slightly differently than one device would (Keras averages per-replica mean
    losses), which `drop_remainder=True` avoids.

    Example:

    ```python
    train = kb.data.bucket_by_length(
        kb.data.load_file("sst2/train.tsv", "sentence", "label"), model.preprocessor, 32)
    ```

    Args:
        data: a `(texts, labels)` tuple (texts a list of strings, or a tuple of
            two lists for pairs) or a `tf.data.Dataset` of `(features, label)`,
            batched or not (any `keras_bertopt.data` loader's output).
        preprocessor: the keras-hub preprocessor (or a task carrying one) whose
            tokenizer measures lengths.
        batch_size: examples per batch.
        bounds: bucket bounds, see `bucket_bounds` (default `DEFAULT_BOUNDS`).
        shuffle: shuffle examples before bucketing.
        shuffle_window: shuffle examples before bucketing.
        seed: shuffle examples before bucketing.
        drop_remainder: drop the short last batch of each bucket.

    Returns:
        A `tf.data.Dataset` of `(features, label)` batches.

    Raises:
        ValueError: bad arguments, before any data is read.
    """
    import tensorflow as tf

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}")
    if not isinstance(shuffle_window, int) or shuffle_window < 1:
        raise ValueError(f"`shuffle_window` must be an integer >= 1, got {shuffle_window!r}")
    layer = _preprocessor_of(preprocessor)
    table = bucket_bounds(layer.sequence_length, bounds)
    ds, _ = _as_dataset(data)
    if shuffle:
        ds = ds.shuffle(shuffle_window, seed=seed, reshuffle_each_iteration=True)
    lengths = _length_fn(layer)
    ds = (
        ds.batch(256)
        .map(lambda x, y: (x, y, lengths(x)), num_parallel_calls=tf.data.AUTOTUNE)
        .unbatch()
    )
    ds = ds.bucket_by_sequence_length(
        element_length_func=lambda x, y, n: n,
        # tf's buckets are [0, b0), [b0, b1), ...: a length equal to a bound stays in its bucket.
        bucket_boundaries=[b + 1 for b in table[:-1]],
        bucket_batch_sizes=[batch_size] * len(table),
        drop_remainder=drop_remainder,
    )
    return ds.map(lambda x, y, n: (x, y)).prefetch(tf.data.AUTOTUNE)
