"""Students from a teacher: `shrink` (fewer transformer layers, weights copied) and checks.

`shrink` follows DistilBERT's initialisation: the student is the teacher with
some transformer layers left out, every other weight (embeddings, the kept
layers, pooler, classification head) copied exactly. The default keeps
`num_layers` evenly spaced layers including the first and the last
(`evenly_spaced(12, 6) == [0, 2, 4, 7, 9, 11]`, DistilBERT's choice).

`check_student` says, before any training, whether a student can take a
teacher's signal: both must read the same token ids (same vocabulary), give
logits over the same classes, and, for hidden-state / attention distillation,
have comparable layers.
"""

from __future__ import annotations

from typing import Any, Sequence


def evenly_spaced(num_teacher_layers: int, num_layers: int) -> list[int]:
    """`num_layers` indices in ``range(num_teacher_layers)``, evenly spaced, first and last kept.

    ``round(i * (L - 1) / (n - 1))`` (halves rounded up); one layer keeps the last.
    """
    if num_layers == 1:
        return [num_teacher_layers - 1]
    step = (num_teacher_layers - 1) / (num_layers - 1)
    return [int(i * step + 0.5) for i in range(num_layers)]


def unwrap(model: Any) -> Any:
    """The keras-hub task inside `model` (a `QuantizeAwareTextClassifier`'s `.task`), or `model`."""
    from keras_bertopt.quantization.wrapper import QuantizeAwareTextClassifier

    if isinstance(model, QuantizeAwareTextClassifier):
        return model.task
    return model


def bert_backbone(model: Any, argument: str = "model") -> Any:
    """The `keras_hub.models.BertBackbone` of a keras-hub BERT classifier, or a clear error."""
    import keras_hub

    task = unwrap(model)
    backbone = getattr(task, "backbone", None)
    if not isinstance(backbone, keras_hub.models.BertBackbone):
        raise ValueError(
            f"`{argument}` must be a keras-hub BERT classifier (a task whose backbone is a "
            f"keras_hub.models.BertBackbone, e.g. from keras_bertopt.models.build_classifier); "
            f"got {type(model).__name__} with backbone {type(backbone).__name__}"
        )
    return backbone


