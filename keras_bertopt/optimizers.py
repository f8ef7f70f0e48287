"""The BERT fine-tuning optimizer recipe as Keras optimizers that work inside `model.fit`.

`create_optimizer` builds AdamW (or LAMB, or Adam) with the BERT recipe: linear
warm-up then linear decay (any `keras_bertopt.schedules` kind), epsilon 1e-6,
global-norm gradient clipping at 1.0, weight decay 0.01 with LayerNorm
gamma/beta and every bias excluded, and optional layer-wise learning-rate decay.

The optimizer classes (`BertAdamW`, `BertLamb`, `BertAdam`: weight-decay
exclusion and per-variable learning-rate multipliers by `variable.path`, kept
in the optimizer config) live in `keras_bertopt.path_optimizers`, the path math
of layer-wise decay in `keras_bertopt.lr_multipliers`; both are importable from
here too.

Example:

```python
model = keras_bertopt.models.build_classifier(TinyConfig(), num_classes=2)
optimizer = keras_bertopt.optimizers.create_optimizer(
    5e-5, total_steps=1000, warmup_ratio=0.1, layerwise_lr_decay=0.9)
model.compile(optimizer=optimizer, loss=..., metrics=["accuracy"])
model.fit(train_ds, epochs=...)
```
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import keras

from keras_bertopt import schedules
from keras_bertopt.lr_multipliers import EMBEDDING_PATTERN as EMBEDDING_PATTERN
from keras_bertopt.lr_multipliers import LAYER_PATTERN as LAYER_PATTERN
from keras_bertopt.lr_multipliers import layerwise_multipliers as layerwise_multipliers
from keras_bertopt.path_optimizers import BertAdam as BertAdam
from keras_bertopt.path_optimizers import BertAdamW as BertAdamW
from keras_bertopt.path_optimizers import BertLamb as BertLamb
from keras_bertopt.selection import EMBEDDINGS, NO_DECAY

#: Kinds accepted by `create_optimizer`.
KINDS = ("adamw", "lamb", "adam")


_CLASSES = {"adamw": BertAdamW, "lamb": BertLamb, "adam": BertAdam}


def _check_arguments(kind: str, weight_decay: Any, clipnorm: Any, epsilon: Any) -> None:
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}; got {kind!r}")
    if weight_decay is not None and (
        isinstance(weight_decay, bool)
        or not isinstance(weight_decay, numbers.Real)
        or not weight_decay >= 0
    ):
        raise ValueError(f"`weight_decay` must be >= 0 or None; got {weight_decay!r}")
    if clipnorm is not None and (
        not isinstance(clipnorm, numbers.Real) or not clipnorm > 0 or math.isinf(clipnorm)
    ):
        raise ValueError(f"`clipnorm` must be a positive number or None; got {clipnorm!r}")
    if not isinstance(epsilon, numbers.Real) or not epsilon > 0:
        raise ValueError(f"`epsilon` must be > 0; got {epsilon!r}")


# Over 80 lines only through its docstring (the argument reference); the code is ~65 lines.
def create_optimizer(
    peak_learning_rate: float,
    total_steps: int,
    warmup_steps: int | None = None,
    warmup_ratio: float | None = None,
    *,
    kind: str = "adamw",
    weight_decay: float | None = 0.01,
    clipnorm: float | None = 1.0,
    epsilon: float = 1e-6,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    end_learning_rate: float = 0.0,
    schedule: str = "linear",
    schedule_options: dict[str, Any] | None = None,
    decay_embeddings: bool = True,
    exclude_from_weight_decay: Sequence[str] | str | None = NO_DECAY,
    layerwise_lr_decay: float | None = None,
    lr_multipliers: Sequence[Sequence[Any]] | None = None,
    model: Any = None,
    **optimizer_kwargs: Any,
) -> keras.optimizers.Optimizer:
    """The BERT fine-tuning optimizer: warm-up + decay, AdamW, no decay on LayerNorm/biases.

    Defaults reproduce Devlin et al. (2019) / TF Model Garden's
    `create_optimizer`: AdamW (beta 0.9/0.999, epsilon 1e-6, weight decay 0.01),
    a linear warm-up over 10% of the steps (when neither `warmup_steps` nor
    `warmup_ratio` is given) then linear decay to 0 at `total_steps`, gradients
    clipped to a global norm of 1.0 (Keras's `global_clipnorm`), and no weight
    decay on LayerNorm gamma/beta or any bias.

    Args:
        peak_learning_rate: rate at the end of warm-up (> 0).
        total_steps: optimizer steps of the whole fine-tune (``epochs *
            steps_per_epoch``); the schedule reaches `end_learning_rate` there.
        warmup_steps: warm-up length in steps.
        warmup_ratio: warm-up length as a fraction of `total_steps` (instead of
            `warmup_steps`).
        kind: ``"adamw"`` (`BertAdamW`), ``"lamb"`` (`BertLamb`, Keras's LAMB,
            for large batches) or ``"adam"`` (`BertAdam`: Adam with
            `weight_decay` as coupled L2, torch-style; pass 0 for plain Adam).
        weight_decay: decay rate (>= 0; 0 or None: none).
        clipnorm: global-norm clipping threshold (None: no clipping).
        epsilon: Adam/LAMB constant.
        beta_1: Adam/LAMB constant.
        beta_2: Adam/LAMB constant.
        end_learning_rate: rate at `total_steps`.
        schedule: a `keras_bertopt.schedules.create` kind.
        schedule_options: extra keywords for that kind (``{"power": 2.0}``...).
        decay_embeddings: False also excludes the embedding tables from decay.
        exclude_from_weight_decay: regexes searched in `variable.path` whose
            variables get no decay (default `selection.NO_DECAY`: LayerNorm
            and biases).
        layerwise_lr_decay: factor in (0, 1] (0.8-0.95 usual): head at the full
            rate, transformer layer k (0-based, as in ``transformer_layer_k``) at
            ``rate * decay ** (L - k)``, embeddings at ``rate * decay ** (L + 1)``.
        lr_multipliers: extra ``(regex, multiplier)`` pairs on variable paths.
        model: optional. The rules above are path patterns resolved when the
            optimizer first sees the model's variables (its `build`), so no model
            is needed; pass one to build the optimizer on
            `model.trainable_variables` now, so a pattern that matches nothing
            (e.g. layer-wise decay on a model without ``transformer_layer_*``)
            raises here rather than at the first training step.
        **optimizer_kwargs: more Keras optimizer arguments (``use_ema``,
            ``gradient_accumulation_steps``, ``name``...).

    Returns:
        A `BertAdamW`, `BertLamb` or `BertAdam` whose learning rate is a
        `keras_bertopt.schedules.WarmUp`.

    Raises:
        ValueError: naming the argument, for an unknown `kind` or `schedule`,
            negative rates, `total_steps` not above the warm-up, a bad
            `layerwise_lr_decay`, or (with `model`) a pattern matching nothing.
    """
    _check_arguments(kind, weight_decay, clipnorm, epsilon)
    if warmup_steps is None and warmup_ratio is None:
        warmup_ratio = 0.1
    learning_rate = schedules.create(
        schedule,
        peak_learning_rate=peak_learning_rate,
        total_steps=total_steps,
        warmup_steps=warmup_steps or 0,
        warmup_ratio=warmup_ratio,
        end_learning_rate=end_learning_rate,
        **(schedule_options or {}),
    )
    if isinstance(exclude_from_weight_decay, str):
        exclude_from_weight_decay = [exclude_from_weight_decay]
    exclude = list(exclude_from_weight_decay or [])
    if not decay_embeddings:
        exclude.append(EMBEDDINGS)
    if "clipnorm" in optimizer_kwargs or "global_clipnorm" in optimizer_kwargs:
        raise ValueError(
            "`clipnorm` is the global-norm threshold here; don't pass "
            "`global_clipnorm`/`clipnorm` in optimizer_kwargs"
        )
    optimizer = _CLASSES[kind](
        learning_rate=learning_rate,
        weight_decay=float(weight_decay or 0.0),
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=epsilon,
        global_clipnorm=None if clipnorm is None else float(clipnorm),
        exclude_from_weight_decay_paths=exclude,
        layerwise_lr_decay=layerwise_lr_decay,
        lr_multipliers=lr_multipliers,
        **optimizer_kwargs,
    )
    if model is not None:
        if not hasattr(model, "trainable_variables"):
            raise ValueError(
                f"`model` must be a Keras model (or None); got {type(model).__name__}"
            )
        optimizer.build(model.trainable_variables)
    return optimizer
