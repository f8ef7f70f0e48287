"""The run's new model and the settings measured on it once per run.

`new_model` builds the classifier of `config.model`; `sequence_length` and
`batch_size` measure what the config leaves unset (``model.sequence_length:
null``, ``data.batch_size: auto``). The runner records both in ``state.json``.

```python
model = new_model(config, None, strategy)
length, report = sequence_length(model, train_texts)
```
"""

from __future__ import annotations

from typing import Any


def new_model(config: Any, measured_length: int | None, strategy: Any) -> Any:
    """A new classifier of `config.model` (packed length: the config's, the measured one,
    or 128 until measured), built in `strategy`'s scope."""
    from keras_bertopt import models
    from keras_bertopt.recipe.sections import resolve_model_source

    m = config.model
    length = m.sequence_length or measured_length
    if m.source == "tiny":
        source: Any = models.TinyConfig(
            **m.tiny.model_dump(), max_sequence_length=max(128, length or 0), seed=config.seed)
    else:
        source = resolve_model_source(m.source)
    with strategy.scope():
        return models.build_classifier(source, m.num_classes, length or 128, dropout=m.dropout)


def sequence_length(model: Any, texts: Any) -> tuple[int, Any]:
    """`length_report(texts).suggest(0.01)` within the model's position table, and the report."""
    from keras_bertopt.lengths import length_report

    positions = int(model.backbone.max_sequence_length)
    candidates = [c for c in (32, 64, 128, 256, 512) if c <= positions] or [positions]
    report = length_report(texts, model.preprocessor, candidates=candidates)
    return report.suggest(0.01) or candidates[-1], report


def batch_size(model: Any, limit: int, strategy: Any) -> Any:
    """`find_batch_size` on `model` at its sequence length (weights restored after)."""
    import keras

    from keras_bertopt.batch_size import find_batch_size
    from keras_bertopt.recipe.training import compile_classifier

    with strategy.scope():
        compile_classifier(model, keras.optimizers.AdamW(1e-5))
    return find_batch_size(model, int(model.preprocessor.sequence_length), limit=limit)
