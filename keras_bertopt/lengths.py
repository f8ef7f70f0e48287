"""Token lengths of a text set: percentiles and the share each `sequence_length` truncates.

`length_report` picks `sequence_length` from data (exposed as
`keras_bertopt.data.length_report`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from keras_bertopt.texts import text_columns

#: Percentiles `length_report` reports.
LENGTH_PERCENTILES = (50, 90, 95, 99)


@dataclasses.dataclass
class LengthReport:
    """Token lengths of a text set (special tokens included) and truncation per length.

    Attributes:
        count: number of examples.
        segments: texts per example (1, or 2 for sentence pairs).
        special_tokens: special tokens added per example ([CLS] + one [SEP] per segment).
        mean: mean length.
        percentiles: {percentile: length}, for 50/90/95/99 and "max".
        truncated: {sequence_length: share of examples longer than it}.
    """

    count: int
    segments: int
    special_tokens: int
    mean: float
    percentiles: dict[Any, int]
    truncated: dict[int, float]

    def suggest(self, max_truncated: float = 0.01) -> int | None:
        """The smallest candidate length truncating at most `max_truncated` of examples."""
        for length in sorted(self.truncated):
            if self.truncated[length] <= max_truncated:
                return length
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (keys as strings)."""
        return {
            "count": self.count,
            "segments": self.segments,
            "special_tokens": self.special_tokens,
            "mean": round(self.mean, 2),
            "percentiles": {
                f"p{k}" if k != "max" else "max": v for k, v in self.percentiles.items()
            },
            "truncated_share": {str(k): round(v, 6) for k, v in self.truncated.items()},
            "suggested_sequence_length_1pct": self.suggest(0.01),
        }

    def __str__(self) -> str:
        pct = ", ".join(
            f"{'p' + str(k) if k != 'max' else 'max'} {v}" for k, v in self.percentiles.items()
        )
        lines = [
            f"{self.count} examples, tokens incl. {self.special_tokens} special: "
            f"mean {self.mean:.1f}, {pct}",
            "sequence_length  truncated",
        ]
        for length, share in sorted(self.truncated.items()):
            lines.append(f"{length:>15}  {100 * share:8.2f}%")
        return "\n".join(lines)


def _token_counts(tokenizer: Any, texts: list[str], batch_size: int = 2048) -> Any:
    import numpy as np
    import tensorflow as tf

    counts = []
    for start in range(0, len(texts), batch_size):
        ids = tokenizer(tf.constant(texts[start : start + batch_size]))
        if isinstance(ids, tf.RaggedTensor):
            counts.append(ids.row_lengths().numpy())
        elif isinstance(ids, list):  # keras-hub tokenizers return lists in eager mode
            counts.append(np.array([len(row) for row in ids], dtype=np.int64))
        else:  # a dense result means the tokenizer pads to a fixed length
            raise ValueError(
                "the tokenizer returned padded ids: pass a tokenizer without `sequence_length`"
            )
    return np.concatenate(counts).astype(np.int64)


def length_report(
    texts_or_dataset: Any,
    preprocessor_or_tokenizer: Any,
    candidates: Sequence[int] = (32, 64, 128, 256, 512),
) -> LengthReport:
    """Token-length percentiles and the share of examples each `sequence_length` would truncate.

    Lengths count the special tokens the BERT preprocessor adds ([CLS] and a
    [SEP] after each segment: 2 for single texts, 3 for pairs), so an example
    is truncated at `sequence_length` L exactly when its length is > L.

    Example:

    ```python
    texts, _ = keras_bertopt.data.read_file("sst2/train.tsv", "sentence", "label")
    report = keras_bertopt.data.length_report(texts, model.preprocessor)
    print(report)            # percentiles + truncated share per candidate length
    report.suggest(0.01)     # smallest candidate truncating <= 1% of examples
    ```

    Args:
        texts_or_dataset: a list of strings, a list of string pairs, a tuple of
            two lists, or a tf.data.Dataset of texts or (texts, label) batches.
        preprocessor_or_tokenizer: a keras-hub text classifier preprocessor
            (its `.tokenizer` is used) or a tokenizer returning ragged ids.
        candidates: sequence lengths to report the truncated share of.
    """
    tokenizer = getattr(preprocessor_or_tokenizer, "tokenizer", preprocessor_or_tokenizer)
    if not callable(tokenizer):
        raise ValueError(
            "`preprocessor_or_tokenizer` must be a keras-hub preprocessor or tokenizer, got "
            f"{type(preprocessor_or_tokenizer).__name__}"
        )
    candidates = sorted(set(candidates))
    if not candidates or not all(isinstance(c, int) and c >= 1 for c in candidates):
        raise ValueError(f"`candidates` must be positive integers, got {candidates!r}")
    import numpy as np

    columns = text_columns(texts_or_dataset, "texts_or_dataset")
    special = 1 + len(columns)
    lengths = sum(_token_counts(tokenizer, column) for column in columns) + special
    percentiles: dict[Any, int] = {
        p: int(np.percentile(lengths, p, method="higher")) for p in LENGTH_PERCENTILES
    }
    percentiles["max"] = int(lengths.max())
    truncated = {c: float(np.mean(lengths > c)) for c in candidates}
    return LengthReport(
        count=int(lengths.size),
        segments=len(columns),
        special_tokens=special,
        mean=float(lengths.mean()),
        percentiles=percentiles,
        truncated=truncated,
    )
