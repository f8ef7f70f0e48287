"""Attach weight regularizers and set dropout on an already-built (pretrained) model.

Keras only takes regularizers when a layer is created (`Dense(kernel_regularizer=...)`);
a pretrained keras-hub backbone is built already. Every Keras 3 variable has a
`regularizer` attribute, and `Layer.losses` adds ``variable.regularizer(variable)``
for each trainable weight that has one (`Layer._get_regularization_losses`), so
setting that attribute is enough: the penalty appears in `model.losses` and,
because `Trainer.compute_loss` adds `model.losses` inside the traced train and
test steps, in the loss `fit` minimises and reports. `apply_regularization` does
that for the variables chosen by regex on `variable.path`.

The attachment lives on the variables, not in the layers' configs: a model saved
and loaded again has no regularizers (training-time only; call
`apply_regularization` again to continue training with them).

Example:

```python
from keras_bertopt import regularizers
paths = regularizers.apply_regularization(model, keras.regularizers.L2(1e-4))
paths = regularizers.apply_regularization(model, regularizers.L2SP(1e-3), overwrite=True)
regularizers.set_dropout(model, hidden=0.2, attention=0.1, classifier=0.3)
model.fit(...)
```
"""

from __future__ import annotations

import numbers
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_bertopt import _compat
from keras_bertopt.selection import TRANSFORMER_KERNELS, Pattern, select_variables, variable_path

#: Default selection: transformer kernels (attention q/k/v/output, feed-forward),
#: so not embeddings, LayerNorm, biases or the classifier head.
DEFAULT_INCLUDE = TRANSFORMER_KERNELS


@keras.saving.register_keras_serializable(package="keras_bertopt")
class L2SP(keras.regularizers.Regularizer):
    """``alpha * sum((w - w0) ** 2)``: an L2 penalty toward the starting weights ``w0``.

    L2-SP (Li, Grandvalet and Davoine, 2018, "Explicit inductive bias for
    transfer learning with convolutional networks") keeps fine-tuned weights
    near the pretrained ones instead of near zero. Same scaling convention as
    `keras.regularizers.L2` (no 1/2 factor).

    `apply_regularization(model, L2SP(alpha))` gives every selected variable its
    own copy anchored at the variable's current value (`bound_to`). The anchor
    is not part of the config: `get_config` / `from_config` restore `alpha`, and
    a restored L2SP must be bound again (its penalty is then measured from the
    weights at that time).

    Args:
        alpha: strength (>= 0).
        anchor: the starting weights ``w0`` (array); usually set by `bound_to`.
    """

    def __init__(self, alpha: float = 0.01, anchor: Any = None) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha >= 0:
            raise ValueError(f"`alpha` must be a number >= 0; got {alpha!r}")
        self.alpha = float(alpha)
        self.anchor = None if anchor is None else ops.convert_to_tensor(anchor)

    def bound_to(self, variable: Any) -> L2SP:
        """A copy anchored at a snapshot of `variable`'s current value."""
        snapshot = np.array(keras.ops.convert_to_numpy(variable), copy=True)
        return L2SP(self.alpha, anchor=ops.convert_to_tensor(snapshot, dtype=variable.dtype))

    def __call__(self, x: Any) -> Any:
        if self.anchor is None:
            raise ValueError(
                "L2SP has no starting weights: attach it with "
                "keras_bertopt.regularizers.apply_regularization(model, L2SP(alpha)) "
                "or use L2SP(alpha).bound_to(variable)"
            )
        diff = ops.subtract(x, ops.cast(self.anchor, x.dtype))
        return ops.multiply(self.alpha, ops.sum(ops.square(diff)))

    def get_config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


