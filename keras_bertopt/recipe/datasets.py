"""The recipe's data: examples of each split (read once) and the `tf.data` pipelines over them."""

from __future__ import annotations

from typing import Any

from keras_bertopt.recipe.sections import DataConfig
from keras_bertopt.texts import as_strings

#: Splits that can serve as held-out data, in order of preference.
HELD_OUT = ("validation", "test")


class RecipeData:
    """Examples of a `DataConfig`'s source, cached per split, and datasets over them.

    `batch_size` is the config's, or (``auto``) the measured size the runner sets.
    """

    def __init__(self, config: DataConfig, num_classes: int, seed: int) -> None:
        self.config = config
        self.num_classes = num_classes
        self.seed = seed
        self._examples: dict[str, tuple[Any, list[int]]] = {}
        self._batch_size: int | None = None if config.batch_size == "auto" else config.batch_size

    @property
    def batch_size(self) -> int:
        """`data.batch_size`, or what ``auto`` resolved to."""
        if self._batch_size is None:
            raise RuntimeError("data.batch_size is 'auto' and has not been measured yet")
        return self._batch_size

    @batch_size.setter
    def batch_size(self, size: int) -> None:
        self._batch_size = int(size)

    @property
    def has_batch_size(self) -> bool:
        """Whether the batch size is known (``auto`` is not until measured)."""
        return self._batch_size is not None

    def examples(self, split: str, limit: int | None) -> tuple[Any, list[int]]:
        """``(texts, labels)`` of `split`, at most `limit` (texts: a list or a pair of lists)."""
        key = f"{split}:{limit}"
        if key not in self._examples:
            self._examples[key] = self._read(split, limit)
        return self._examples[key]

    def _read(self, split: str, limit: int | None) -> tuple[Any, list[int]]:
        from keras_bertopt import data

        d = self.config
        if d.source == "demo":
            texts, labels = data.demo_examples(split)
            if limit is not None:
                texts, labels = texts[:limit], labels[:limit]
            return texts, labels
        if d.source == "files":
            path = getattr(d, split)
            if path is None:
                raise ValueError(f"config key 'data.{split}' is not set")
            return data.read_file(path, d.text_column, d.label_column,
                                  num_classes=self.num_classes, limit=limit)
        return self._tfds(split, limit)

    def _tfds(self, split: str, limit: int | None) -> tuple[Any, list[int]]:
        from keras_bertopt import data

        d = self.config
        ds = data.load_glue(d.name, split, 256, data_dir=d.data_dir, download=d.download,
                            shuffle=False, limit=limit)
        first: list[str] = []
        second: list[str] = []
        labels: list[int] = []
        for features, label in ds.as_numpy_iterator():
            if isinstance(features, tuple):
                first += as_strings(features[0], "data")
                second += as_strings(features[1], "data")
            else:
                first += as_strings(features, "data")
            labels += [int(v) for v in label]
        if not labels:
            raise ValueError(f"config key 'data.name': {d.name!r} split {split!r} is empty")
        if min(labels) < 0:
            raise ValueError(
                f"config key 'evaluate.splits': {d.name!r} split {split!r} has no labels "
                "(GLUE test splits carry -1); evaluate on 'validation'"
            )
        return ((first, second) if second else first), labels

    def train_examples(self) -> tuple[Any, list[int]]:
        """The training split, capped at `data.train_limit`."""
        return self.examples("train", self.config.train_limit)

    def eval_examples(self, split: str) -> tuple[Any, list[int]]:
        """An evaluation split, capped at `data.eval_limit` (train at `data.train_limit`)."""
        if split == "train":
            return self.train_examples()
        return self.examples(split, self.config.eval_limit)

    def held_out_split(self) -> str | None:
        """The first of validation / test the source has."""
        return next((s for s in HELD_OUT if self.config.has_split(s)), None)

    def dataset(self, texts: Any, labels: list[int], *, shuffle: bool, repeat: bool) -> Any:
        """A batched ``(text, label)`` dataset (`batch_size`, seeded by `seed`)."""
        from keras_bertopt import data

        ds = data.from_examples(texts, labels, self.batch_size, shuffle=shuffle, seed=self.seed)
        return ds.repeat() if repeat else ds

    def train_dataset(self, bucket_with: Any = None) -> Any:
        """The training split, shuffled and repeated (`fit` counts `steps_per_epoch`).

        With `bucket_with` (a keras-hub preprocessor), batches hold examples of
        similar packed length (`keras_bertopt.data.bucket_by_length`).
        """
        texts, labels = self.train_examples()
        if bucket_with is None:
            return self.dataset(texts, labels, shuffle=True, repeat=True)
        from keras_bertopt import data

        return data.bucket_by_length((texts, labels), bucket_with, self.batch_size,
                                     seed=self.seed).repeat()

    def validation_data(self) -> Any:
        """`fit(validation_data=...)`: the held-out split, or None when there is none."""
        split = self.held_out_split()
        if split is None:
            return None
        texts, labels = self.eval_examples(split)
        return self.dataset(texts, labels, shuffle=False, repeat=False)

    def representative_data(self, batches: int) -> Any:
        """Inputs of the first `batches` training batches (int8 calibration)."""
        texts, labels = self.train_examples()
        ds = self.dataset(texts, labels, shuffle=False, repeat=False)
        return ds.map(lambda x, y: x).take(batches)

    def steps(self, steps_per_epoch: int | None) -> int:
        """`steps_per_epoch`, or one pass over the training split when None."""
        if steps_per_epoch is not None:
            return steps_per_epoch
        n = len(self.train_examples()[1])
        return max(1, -(-n // self.batch_size))