def resolve_keep_layers(
    num_teacher_layers: int, num_layers: int | None, keep_layers: Sequence[int] | None
) -> list[int]:
    """Check `num_layers` / `keep_layers` against the teacher's depth; return the kept indices."""
    if num_layers is not None and keep_layers is not None:
        raise ValueError("pass `num_layers` or `keep_layers`, not both")
    if keep_layers is not None:
        if isinstance(keep_layers, (str, bytes)) or not hasattr(keep_layers, "__iter__"):
            raise ValueError(f"`keep_layers` must be a list of layer indices, got {keep_layers!r}")
        keep = list(keep_layers)
        bad = [i for i in keep if isinstance(i, bool) or not isinstance(i, int)]
        if bad or not keep:
            raise ValueError(
                f"`keep_layers` must be a non-empty list of integers, got {keep_layers!r}"
            )
        out = [i for i in keep if not 0 <= i < num_teacher_layers]
        if out:
            raise ValueError(
                f"`keep_layers` {keep} has indices out of range {out}: the teacher has "
                f"{num_teacher_layers} transformer layers (valid: 0..{num_teacher_layers - 1})"
            )
        if len(set(keep)) != len(keep):
            raise ValueError(f"`keep_layers` {keep} repeats a layer")
        return keep
    if num_layers is None:
        num_layers = max(1, num_teacher_layers // 2)
    if isinstance(num_layers, bool) or not isinstance(num_layers, int):
        raise ValueError(f"`num_layers` must be an integer, got {num_layers!r}")
    if not 1 <= num_layers <= num_teacher_layers:
        raise ValueError(
            f"`num_layers` must be between 1 and the teacher's {num_teacher_layers} "
            f"transformer layers, got {num_layers}"
        )
    return evenly_spaced(num_teacher_layers, num_layers)


def _copy(source: Any, target: Any) -> None:
    target.set_weights(source.get_weights())


def shrink(
    model: Any, num_layers: int | None = None, keep_layers: Sequence[int] | None = None
) -> Any:
    """A shallower copy of a keras-hub BERT classifier, to train as a distillation student.

    The new classifier has the same class, configuration and preprocessor (the
    same object, so the same vocabulary and sequence length) as `model`, with
    transformer layer ``i`` a copy of teacher layer ``keep_layers[i]``; the
    embeddings, the pooler and the classification head are copied too. `model`
    is not changed. The copy is trainable even when `model` is frozen (a
    `Distiller` freezes its teacher), so ``shrink(model, num_layers=L)`` with
    all `L` layers is a trainable copy of a teacher.

    Example:

    ```python
    student = keras_bertopt.distillation.shrink(teacher, num_layers=3)
    distiller = keras_bertopt.distillation.Distiller(teacher, student)
    ```

    Args:
        model: a keras-hub BERT classifier (e.g. `BertTextClassifier`).
        num_layers: how many layers to keep, evenly spaced (first and last
            included). Default: half the teacher's, rounded down (at least 1).
        keep_layers: exactly which teacher layers to keep, in student order
            (0-based); instead of `num_layers`.

    Returns:
        A new keras-hub classifier of `model`'s class.

    Raises:
        ValueError: `model` is not a keras-hub BERT classifier (a quantize-aware
            model must be shrunk before `quantize_aware`), both or invalid
            `num_layers` / `keep_layers` (out of range, repeated).
    """
    import keras_hub

    from keras_bertopt.models import rebuild_classifier
    from keras_bertopt.quantization.wrapper import is_quantize_aware

    if is_quantize_aware(model):
        raise ValueError(
            "`model` is quantize-aware; shrink the float classifier, then call quantize_aware"
        )
    backbone = bert_backbone(model)
    keep = resolve_keep_layers(backbone.num_layers, num_layers, keep_layers)
    student = rebuild_classifier(model, backbone, num_layers=len(keep))
    new_backbone = student.backbone
    if not isinstance(student, keras_hub.models.Task):
        raise ValueError(f"`model` must be a keras-hub task, got {type(model).__name__}")

    # A teacher that a Distiller froze has trainable=False in its configs: the copy trains.
    # (Setting it on the task does not reach a keras-hub task's backbone: set both.)
    new_backbone.trainable = True
    student.trainable = True
    for name in (
        "token_embedding",
        "position_embedding",
        "segment_embedding",
        "embeddings_layer_norm",
        "pooled_dense",
    ):
        _copy(backbone.get_layer(name), new_backbone.get_layer(name))
    for i, t in enumerate(keep):
        _copy(backbone.transformer_layers[t], new_backbone.transformer_layers[i])
    _copy(model.output_dense, student.output_dense)
    return student


def _vocabulary(model: Any) -> list[str] | None:
    preprocessor = getattr(model, "preprocessor", None)
    tokenizer = getattr(preprocessor, "tokenizer", None)
    if tokenizer is None or not hasattr(tokenizer, "get_vocabulary"):
        return None
    return list(tokenizer.get_vocabulary())


def _is_linear(model: Any) -> bool:
    import keras

    activation = getattr(unwrap(model), "activation", None)
    return activation is None or activation is keras.activations.linear


def check_student(
    teacher: Any,
    student: Any,
    *,
    hidden_states: bool = False,
    attentions: bool = False,
    projection: bool = True,
) -> None:
    """Raise a clear `ValueError` when `student` cannot learn from `teacher`'s signal.

    Checks: both are Keras models; same vocabulary (the student's preprocessor
    feeds both); the teacher's position table covers the student's sequence
    length; same number of classes; both output logits (activation None). For
    `hidden_states`: both are keras-hub BERT classifiers, and equal hidden sizes
    unless `projection`. For `attentions`: same number of heads.
    """
    import keras

    for argument, model in (("teacher", teacher), ("student", student)):
        if not isinstance(model, keras.Model):
            raise ValueError(f"`{argument}` must be a keras.Model, got {type(model).__name__}")
    t_classes = getattr(unwrap(teacher), "num_classes", None)
    s_classes = getattr(unwrap(student), "num_classes", None)
    if t_classes is None or s_classes is None:
        t_classes, s_classes = teacher.outputs[0].shape[-1], student.outputs[0].shape[-1]
    if t_classes != s_classes:
        raise ValueError(
            f"`student` has {s_classes} classes but `teacher` has {t_classes}: logit "
            "distillation needs the same classes in the same order"
        )
    for argument, model in (("teacher", teacher), ("student", student)):
        if not _is_linear(model):
            raise ValueError(
                f"`{argument}` must output logits (build it with activation=None); its "
                f"activation is {getattr(unwrap(model), 'activation', None)!r}"
            )
    t_vocab, s_vocab = _vocabulary(teacher), _vocabulary(student)
    if t_vocab is not None and s_vocab is not None and t_vocab != s_vocab:
        raise ValueError(
            f"`student`'s vocabulary ({len(s_vocab)} tokens) differs from `teacher`'s "
            f"({len(t_vocab)} tokens): both read the token ids of the student's preprocessor, "
            "so they must share a tokenizer (build the student from the teacher, e.g. shrink)"
        )
    t_backbone = getattr(unwrap(teacher), "backbone", None)
    s_backbone = getattr(unwrap(student), "backbone", None)
    t_size = getattr(t_backbone, "vocabulary_size", None)
    s_size = getattr(s_backbone, "vocabulary_size", None)
    if t_size is not None and s_size is not None and t_size != s_size:
        raise ValueError(f"`student`'s vocabulary_size {s_size} differs from `teacher`'s {t_size}")
    length = getattr(getattr(student, "preprocessor", None), "sequence_length", None)
    t_positions = getattr(t_backbone, "max_sequence_length", None)
    if length is not None and t_positions is not None and length > t_positions:
        raise ValueError(
            f"`student`'s preprocessor packs {length} tokens but `teacher`'s position "
            f"table has {t_positions}"
        )
    if hidden_states or attentions:
        t_backbone = bert_backbone(teacher, "teacher")
        s_backbone = bert_backbone(student, "student")
        if hidden_states and not projection and t_backbone.hidden_dim != s_backbone.hidden_dim:
            raise ValueError(
                f"hidden-state distillation: `student` hidden size {s_backbone.hidden_dim} "
                f"differs from `teacher`'s {t_backbone.hidden_dim}; set projection=True "
                "(a learned projection per mapped layer, as TinyBERT)"
            )
        if attentions and t_backbone.num_heads != s_backbone.num_heads:
            raise ValueError(
                f"attention distillation compares attention maps head by head: `student` has "
                f"{s_backbone.num_heads} heads, `teacher` {t_backbone.num_heads}; set "
                "attention_weight=0 or use a student with the same head count"
            )