def _as_regularizer(regularizer: Any) -> Any:
    if isinstance(regularizer, (str, dict)):
        try:
            regularizer = keras.regularizers.get(regularizer)
        except ValueError as err:
            raise ValueError(
                f"`regularizer` {regularizer!r} is not a Keras regularizer: {err}"
            ) from None
    if regularizer is None or not callable(regularizer):
        raise ValueError(
            "`regularizer` must be a keras.regularizers.Regularizer (L1, L2, L1L2, "
            f"L2SP, ...), a callable variable -> scalar, or its name; got {regularizer!r}"
        )
    return regularizer


def apply_regularization(
    model: Any,
    regularizer: Any,
    include: Pattern = DEFAULT_INCLUDE,
    exclude: Pattern = None,
    *,
    overwrite: bool = False,
) -> list[str]:
    """Attach `regularizer` to the trainable variables of `model` chosen by path.

    Args:
        model: a built Keras model or layer (e.g. a keras-hub classifier).
        regularizer: a `keras.regularizers.Regularizer` (`L1`, `L2`, `L1L2`,
            `L2SP`, ...), any callable ``variable -> scalar``, or a Keras name
            such as ``"l2"``. A regularizer with a ``bound_to(variable)`` method
            (like `L2SP`) gets one bound copy per variable.
        include: regex(es) searched in `variable.path`; default
            `DEFAULT_INCLUDE` (transformer kernels only).
        exclude: regex(es) removing variables from the selection.
        overwrite: replace regularizers already attached to selected
            variables; otherwise that is an error.

    Returns:
        The paths of the variables the regularizer was attached to.

    Raises:
        ValueError: `include`/`exclude` select nothing (or are bad regexes), the
            regularizer is not one, or (without `overwrite`) a selected
            variable has a regularizer already. Nothing is attached then.
    """
    regularizer = _as_regularizer(regularizer)
    variables = select_variables(model, include=include, exclude=exclude, argument="include")
    taken = [variable_path(v) for v in variables if v.regularizer is not None]
    if taken and not overwrite:
        raise ValueError(
            f"{len(taken)} selected variable(s) already have a regularizer (e.g. {taken[:3]}); "
            "pass overwrite=True to replace them, or narrow `include`/`exclude`"
        )
    bind = getattr(regularizer, "bound_to", None)
    for variable in variables:
        variable.regularizer = bind(variable) if callable(bind) else regularizer
    _retrace(model)
    return [variable_path(v) for v in variables]


def remove_regularization(
    model: Any, include: Pattern = None, exclude: Pattern = None
) -> list[str]:
    """Detach regularizers from the chosen variables (all by default); returns their paths."""
    variables = select_variables(
        model, include=include, exclude=exclude, trainable_only=False, allow_empty=True
    )
    removed = []
    for variable in variables:
        if variable.regularizer is not None:
            variable.regularizer = None
            removed.append(variable_path(variable))
    _retrace(model)
    return removed


def _retrace(model: Any) -> None:
    """Make the next fit/evaluate trace again: `model.losses` is read when they trace."""
    for name in ("train_function", "test_function"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)


def regularization_penalty(model: Any) -> float:
    """The current total of the weight penalties attached to `model` (eager value)."""
    total = 0.0
    for variable in model.trainable_weights:
        if variable.regularizer is not None:
            total += float(keras.ops.convert_to_numpy(variable.regularizer(variable.value)))
    return total


# -- dropout -------------------------------------------------------------------------


