"""The recipe's data: examples of each split (read once) and the `tf.data` pipelines over them."""

from __future__ import annotations

from typing import Any

from keras_bertopt.recipe.config import RecipeConfig
from keras_bertopt.texts import as_strings

#: Splits that can serve as held-out data, in order of preference.
HELD_OUT = ("validation", "test")


class RecipeData:
    """Examples of the config's data source, cached per split, and datasets over them."""

    def __init__(self, config: RecipeConfig) -> None:
        self.config = config
        self._examples: dict[str, tuple[Any, list[int]]] = {}
        #: The batch size `data.batch_size: auto` resolved to (set by the recipe).
        self.chosen_batch_size: int | None = None

    @property
    def batch_size(self) -> int:
        """`data.batch_size`, or what ``auto`` resolved to."""
        size = self.config.data.batch_size
        if size != "auto":
            return int(size)
        if self.chosen_batch_size is None:
            raise RuntimeError("data.batch_size is 'auto' and has not been measured yet")
        return self.chosen_batch_size

    def examples(self, split: str, limit: int | None) -> tuple[Any, list[int]]:
        """``(texts, labels)`` of `split`, at most `limit` (texts: a list or a pair of lists)."""
        key = f"{split}:{limit}"
        if key not in self._examples:
            self._examples[key] = self._read(split, limit)
        return self._examples[key]

    def _read(self, split: str, limit: int | None) -> tuple[Any, list[int]]:
        from keras_bertopt import data

        d = self.config.data
        if d.source == "demo":
            texts, labels = data.demo_examples(split)
            if limit is not None:
                texts, labels = texts[:limit], labels[:limit]
            return texts, labels
        if d.source == "files":
            path = getattr(d, split)
            if path is None:
                raise ValueError(f"config key 'data.{split}' is not set")
            return data.read_file(
                path, d.text_column, d.label_column,
                num_classes=self.config.model.num_classes, limit=limit,
            )
        return self._tfds(split, limit)

    def _tfds(self, split: str, limit: int | None) -> tuple[Any, list[int]]:
        from keras_bertopt import data

        d = self.config.data
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
        return self.examples("train", self.config.data.train_limit)

    def eval_examples(self, split: str) -> tuple[Any, list[int]]:
        """An evaluation split, capped at `data.eval_limit` (train at `data.train_limit`)."""
        if split == "train":
            return self.train_examples()
        return self.examples(split, self.config.data.eval_limit)

    def has_split(self, split: str) -> bool:
        """Whether the source has `split` (file sources only have the files given)."""
        d = self.config.data
        if d.source == "files":
            return getattr(d, split) is not None
        return True

    def held_out_split(self) -> str | None:
        """The first of validation / test the source has."""
        return next((s for s in HELD_OUT if self.has_split(s)), None)

    def dataset(self, texts: Any, labels: list[int], *, shuffle: bool, repeat: bool) -> Any:
        """A batched ``(text, label)`` dataset (`batch_size`, seeded by `seed`)."""
        from keras_bertopt import data

        ds = data.from_examples(
            texts, labels, self.batch_size, shuffle=shuffle, seed=self.config.seed
        )
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
                                     seed=self.config.seed).repeat()

    def validation_data(self) -> Any:
        """`fit(validation_data=...)`: the held-out split, or None when there is none."""
        split = self.held_out_split()
        if split is None:
            return None
        texts, labels = self.eval_examples(split)
        return self.dataset(texts, labels, shuffle=False, repeat=False)

    def representative_data(self) -> Any:
        """Inputs of the first `export.representative_batches` training batches (int8 ranges)."""
        texts, labels = self.train_examples()
        ds = self.dataset(texts, labels, shuffle=False, repeat=False)
        return ds.map(lambda x, y: x).take(self.config.export.representative_batches)

    def steps(self, steps_per_epoch: int | None) -> int:
        """`steps_per_epoch`, or one pass over the training split when None."""
        if steps_per_epoch is not None:
            return steps_per_epoch
        n = len(self.train_examples()[1])
        return max(1, -(-n // self.batch_size))