def _check_rate(value: Any, argument: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{argument}` must be a dropout rate in [0, 1) or None; got {value!r}")
    return float(value)


def _set_rate(layer: Any, rate: float) -> None:
    layer.rate = rate
    if rate > 0 and getattr(layer, "seed_generator", None) is None:
        # keras.layers.Dropout only creates its seed generator when built with rate > 0.
        with _compat.unlocked_tracker(layer):
            layer.seed_generator = keras.random.SeedGenerator(layer.seed)


def _dropout_layers(layers: list[Any]) -> tuple[list[Any], list[Any], list[Any]]:
    """(attention layers, hidden Dropout layers, classifier-head Dropout layers) of `layers`."""
    attention_layers = [
        layer for layer in layers if isinstance(layer, keras.layers.MultiHeadAttention)
    ]
    attention_dropouts = {
        id(_compat.attention_dropout_layer(layer))
        for layer in attention_layers
        if _compat.attention_dropout_layer(layer) is not None
    }
    dropouts = [layer for layer in layers if isinstance(layer, keras.layers.Dropout)]
    head = [layer for layer in dropouts if layer.name == "classifier_dropout"]
    hidden_layers = [
        layer for layer in dropouts if id(layer) not in attention_dropouts and layer not in head
    ]
    return attention_layers, hidden_layers, head


def set_dropout(
    model: Any,
    hidden: float | None = None,
    attention: float | None = None,
    classifier: float | None = None,
) -> dict[str, int]:
    """Change the dropout rates of a built keras-hub BERT classifier in place.

    keras-hub builds BERT with one `dropout` for everything; its layers are
    `keras.layers.Dropout` whose `rate` is read when `fit` traces its train
    step, so changing `.rate` works without rebuilding the model, provided the
    train function is traced again: this function clears `model.train_function`
    so the next `fit` does that.

    * `hidden`: the embeddings dropout and each transformer block's
      self-attention-output and feed-forward dropout (`hidden_dropout_prob` in
      Hugging Face terms); also written to the backbone's and blocks' `dropout`
      config so a saved model keeps it.
    * `attention`: dropout on the attention probabilities inside each
      `MultiHeadAttention` (`attention_probs_dropout_prob`). keras-hub's config
      has no separate attention rate: after a save/load it comes back equal
      to `hidden` (or the backbone's original dropout when `hidden` was not set).
    * `classifier`: the classifier head's dropout (``classifier_dropout``),
      also written to the task's `dropout` config.

    Args:
        model: a keras-hub text classifier (or any model holding such layers).
        hidden: new rate in [0, 1) of the hidden dropout layers; None leaves them as is.
        attention: the same for attention dropout.
        classifier: the same for the classifier's dropout.

    Returns:
        How many layers were changed per kind given, e.g. ``{"hidden": 5,
        "attention": 2, "classifier": 1}`` for a 2-layer BERT classifier.

    Raises:
        ValueError: a rate outside [0, 1), or `model` has no layer of a kind
            whose rate was given.
    """
    hidden = _check_rate(hidden, "hidden")
    attention = _check_rate(attention, "attention")
    classifier = _check_rate(classifier, "classifier")
    layers = _compat.flatten_layers(model)
    attention_layers, hidden_layers, head = _dropout_layers(layers)
    for rate, found, argument in (
        (hidden, hidden_layers, "hidden"),
        (attention, attention_layers, "attention"),
        (classifier, head, "classifier"),
    ):
        if rate is not None and not found:
            raise ValueError(
                f"`{argument}` was given but `model` has no {argument} dropout layer to set"
            )
    changed: dict[str, int] = {}
    if hidden is not None:
        for layer in hidden_layers:
            _set_rate(layer, hidden)
        changed["hidden"] = len(hidden_layers)
        for layer in layers:
            # keras-hub's backbone and TransformerEncoder keep their rate as `.dropout`.
            rate = getattr(layer, "dropout", None)
            if isinstance(rate, numbers.Real) and not isinstance(
                layer, keras.layers.MultiHeadAttention
            ):
                layer.dropout = hidden
    if attention is not None:
        for layer in attention_layers:
            _set_rate(_compat.set_attention_dropout(layer, attention), attention)
        changed["attention"] = len(attention_layers)
    if classifier is not None:
        for layer in head:
            _set_rate(layer, classifier)
        changed["classifier"] = len(head)
        if isinstance(getattr(model, "dropout", None), numbers.Real):
            model.dropout = classifier
    _retrace(model)  # the rates are read when fit traces its step
    return changed

